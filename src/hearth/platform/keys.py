"""API key secrets, their hashes, scopes, and the ``Principal`` a key authenticates as.

Guarantees:
- Secrets carry OpenAI-style prefixes and 384 bits of randomness; they are shown once and never stored.
- The database stores only ``HMAC-SHA256(server_secret, secret)``. The server secret lives in a file
  outside the database, so a leaked database alone cannot be used to test guessed keys offline.
- Hash comparisons use ``hmac.compare_digest``.

This module imports no SQLAlchemy: the HTTP edge may import ``Principal`` as a type cheaply.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeAlias

from hearth.platform.errors import InvalidArgument

SecretKind = Literal["project", "service_account", "admin"]
KeyKind = Literal["project", "admin"]
OwnerType = Literal["user", "service_account"]

SECRET_PREFIXES: dict[SecretKind, str] = {
    "project": "sk-proj-",
    "service_account": "sk-svcacct-",
    "admin": "sk-admin-",
}
_SECRET_BYTES = 48  # 384 bits; token_urlsafe gives 64 characters
MAX_SECRET_LENGTH = 256  # longer "secrets" are rejected before hashing
SERVER_SECRET_BYTES = 32

# Endpoint families a restricted key may be limited to; "admin" is the admin API (admin keys only).
FAMILIES: frozenset[str] = frozenset(
    {"models", "chat", "responses", "embeddings", "files", "batches", "moderations"}
)
ADMIN_FAMILY = "admin"

Scopes: TypeAlias = Literal["all", "read_only"] | frozenset[str]


def generate_secret(kind: SecretKind) -> str:
    """A new secret: ``sk-proj-``, ``sk-svcacct-`` or ``sk-admin-`` followed by 384 random bits."""
    return SECRET_PREFIXES[kind] + secrets.token_urlsafe(_SECRET_BYTES)


def hash_secret(secret: str, server_secret: bytes) -> str:
    """HMAC-SHA256 of the secret under the server secret, as 64 lowercase hex characters."""
    return hmac.new(server_secret, secret.encode("utf-8"), hashlib.sha256).hexdigest()


def verify_secret(secret: str, expected_hash: str, server_secret: bytes) -> bool:
    """Whether ``secret`` hashes to ``expected_hash``, compared in constant time."""
    return hmac.compare_digest(hash_secret(secret, server_secret), expected_hash)


def hashes_equal(a: str, b: str | None) -> bool:
    """Constant-time equality of two stored hashes (``None`` never matches)."""
    return b is not None and hmac.compare_digest(a, b)


def looks_like_secret(secret: str) -> bool:
    """A cheap shape check run before any hashing or lookup (not a security boundary)."""
    return secret.startswith("sk-") and 20 <= len(secret) <= MAX_SECRET_LENGTH and secret.isascii()


def secret_prefix(secret: str) -> str:
    for prefix in sorted(SECRET_PREFIXES.values(), key=len, reverse=True):
        if secret.startswith(prefix):
            return prefix
    return "sk-"


def redact(secret: str) -> str:
    """``sk-proj-...abcd``: the known prefix, an ellipsis and the last four characters."""
    prefix = secret_prefix(secret)
    if len(secret) < len(prefix) + 8:
        return prefix + "..."
    return f"{prefix}...{secret[-4:]}"


# --- scopes -------------------------------------------------------------------------------------


def normalize_scopes(value: str | Iterable[str]) -> Scopes:
    """Validate ``"all"``, ``"read_only"`` or a non-empty list of endpoint families."""
    if isinstance(value, str):
        if value in ("all", "read_only"):
            return "all" if value == "all" else "read_only"
        raise InvalidArgument(f"Invalid scopes {value!r}: expected 'all', 'read_only' or a list.", "scopes")
    families = frozenset(value)
    unknown = sorted(families - FAMILIES)
    if unknown:
        raise InvalidArgument(
            f"Unknown endpoint families {unknown}; expected some of {sorted(FAMILIES)}.", "scopes"
        )
    if not families:
        raise InvalidArgument("A restricted key must allow at least one endpoint family.", "scopes")
    return families


def dump_scopes(scopes: Scopes) -> str:
    """The JSON text stored in ``api_keys.scopes``."""
    return json.dumps(scopes if isinstance(scopes, str) else sorted(scopes))


def load_scopes(text: str) -> Scopes:
    value = json.loads(text)
    if not isinstance(value, str | list):
        raise TypeError(f"corrupt scopes column: {text!r}")
    return normalize_scopes(value)


# --- principal ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KeyOwner:
    """Who a key belongs to: a user (created by an operator) or a project's service account."""

    type: OwnerType
    id: str
    name: str


# The owner of keys an operator makes from the CLI or at bootstrap (there is no users table).
OPERATOR = KeyOwner("user", "user-operator", "operator")


@dataclass(frozen=True, slots=True)
class Principal:
    """What an authenticated request acts as. Immutable; safe to cache and share."""

    key_id: str
    kind: KeyKind
    project_id: str | None  # None for admin keys
    org_id: str
    scopes: Scopes
    owner: KeyOwner

    @property
    def is_admin(self) -> bool:
        return self.kind == "admin"

    def allows(self, family: str, write: bool) -> bool:
        """Whether this key may use an endpoint family.

        ``write`` is False only for read-like use (listing or retrieving models, files, batches);
        generating (chat, responses, embeddings, moderations) and creating or deleting are writes.
        As at OpenAI, admin keys reach only the admin API and project keys never reach it.
        """
        if family == ADMIN_FAMILY:
            return self.kind == "admin"
        if self.kind == "admin" or family not in FAMILIES:
            return False
        if self.scopes == "all":
            return True
        if self.scopes == "read_only":
            return not write
        return family in self.scopes


# --- server secret ------------------------------------------------------------------------------


def load_or_create_server_secret(path: Path) -> bytes:
    """The HMAC key for API key hashes, kept in a file outside the database.

    Creates ``path`` with 32 random bytes and mode 0600 if it is missing. Creation is atomic: the
    bytes go to a private temporary file that is then hard-linked into place, so concurrent starts
    agree on one secret and no reader ever sees a partial file. Losing this file invalidates every
    stored key hash.
    """
    path = Path(path)
    with contextlib.suppress(FileNotFoundError):
        return _read_server_secret(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    write_private_file(tmp, secrets.token_bytes(SERVER_SECRET_BYTES), replace=None)
    try:
        try:
            os.link(tmp, path)  # fails if another process created it first: theirs wins
        except FileExistsError:
            pass
        except OSError:  # filesystems without hard links
            if not path.exists():
                os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    return _read_server_secret(path)


def _read_server_secret(path: Path) -> bytes:
    data = path.read_bytes()
    if len(data) < SERVER_SECRET_BYTES:
        raise ValueError(f"server secret file {path} holds {len(data)} bytes; expected at least 32")
    return data


def write_private_file(path: Path, data: bytes, *, replace: Path | None) -> None:
    """Write ``data`` to a new file with mode 0600 (fails if ``path`` exists), fsync it, and if
    ``replace`` is given atomically rename it over that path."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.fchmod(fd, 0o600)  # independent of the umask
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    if replace is not None:
        os.replace(path, replace)
