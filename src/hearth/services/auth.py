"""Who is calling: API keys -> Principal, permission checks, batched last-used bookkeeping.

Every request looks its key up by hash (one indexed row, in a worker thread): a revoked key stops
working on the very next request, on every replica, with no cache to invalidate. `last_used_at` is
not written per request: used key ids are collected and flushed in one statement a few times a
minute.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from hearth.platform.keys import KeyOwner, Principal

log = logging.getLogger("hearth.auth")

# The static key (HEARTH_API_KEY) acts as a project key with every permission on this project.
STATIC_PROJECT = "proj_static"


class KeyLookup(Protocol):
    def authenticate(self, secret: str, now: int | None = None) -> Principal | None: ...

    def touch(self, key_ids: set[str], at: int) -> None: ...


class AuthError(Exception):
    """401 / 403 material. `status`, `code` and `message` are mapped by the api layer."""

    def __init__(self, status: int, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


MISSING = ("You didn't provide an API key. You need to provide your API key in an Authorization header "
           "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY). Find your admin key in "
           "<data dir>/admin-key.txt after the first `hearth serve`.")


def _shown(token: str) -> str:
    return f"{token[:3]}***{token[-4:]}" if len(token) > 8 else "***"


@dataclass(slots=True)
class AuthService:
    """`keys` is None when no database is configured: then only the static key (if any) works."""

    keys: KeyLookup | None
    static_key: str | None = None
    org_id: str = "org-local"
    clock: Callable[[], float] = time.time
    # Verified keys are remembered this long (seconds), so a request costs a dict lookup instead of
    # a database round trip. Revoking, rotating or archiving through this process clears it at once
    # (`invalidate`); other replicas see the change within this time. 0 disables the cache.
    cache_ttl_s: float = 5.0
    _used: set[str] = field(default_factory=set)  # key ids seen since the last flush
    _cache: dict[bytes, tuple[Principal, float]] = field(default_factory=dict)

    def invalidate(self) -> None:
        """Forget every verified key (after a key or project changed)."""
        self._cache.clear()

    @property
    def enabled(self) -> bool:
        return self.keys is not None or self.static_key is not None

    async def authenticate(self, authorization: str | None) -> Principal | None:
        """The caller, or None when auth is off. Raises AuthError (401) for a missing or bad key."""
        if not self.enabled:
            return None
        scheme, _, token = (authorization or "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise AuthError(401, MISSING)
        if self.static_key is not None and hmac.compare_digest(token.encode(), self.static_key.encode()):
            return Principal(key_id="key_static", kind="project", project_id=STATIC_PROJECT, org_id=self.org_id,
                             scopes="all", owner=KeyOwner(type="user", id="user_static", name="static key"))
        principal = None
        if self.keys is not None:
            # The cache is keyed by a digest: the secret itself is never kept.
            digest = hashlib.blake2b(token.encode(), digest_size=20).digest()
            now = self.clock()
            hit = self._cache.get(digest)
            if hit is not None and hit[1] > now:
                principal = hit[0]
            else:
                principal = await asyncio.to_thread(self.keys.authenticate, token, int(now))
                if principal is not None and self.cache_ttl_s > 0:
                    if len(self._cache) >= 10_000:
                        self._cache.clear()
                    self._cache[digest] = (principal, now + self.cache_ttl_s)
        if principal is None:
            raise AuthError(401, f"Incorrect API key provided: {_shown(token)}. You can find your API key "
                            "with `hearth keys list`.", "invalid_api_key")
        self._used.add(principal.key_id)
        return principal

    def check(self, principal: Principal | None, family: str, write: bool, *, org: str | None = None,
              project: str | None = None) -> None:
        """403 unless the key may use `family`; OpenAI-Organization / OpenAI-Project must match it."""
        if principal is None:
            return
        if org is not None and org != principal.org_id:
            raise AuthError(401, f"OpenAI-Organization header should match organization for API key "
                            f"(got '{org}').", "mismatched_organization")
        if project is not None and principal.project_id is not None and project != principal.project_id:
            raise AuthError(401, f"OpenAI-Project header should match project for API key (got '{project}').",
                            "mismatched_project")
        if not principal.allows(family, write):
            raise AuthError(403, _denied(principal, family, write), "insufficient_permissions")

    async def flush_used(self) -> None:
        """Write the batched last_used_at updates (called periodically and at shutdown)."""
        if self.keys is None or not self._used:
            return
        used, self._used = self._used, set()
        try:
            await asyncio.to_thread(self.keys.touch, used, int(self.clock()))
        except Exception:
            log.warning("could not record key usage; will retry", exc_info=True)
            self._used |= used


def _denied(p: Principal, family: str, write: bool) -> str:
    if family == "admin":
        return ("This API requires an admin key (sk-admin-...). Create one with `hearth keys create --admin` "
                "or POST /v1/organization/admin_api_keys.")
    if p.kind == "admin":
        return (f"Admin keys cannot call the {family} API. Use a project key (sk-proj-...) or a service "
                "account key.")
    need = f"api.{family}.{'write' if write else 'read'}"
    return (f"You have insufficient permissions for this operation. Missing scopes: {need}. Check that you "
            "have the correct role in your organization and project, and that your key allows this API.")
