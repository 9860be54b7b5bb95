"""API key rows, as functions over an open session (the store owns transactions).

Secrets are generated here, returned once, and stored only as HMAC hashes (see ``keys.py``).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Literal

from sqlalchemy import ColumnElement, or_, select, update
from sqlalchemy.orm import Session

from hearth.platform.db.models import ApiKey, Project
from hearth.platform.db.paging import paginate
from hearth.platform.errors import InvalidArgument, NotFound
from hearth.platform.ids import KEY_PREFIX, new_id
from hearth.platform.keys import (
    KeyKind,
    KeyOwner,
    Scopes,
    SecretKind,
    dump_scopes,
    generate_secret,
    hash_secret,
    redact,
)

MAX_OVERLAP_SECONDS = 30 * 24 * 3600


def secret_kind_for(kind: str, owner_type: str) -> SecretKind:
    if kind == "admin":
        return "admin"
    return "service_account" if owner_type == "service_account" else "project"


def insert_key(
    session: Session,
    *,
    org_id: str,
    kind: KeyKind,
    project_id: str | None,
    owner: KeyOwner,
    name: str,
    scopes: Scopes,
    server_secret: bytes,
    now: int,
) -> tuple[ApiKey, str]:
    """Add a key; returns the row and its secret (the only time the secret exists)."""
    secret = generate_secret(secret_kind_for(kind, owner.type))
    row = ApiKey(
        id=new_id(KEY_PREFIX),
        org_id=org_id,
        kind=kind,
        project_id=project_id,
        owner_type=owner.type,
        owner_id=owner.id,
        owner_name=owner.name,
        name=name,
        redacted_value=redact(secret),
        secret_hash=hash_secret(secret, server_secret),
        scopes=dump_scopes(scopes),
        created_at=now,
    )
    session.add(row)
    session.flush()
    return row, secret


def _live(kind: KeyKind, project_id: str | None) -> list[ColumnElement[bool]]:
    where = [ApiKey.kind == kind, ApiKey.revoked_at.is_(None)]
    if project_id is not None:
        where.append(ApiKey.project_id == project_id)
    return where


def list_keys(
    session: Session, *, kind: KeyKind, project_id: str | None, after: str | None, limit: int
) -> tuple[list[ApiKey], bool]:
    return paginate(session, ApiKey, *_live(kind, project_id), after=after, limit=limit)


def get_key(session: Session, key_id: str, *, kind: KeyKind, project_id: str | None) -> ApiKey | None:
    """A live (unrevoked) key of that kind, and of that project when one is given."""
    return session.scalars(select(ApiKey).where(ApiKey.id == key_id, *_live(kind, project_id))).first()


def revoke_key(
    session: Session, key_id: str, now: int, *, kind: KeyKind | None = None, project_id: str | None = None
) -> bool:
    """Revoke a live key; False if there is none (already revoked, or not of that kind/project)."""
    stmt = update(ApiKey).where(ApiKey.id == key_id, ApiKey.revoked_at.is_(None))
    if kind is not None:
        stmt = stmt.where(ApiKey.kind == kind)
    if project_id is not None:
        stmt = stmt.where(ApiKey.project_id == project_id)
    return _rowcount(session.execute(stmt.values(revoked_at=now))) > 0


def revoke_owned(session: Session, owner_type: Literal["service_account"], owner_id: str, now: int) -> int:
    stmt = (
        update(ApiKey)
        .where(ApiKey.owner_type == owner_type, ApiKey.owner_id == owner_id, ApiKey.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    return _rowcount(session.execute(stmt))


def rotate_key(session: Session, key_id: str, overlap_seconds: int, server_secret: bytes, now: int) -> str:
    """Give a live key a new secret. The current secret keeps working for ``overlap_seconds``
    (0: stops at once); rotating again replaces the previous secret, so at most two work."""
    if not 0 <= overlap_seconds <= MAX_OVERLAP_SECONDS:
        raise InvalidArgument(f"overlap must be 0 to {MAX_OVERLAP_SECONDS} seconds.", "overlap_seconds")
    stmt = select(ApiKey).where(ApiKey.id == key_id, ApiKey.revoked_at.is_(None)).with_for_update()
    row = session.scalars(stmt).first()
    if row is None:
        raise NotFound("api_key", key_id)
    secret = generate_secret(secret_kind_for(row.kind, row.owner_type))
    if overlap_seconds > 0:
        row.previous_hash, row.previous_valid_until = row.secret_hash, now + overlap_seconds
    else:
        row.previous_hash, row.previous_valid_until = None, None
    row.secret_hash = hash_secret(secret, server_secret)
    row.redacted_value = redact(secret)
    session.flush()
    return secret


def find_by_hash(session: Session, secret_hash: str) -> tuple[ApiKey, str | None] | None:
    """The key whose current or previous hash is ``secret_hash``, with its project's status."""
    stmt = (
        select(ApiKey, Project.status)
        .outerjoin(Project, ApiKey.project_id == Project.id)
        .where(or_(ApiKey.secret_hash == secret_hash, ApiKey.previous_hash == secret_hash))
        .limit(1)
    )
    row = session.execute(stmt).first()
    return (row[0], row[1]) if row is not None else None


def touch(session: Session, key_ids: Collection[str], at: int) -> int:
    """Set ``last_used_at`` for many keys in one statement; never moves it backwards."""
    if not key_ids:
        return 0
    stmt = (
        update(ApiKey)
        .where(ApiKey.id.in_(sorted(key_ids)))
        .where(or_(ApiKey.last_used_at.is_(None), ApiKey.last_used_at < at))
        .values(last_used_at=at)
    )
    return _rowcount(session.execute(stmt))


def _rowcount(result: object) -> int:
    # UPDATE returns a CursorResult; Session.execute is typed as returning a plain Result.
    return int(getattr(result, "rowcount", 0))
