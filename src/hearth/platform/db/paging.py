"""Cursor pagination in OpenAI's style: ``after`` is the id of the last object already seen."""

from __future__ import annotations

from typing import TypeVar

from sqlalchemy import ColumnElement, and_, or_, select
from sqlalchemy.orm import Session

from hearth.platform.db.models import ApiKey, Project, ServiceAccount
from hearth.platform.errors import InvalidArgument

Row = TypeVar("Row", Project, ServiceAccount, ApiKey)
MAX_LIMIT = 100


def paginate(
    session: Session, model: type[Row], *where: ColumnElement[bool], after: str | None, limit: int
) -> tuple[list[Row], bool]:
    """Rows of ``model`` matching ``where`` in (created_at, id) order after the cursor, and whether
    more follow. The cursor must itself match ``where`` (one project's ids are no cursor into
    another's); an unknown cursor or a limit outside 1..100 is ``InvalidArgument``."""
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidArgument(f"limit must be between 1 and {MAX_LIMIT}, got {limit}.", "limit")
    stmt = select(model).where(*where)
    if after is not None:
        anchor = session.scalars(stmt.where(model.id == after)).first()
        if anchor is None:
            raise InvalidArgument(f"No object with id '{after}' to list after.", "after")
        stmt = stmt.where(
            or_(
                model.created_at > anchor.created_at,
                and_(model.created_at == anchor.created_at, model.id > anchor.id),
            )
        )
    rows = list(session.scalars(stmt.order_by(model.created_at, model.id).limit(limit + 1)))
    return rows[:limit], len(rows) > limit
