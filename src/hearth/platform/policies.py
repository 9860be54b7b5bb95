"""Per-project rate-limit overrides and spend limits, stored in the platform database.

``PolicyStore`` is synchronous (call it from a worker thread). Reads on the request path go through
a ``PolicySnapshot``: the whole (small) policy table loaded at once and reloaded every few seconds,
so admission never waits on the database.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from hearth.platform.db.engine import WRITE
from hearth.platform.db.models import Project, ProjectRateLimitRow, SpendLimitRow
from hearth.platform.errors import InvalidArgument, NotFound

LIMIT_FIELDS = ("rpm", "tpm", "rpd", "tpd", "batch_tpd")


@dataclass(frozen=True, slots=True)
class LimitOverride:
    """None keeps the configured default for that limit."""

    rpm: int | None = None
    tpm: int | None = None
    rpd: int | None = None
    tpd: int | None = None
    batch_tpd: int | None = None


@dataclass(frozen=True, slots=True)
class PolicySnapshot:
    overrides: dict[tuple[str, str], LimitOverride] = field(default_factory=dict)  # (project, model)
    spend_limits: dict[str, int] = field(default_factory=dict)  # scope id -> nano-USD per month
    loaded_at: float = 0.0


def _override(row: ProjectRateLimitRow) -> LimitOverride:
    return LimitOverride(*(getattr(row, f) for f in LIMIT_FIELDS))


def _check(values: dict[str, int | None]) -> None:
    for k, v in values.items():
        if k not in LIMIT_FIELDS:
            raise InvalidArgument(f"Unknown rate limit field {k!r}.", param=k)
        if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v <= 0):
            raise InvalidArgument(f"`{k}` must be a positive integer.", param=k)


class PolicyStore:
    def __init__(self, sessions: sessionmaker[Session], clock: Callable[[], float] = time.time) -> None:
        self._sessions = sessions
        self._clock = clock

    def _project(self, s: Session, project_id: str) -> Project:
        p = s.get(Project, project_id)
        if p is None:
            raise NotFound("project", project_id)
        return p

    def overrides(self, project_id: str) -> dict[str, LimitOverride]:
        with self._sessions() as s:
            self._project(s, project_id)
            rows = s.scalars(select(ProjectRateLimitRow).where(ProjectRateLimitRow.project_id == project_id))
            return {r.model: _override(r) for r in rows}

    def set_override(self, project_id: str, model: str, values: dict[str, int | None]) -> LimitOverride:
        """Merge ``values`` into the project's override for ``model`` (absent keys keep theirs)."""
        _check(values)
        with self._sessions.begin() as s:
            s.connection(execution_options={WRITE: True})  # SQLite: BEGIN IMMEDIATE
            self._project(s, project_id)
            row = s.get(ProjectRateLimitRow, (project_id, model))
            if row is None:
                row = ProjectRateLimitRow(project_id=project_id, model=model, updated_at=int(self._clock()))
                s.add(row)
            for k, v in values.items():
                setattr(row, k, v)
            row.updated_at = int(self._clock())
            return _override(row)

    def spend_limit(self, scope_id: str) -> int | None:
        with self._sessions() as s:
            row = s.get(SpendLimitRow, scope_id)
            return row.monthly_limit_nanousd if row is not None else None

    def set_spend_limit(self, scope_id: str, nanousd: int | None, *, project: bool) -> None:
        if nanousd is not None and nanousd < 0:
            raise InvalidArgument("A spend limit must not be negative.", param="monthly_limit_usd")
        with self._sessions.begin() as s:
            s.connection(execution_options={WRITE: True})
            if project:
                self._project(s, scope_id)
            row = s.get(SpendLimitRow, scope_id)
            if row is None:
                s.add(SpendLimitRow(scope_id=scope_id, monthly_limit_nanousd=nanousd, updated_at=int(self._clock())))
            else:
                row.monthly_limit_nanousd = nanousd
                row.updated_at = int(self._clock())

    def snapshot(self) -> PolicySnapshot:
        with self._sessions() as s:
            overrides = {
                (r.project_id, r.model): _override(r) for r in s.scalars(select(ProjectRateLimitRow))
            }
            limits = {r.scope_id: r.monthly_limit_nanousd for r in s.scalars(select(SpendLimitRow))
                      if r.monthly_limit_nanousd is not None}
        return PolicySnapshot(overrides, limits, self._clock())
