"""Admission and accounting for every metered request: rate limits, spend limits, usage ledger.

``admit`` runs before a request reaches a model: it holds the request's worst-case cost against the
project's and the organization's monthly spend limits (429 ``insufficient_quota`` if either would
be exceeded), then reserves its rate-limit estimate (429 ``rate_limit_exceeded``). ``finish`` runs
exactly once when the request ends however it ends (finished, failed, client gone): it settles both
to the real counts and appends one record to the usage ledger before the response completes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from hearth.platform import pricing
from hearth.platform.pricing import RateCard
from hearth.platform.quotas import Budget, SpendHold, SpendMeter
from hearth.platform.usage import UsageLedger, UsageRecord
from hearth.platform.usage_queries import month_start, spend_since
from hearth.services.context import RequestContext
from hearth.services.limits import Admission, LimitsService
from hearth.services.policy import PolicyCache

log = logging.getLogger("hearth.metering")


class QuotaExceeded(Exception):
    """429 ``insufficient_quota``: a monthly spend limit is reached. Retrying cannot help."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(slots=True)
class Ticket:
    endpoint: str
    model: str
    created_at: int
    batch: bool = False
    admission: Admission | None = None
    hold: SpendHold | None = None
    done: bool = False


def status_of(exc: BaseException) -> int:
    """The HTTP status a failed request ends with, for its usage record (499: the client left)."""
    if isinstance(exc, asyncio.CancelledError):
        return 499
    code = getattr(exc, "status", None)
    return code if isinstance(code, int) else 500


def org_scope(org_id: str) -> str:
    return f"org:{org_id}"


def project_scope(project_id: str) -> str:
    return f"project:{project_id}"


class Metering:
    def __init__(self, *, limits: LimitsService | None = None, ledger: UsageLedger | None = None,
                 prices: dict[str, RateCard] | None = None, meter: SpendMeter | None = None,
                 policy: PolicyCache | None = None) -> None:
        self.limits = limits
        self.ledger = ledger
        self._prices = prices or {}
        self.meter = meter
        self.policy = policy

    def price(self, model: str) -> RateCard:
        return self._prices.get(model) or self._prices.get("*") or pricing.FREE

    def _budgets(self, ctx: RequestContext) -> list[Budget]:
        p = ctx.principal
        if p is None or self.policy is None or self.meter is None:
            return []
        caps = self.policy.current().spend_limits
        out = []
        if p.project_id is not None and p.project_id in caps:
            out.append(Budget(project_scope(p.project_id), caps[p.project_id]))
        if p.org_id in caps:
            out.append(Budget(org_scope(p.org_id), caps[p.org_id]))
        return out

    async def month_to_date(self, scope: str) -> int:
        """Month-to-date spend of a scope according to the ledger (flushed records)."""
        if self.ledger is None:
            return 0
        sessions = self.ledger.sessions
        kind, _, sid = scope.partition(":")
        projects = [sid] if kind == "project" else None
        return await asyncio.to_thread(spend_since, sessions, month_start(), projects)

    async def admit(self, ctx: RequestContext, endpoint: str, model: str, prompt_tokens: int, *,
                    max_tokens_asked: int | None, max_tokens_upper: int, n: int = 1,
                    batch: bool = False) -> Ticket:
        """Hold spend, then reserve rate limits. Raises QuotaExceeded or RateLimited (nothing held)."""
        t = Ticket(endpoint, model, int(time.time()), batch)
        budgets = self._budgets(ctx)
        if budgets and self.meter is not None:
            worst = pricing.cost_nanousd(self.price(model), prompt_tokens, max_tokens_upper * n, batch=batch)
            d = await self.meter.reserve(budgets, worst, self.month_to_date)
            if d.hold is None:
                b = d.violated
                assert b is not None
                kind, _, sid = b.scope.partition(":")
                what = "Project" if kind == "project" else "Organization"
                raise QuotaExceeded(
                    "You exceeded your current quota, please check your plan and billing details. "
                    f"{what} {sid} has a monthly spend limit of ${pricing.usd(b.cap_nanousd):.2f}: "
                    f"${pricing.usd(d.spent):.4f} spent this month and ${pricing.usd(d.held):.4f} held by "
                    f"requests in flight; this request may cost up to ${pricing.usd(worst):.4f}.")
            t.hold = d.hold
        if self.limits is not None:
            try:
                t.admission = await self.limits.admit(ctx, model, prompt_tokens, max_tokens_asked, n)
            except BaseException:
                if t.hold is not None and self.meter is not None:
                    await self.meter.settle(t.hold, 0)
                raise
        return t

    async def finish(self, t: Ticket | None, ctx: RequestContext, status: int) -> None:
        """Settle and record. Idempotent; never raises (accounting must not fail a served request)."""
        if t is None or t.done:
            return
        t.done = True
        cost = pricing.cost_nanousd(self.price(t.model), ctx.prompt_tokens, ctx.completion_tokens,
                                    ctx.cached_tokens, batch=t.batch)
        p = ctx.principal
        if self.ledger is not None:
            try:
                self.ledger.record(UsageRecord(
                    id=ctx.request_id, created_at=t.created_at, endpoint=t.endpoint, model=t.model,
                    org_id=p.org_id if p else None, project_id=p.project_id if p else None,
                    api_key_id=p.key_id if p else None,
                    user_id=p.owner.id if p is not None and p.owner.type == "user" else None,
                    batch=t.batch, service_tier="batch" if t.batch else "default",
                    input_tokens=ctx.prompt_tokens, cached_tokens=ctx.cached_tokens,
                    output_tokens=ctx.completion_tokens,
                    latency_ms=int((time.perf_counter() - ctx.started) * 1000), status=status, cost_nanousd=cost,
                ))
            except Exception:
                log.exception("usage ledger append failed")
        if t.hold is not None and self.meter is not None:
            try:
                await self.meter.settle(t.hold, cost)
            except Exception:
                log.warning("could not settle a spend hold", exc_info=True)
        if self.limits is not None and t.admission is not None:
            await self.limits.settle(t.admission, ctx.prompt_tokens + ctx.completion_tokens)

    async def close(self) -> None:
        if self.limits is not None:
            await self.limits.close()
        if self.meter is not None:
            await self.meter.close()
