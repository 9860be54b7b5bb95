"""``PlatformStore``: the organization, projects, service accounts and API keys behind one facade.

Every method opens one short transaction and returns plain records (``records.py``), never ORM rows.
The store is synchronous and thread-safe (each call uses its own session): async callers run it in
a thread pool. Writes take the write lock up front on SQLite (``BEGIN IMMEDIATE``) and row locks
on PostgreSQL where they read before writing.

Time is integer unix seconds. Methods whose outcome depends on time take an optional ``now`` so
tests and callers can pin it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import time
from collections.abc import Callable, Collection, Iterator
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from hearth.platform import apikeys, projects
from hearth.platform.db.engine import WRITE
from hearth.platform.db.models import Organization, Project
from hearth.platform.errors import NotFound
from hearth.platform.ids import ORG_PREFIX, new_id
from hearth.platform.keys import (
    OPERATOR,
    KeyOwner,
    Principal,
    Scopes,
    hash_secret,
    hashes_equal,
    looks_like_secret,
    normalize_scopes,
    write_private_file,
)
from hearth.platform.records import (
    ApiKeyRecord,
    CreatedKey,
    OrganizationRecord,
    ProjectRecord,
    ServiceAccountRecord,
    api_key_record,
    organization_record,
    owner_of,
    project_record,
    service_account_record,
)

log = logging.getLogger(__name__)

DEFAULT_PROJECT_NAME = "Default project"
SERVICE_ACCOUNT_KEY_NAME = "Secret Key"  # what OpenAI names a service account's key


class PlatformStore:
    """Projects, service accounts and keys over a ``sessionmaker`` (see ``db.make_sessionmaker``).

    ``server_secret`` is the HMAC key from ``keys.load_or_create_server_secret``; ``clock`` gives
    unix time (seconds). Run ``db.upgrade(url)`` before first use. Failures are ``NotFound``,
    ``InvalidArgument`` and ``ProjectArchived`` (``errors.py``); getters return None instead.
    """

    def __init__(
        self,
        sessions: sessionmaker[Session],
        server_secret: bytes,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if len(server_secret) < 32:
            raise ValueError("server_secret must be at least 32 bytes")
        self._sessions = sessions
        self._server_secret = server_secret
        self._clock = clock

    @property
    def sessions(self) -> sessionmaker[Session]:
        """For the platform's other stores (usage ledger, policies) over the same database."""
        return self._sessions

    # --- plumbing ---------------------------------------------------------------------------

    def _now(self, now: int | None = None) -> int:
        return int(self._clock()) if now is None else now

    @contextlib.contextmanager
    def _read(self) -> Iterator[Session]:
        with self._sessions() as session, session.begin():
            yield session

    @contextlib.contextmanager
    def _write(self) -> Iterator[Session]:
        with self._sessions() as session, session.begin():
            session.connection(execution_options={WRITE: True})  # SQLite: BEGIN IMMEDIATE
            yield session

    def _org_id(self, session: Session) -> str:
        org_id = session.scalar(select(Organization.id))
        if org_id is None:
            raise RuntimeError("the platform is not bootstrapped; call PlatformStore.bootstrap first")
        return str(org_id)

    # --- organization -----------------------------------------------------------------------

    def bootstrap(self, admin_key_file: Path, *, org_name: str = "Default organization") -> str | None:
        """First run: create the organization, the default project and an admin key, write the
        admin secret to ``admin_key_file`` (mode 0600) and return it. Later runs return None and
        change nothing. Safe when several processes start at once: exactly one wins (the singleton
        organization row is unique); the others return None.
        """
        if self.organization() is not None:
            return None
        admin_key_file = Path(admin_key_file)
        admin_key_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = admin_key_file.with_name(f".{admin_key_file.name}.{secrets.token_hex(8)}.tmp")
        try:
            secret = self._bootstrap_once(tmp, org_name)
        except IntegrityError:
            log.info("another process bootstrapped the platform first")
            secret = None
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        if secret is None:
            tmp.unlink(missing_ok=True)
            return None
        try:
            os.replace(tmp, admin_key_file)
        except OSError:
            log.exception("could not write the admin key file %s; the key is only returned", admin_key_file)
        else:
            log.info("bootstrapped the platform; admin key written to %s", admin_key_file)
        return secret

    def _bootstrap_once(self, tmp: Path, org_name: str) -> str | None:
        now = self._now()
        with self._write() as s:
            if s.scalar(select(Organization.id)) is not None:
                return None
            org = Organization(id=new_id(ORG_PREFIX), name=org_name, singleton=1, created_at=now)
            s.add(org)
            s.flush()  # a concurrent bootstrap fails here on PostgreSQL (unique singleton)
            project = projects.create_project(s, org.id, DEFAULT_PROJECT_NAME, now)
            org.default_project_id = project.id
            _, secret = apikeys.insert_key(
                s, org_id=org.id, kind="admin", project_id=None, owner=OPERATOR,
                name="Bootstrap admin key", scopes="all", server_secret=self._server_secret, now=now,
            )
            # Written before commit, so a full disk fails the bootstrap instead of losing the key.
            write_private_file(tmp, (secret + "\n").encode(), replace=None)
        return secret

    def organization(self) -> OrganizationRecord | None:
        with self._read() as s:
            org = s.scalars(select(Organization)).first()
            return organization_record(org) if org is not None else None

    # --- projects ---------------------------------------------------------------------------

    def list_projects(
        self, *, after: str | None = None, limit: int = 20, include_archived: bool = False
    ) -> tuple[list[ProjectRecord], bool]:
        with self._read() as s:
            rows, more = projects.list_projects(s, after=after, limit=limit, include_archived=include_archived)
            return [project_record(r) for r in rows], more

    def create_project(self, name: str) -> ProjectRecord:
        with self._write() as s:
            return project_record(projects.create_project(s, self._org_id(s), name, self._now()))

    def get_project(self, project_id: str) -> ProjectRecord | None:
        with self._read() as s:
            row = s.get(Project, project_id)
            return project_record(row) if row is not None else None

    def update_project(self, project_id: str, *, name: str) -> ProjectRecord:
        """Rename; ``NotFound`` or ``ProjectArchived``."""
        with self._write() as s:
            return project_record(projects.rename_project(s, project_id, name))

    def archive_project(self, project_id: str, *, now: int | None = None) -> ProjectRecord:
        """Archive (idempotent); its keys stop authenticating. ``NotFound``; ``InvalidArgument`` for
        the default project."""
        with self._write() as s:
            org = s.scalars(select(Organization)).first()
            default = org.default_project_id if org is not None else None
            row = projects.archive_project(s, project_id, self._now(now), default_project_id=default)
            return project_record(row)

    # --- service accounts -------------------------------------------------------------------

    def create_service_account(
        self, project_id: str, name: str, *, role: str = "member", scopes: Scopes | list[str] = "all"
    ) -> tuple[ServiceAccountRecord, CreatedKey]:
        """A service account and its key; the key's secret is returned this once."""
        scopes = normalize_scopes(scopes)
        now = self._now()
        with self._write() as s:
            account = projects.create_service_account(s, project_id, name, role, now)
            row, secret = apikeys.insert_key(
                s, org_id=self._org_id(s), kind="project", project_id=project_id,
                owner=KeyOwner("service_account", account.id, account.name), name=SERVICE_ACCOUNT_KEY_NAME,
                scopes=scopes, server_secret=self._server_secret, now=now,
            )
            return service_account_record(account), CreatedKey(api_key_record(row), secret)

    def list_service_accounts(
        self, project_id: str, *, after: str | None = None, limit: int = 20
    ) -> tuple[list[ServiceAccountRecord], bool]:
        """``NotFound`` if the project does not exist."""
        with self._read() as s:
            rows, more = projects.list_service_accounts(s, project_id, after=after, limit=limit)
            return [service_account_record(r) for r in rows], more

    def get_service_account(self, project_id: str, account_id: str) -> ServiceAccountRecord | None:
        with self._read() as s:
            row = projects.get_service_account(s, project_id, account_id)
            return service_account_record(row) if row is not None else None

    def delete_service_account(self, project_id: str, account_id: str, *, now: int | None = None) -> bool:
        """Delete the account and revoke its keys; False if it is not in that project."""
        with self._write() as s:
            row = projects.get_service_account(s, project_id, account_id)
            if row is None:
                return False
            apikeys.revoke_owned(s, "service_account", row.id, self._now(now))
            s.delete(row)
            return True

    # --- project keys -----------------------------------------------------------------------

    def create_project_key(
        self, project_id: str, name: str, owner: KeyOwner = OPERATOR, scopes: Scopes | list[str] = "all"
    ) -> CreatedKey:
        """A new project key (for the CLI and dashboard). A service-account owner must belong to the
        project. ``NotFound``, ``ProjectArchived``, ``InvalidArgument``."""
        scopes = normalize_scopes(scopes)
        name = projects.valid_name(name)
        with self._write() as s:
            projects.require_project(s, project_id, active=True)
            if owner.type == "service_account":
                account = projects.get_service_account(s, project_id, owner.id)
                if account is None:
                    raise NotFound("service_account", owner.id)
                owner = KeyOwner("service_account", account.id, account.name)
            row, secret = apikeys.insert_key(
                s, org_id=self._org_id(s), kind="project", project_id=project_id, owner=owner, name=name,
                scopes=scopes, server_secret=self._server_secret, now=self._now(),
            )
            return CreatedKey(api_key_record(row), secret)

    def list_project_keys(
        self, project_id: str, *, after: str | None = None, limit: int = 20
    ) -> tuple[list[ApiKeyRecord], bool]:
        """Live keys of one project. ``NotFound`` if the project does not exist."""
        with self._read() as s:
            projects.require_project(s, project_id)
            rows, more = apikeys.list_keys(s, kind="project", project_id=project_id, after=after, limit=limit)
            return [api_key_record(r) for r in rows], more

    def get_project_key(self, project_id: str, key_id: str) -> ApiKeyRecord | None:
        with self._read() as s:
            row = apikeys.get_key(s, key_id, kind="project", project_id=project_id)
            return api_key_record(row) if row is not None else None

    def delete_project_key(self, project_id: str, key_id: str, *, now: int | None = None) -> bool:
        with self._write() as s:
            return apikeys.revoke_key(s, key_id, self._now(now), kind="project", project_id=project_id)

    # --- admin keys -------------------------------------------------------------------------

    def create_admin_key(self, name: str, owner: KeyOwner = OPERATOR) -> CreatedKey:
        name = projects.valid_name(name)
        with self._write() as s:
            row, secret = apikeys.insert_key(
                s, org_id=self._org_id(s), kind="admin", project_id=None, owner=owner, name=name,
                scopes="all", server_secret=self._server_secret, now=self._now(),
            )
            return CreatedKey(api_key_record(row), secret)

    def list_admin_keys(
        self, *, after: str | None = None, limit: int = 20
    ) -> tuple[list[ApiKeyRecord], bool]:
        with self._read() as s:
            rows, more = apikeys.list_keys(s, kind="admin", project_id=None, after=after, limit=limit)
            return [api_key_record(r) for r in rows], more

    def get_admin_key(self, key_id: str) -> ApiKeyRecord | None:
        with self._read() as s:
            row = apikeys.get_key(s, key_id, kind="admin", project_id=None)
            return api_key_record(row) if row is not None else None

    def delete_admin_key(self, key_id: str, *, now: int | None = None) -> bool:
        with self._write() as s:
            return apikeys.revoke_key(s, key_id, self._now(now), kind="admin")

    # --- authentication ---------------------------------------------------------------------

    def authenticate(self, secret: str, now: int | None = None) -> Principal | None:
        """The principal for a presented secret, or None when it is unknown, revoked, rotated out
        past its overlap window, or belongs to an archived project. One indexed lookup by hash."""
        if not looks_like_secret(secret):
            return None
        digest = hash_secret(secret, self._server_secret)
        with self._read() as s:
            found = apikeys.find_by_hash(s, digest)
        if found is None:
            return None
        key, project_status = found
        if key.revoked_at is not None:
            return None
        if not hashes_equal(digest, key.secret_hash):
            in_window = key.previous_valid_until is not None and self._now(now) < key.previous_valid_until
            if not (in_window and hashes_equal(digest, key.previous_hash)):
                return None
        if key.kind == "project" and project_status != "active":
            return None
        record = api_key_record(key)
        return Principal(
            key_id=key.id, kind=record.kind, project_id=key.project_id, org_id=key.org_id,
            scopes=record.scopes, owner=owner_of(key),
        )

    def rotate(self, key_id: str, overlap_seconds: int = 0, *, now: int | None = None) -> str:
        """A new secret for a live key; the old one keeps working for ``overlap_seconds``.
        Rotating again replaces the previous secret. ``NotFound``, ``InvalidArgument``."""
        with self._write() as s:
            return apikeys.rotate_key(s, key_id, overlap_seconds, self._server_secret, self._now(now))

    def revoke(self, key_id: str, *, now: int | None = None) -> bool:
        """Revoke any live key (project or admin); False if there was none."""
        with self._write() as s:
            return apikeys.revoke_key(s, key_id, self._now(now))

    def touch(self, key_ids: Collection[str], at: int) -> None:
        """Batch ``last_used_at`` updates in one statement (callers collect ids and flush a few
        times a minute); never moves a timestamp backwards; unknown ids are ignored."""
        if not key_ids:
            return
        with self._write() as s:
            apikeys.touch(s, key_ids, at)
