"""Read side of the usage ledger: sums per time bucket and group, and month-to-date spend.

Buckets are aligned to the query's ``start`` (a bucket is ``[start + k*width, start + (k+1)*width)``),
so a caller that asks from midnight gets calendar days. The grouping runs in the database (one
``GROUP BY``), on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

import calendar
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session, sessionmaker

from hearth.platform.db.models import UsageRow

GROUP_COLUMNS = {
    "project_id": UsageRow.project_id,
    "user_id": UsageRow.user_id,
    "api_key_id": UsageRow.api_key_id,
    "model": UsageRow.model,
    "batch": UsageRow.batch,
    "service_tier": UsageRow.service_tier,
    "endpoint": UsageRow.endpoint,
}


@dataclass(frozen=True, slots=True)
class UsageQuery:
    start: int
    end: int
    width: int
    endpoints: tuple[str, ...] = ()  # empty: every endpoint (costs)
    group_by: tuple[str, ...] = ()
    project_ids: tuple[str, ...] = ()
    user_ids: tuple[str, ...] = ()
    api_key_ids: tuple[str, ...] = ()
    models: tuple[str, ...] = ()
    batch: bool | None = None


@dataclass(slots=True)
class UsageGroup:
    bucket_start: int
    keys: dict[str, object] = field(default_factory=dict)
    input_tokens: int = 0
    cached_tokens: int = 0
    output_tokens: int = 0
    requests: int = 0
    cost_nanousd: int = 0


def _filters(q: UsageQuery) -> list[ColumnElement[bool]]:
    where: list[ColumnElement[bool]] = [UsageRow.created_at >= q.start, UsageRow.created_at < q.end]
    if q.endpoints:
        where.append(UsageRow.endpoint.in_(q.endpoints))
    for col, values in ((UsageRow.project_id, q.project_ids), (UsageRow.user_id, q.user_ids),
                        (UsageRow.api_key_id, q.api_key_ids), (UsageRow.model, q.models)):
        if values:
            where.append(col.in_(values))
    if q.batch is not None:
        where.append(UsageRow.batch == int(q.batch))
    return where


def aggregate(sessions: sessionmaker[Session], q: UsageQuery) -> list[UsageGroup]:
    """Sums per (bucket, group), ordered by bucket then group keys. Empty buckets are absent."""
    bucket = (UsageRow.created_at - ((UsageRow.created_at - q.start) % q.width)).label("bucket")
    cols = [GROUP_COLUMNS[g].label(g) for g in q.group_by]
    stmt = (
        select(
            bucket, *cols,
            func.coalesce(func.sum(UsageRow.input_tokens), 0), func.coalesce(func.sum(UsageRow.cached_tokens), 0),
            func.coalesce(func.sum(UsageRow.output_tokens), 0), func.count(),
            func.coalesce(func.sum(UsageRow.cost_nanousd), 0),
        )
        .where(*_filters(q))
        .group_by(bucket, *cols)
        .order_by(bucket, *cols)
    )
    out = []
    with sessions() as s:
        for row in s.execute(stmt):
            keys = {g: row[1 + i] for i, g in enumerate(q.group_by)}
            if "batch" in keys and keys["batch"] is not None:
                keys["batch"] = bool(keys["batch"])
            n = len(q.group_by)
            out.append(UsageGroup(int(row[0]), keys, int(row[1 + n]), int(row[2 + n]), int(row[3 + n]),
                                  int(row[4 + n]), int(row[5 + n])))
    return out


def month_start(now: float | None = None) -> int:
    """Unix time of the first instant of the current UTC month: when monthly spend limits reset."""
    t = time.gmtime(time.time() if now is None else now)
    return calendar.timegm((t.tm_year, t.tm_mon, 1, 0, 0, 0))


def month_key(now: float | None = None) -> str:
    t = time.gmtime(time.time() if now is None else now)
    return f"{t.tm_year:04d}-{t.tm_mon:02d}"


def spend_since(sessions: sessionmaker[Session], since: int, project_ids: Sequence[str] | None = None) -> int:
    """Total cost (nano-USD) recorded since ``since``; for some projects, or the whole organization."""
    stmt = select(func.coalesce(func.sum(UsageRow.cost_nanousd), 0)).where(UsageRow.created_at >= since)
    if project_ids is not None:
        stmt = stmt.where(UsageRow.project_id.in_(list(project_ids)))
    with sessions() as s:
        return int(s.execute(stmt).scalar_one())
