"""Usage and costs read APIs, project rate limits and spend limits (the organization API's money side).

Reads first flush this replica's ledger, so a caller sees its own requests at once; other replicas'
records arrive within their flush interval (``usage.flush_interval_s``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Any

from hearth.platform import pricing
from hearth.platform.errors import InvalidArgument, NotFound
from hearth.platform.policies import LimitOverride, PolicyStore
from hearth.platform.usage_queries import UsageGroup, UsageQuery, aggregate, month_start
from hearth.protocol import admin as admin_wire
from hearth.protocol import usage as wire
from hearth.protocol.errors import InvalidRequest
from hearth.services.admin import NotFoundError
from hearth.services.metering import Metering, org_scope, project_scope

WIDTHS = {"1m": 60, "1h": 3600, "1d": 86400}
# bucket width -> (default, max) number of buckets per page, as OpenAI documents them
PAGE_SIZES = {"1m": (60, 1440), "1h": (24, 168), "1d": (7, 31)}
COST_PAGE = (7, 180)
GROUPS = {
    "completions": ("project_id", "user_id", "api_key_id", "model", "batch", "service_tier"),
    "embeddings": ("project_id", "user_id", "api_key_id", "model"),
    "moderations": ("project_id", "user_id", "api_key_id", "model"),
}
COST_GROUPS = ("project_id", "line_item", "api_key_id")
# project.rate_limit wire fields -> override columns (images and audio limit nothing here)
RATE_LIMIT_FIELDS = {"max_requests_per_1_minute": "rpm", "max_tokens_per_1_minute": "tpm",
                     "max_requests_per_1_day": "rpd", "max_tokens_per_1_day": "tpd",
                     "batch_1_day_max_input_tokens": "batch_tpd"}
PAGE_PREFIX = "page_"


def _cursor(page: str | None, start: int) -> int:
    if page is None:
        return start
    if not page.startswith(PAGE_PREFIX) or not page[len(PAGE_PREFIX):].isdigit():
        raise InvalidRequest(f"Invalid page cursor {page!r}: pass the `next_page` of a previous response.",
                             param="page")
    return int(page[len(PAGE_PREFIX):])


def _check_range(start_time: int, end_time: int | None) -> int:
    end = int(time.time()) + 1 if end_time is None else end_time
    if start_time < 0:
        raise InvalidRequest("`start_time` must be a unix time in seconds.", param="start_time")
    if end <= start_time:
        raise InvalidRequest("`end_time` must be after `start_time`.", param="end_time")
    return end


def _check_groups(group_by: Sequence[str], allowed: Sequence[str]) -> tuple[str, ...]:
    for g in group_by:
        if g not in allowed:
            raise InvalidRequest(f"Invalid group_by value {g!r}; supported: {', '.join(allowed)}.",
                                 param="group_by")
    return tuple(dict.fromkeys(group_by))


def _page_size(limit: int | None, sizes: tuple[int, int]) -> int:
    if limit is None:
        return sizes[0]
    if not 1 <= limit <= sizes[1]:
        raise InvalidRequest(f"`limit` must be between 1 and {sizes[1]} for this bucket width.", param="limit")
    return limit


def _buckets(groups: list[UsageGroup], first: int, width: int, count: int, end: int,
             shape: Callable[[UsageGroup], wire.UsageResult]) -> wire.UsagePage:
    by_start: dict[int, list[wire.UsageResult]] = {}
    for g in groups:
        by_start.setdefault(g.bucket_start, []).append(shape(g))
    data = []
    t = first
    while t < end and len(data) < count:
        data.append(wire.UsageBucket(start_time=t, end_time=min(t + width, end), results=by_start.get(t, [])))
        t += width
    more = t < end
    return wire.UsagePage(data=data, has_more=more, next_page=f"{PAGE_PREFIX}{t}" if more else None)


class UsageService:
    def __init__(self, metering: Metering, policies: PolicyStore, models: Callable[[], list[str]],
                 org_id: str) -> None:
        self._metering = metering
        self._policies = policies
        self._models = models
        self._org_id = org_id

    async def _run(self, fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
        try:
            return await asyncio.to_thread(fn, *args, **kw)
        except NotFound as exc:
            raise NotFoundError(str(exc)) from None
        except InvalidArgument as exc:
            raise InvalidRequest(str(exc), param=exc.param, code="invalid_value") from None

    async def _query(self, q: UsageQuery) -> list[UsageGroup]:
        ledger = self._metering.ledger
        if ledger is None:
            return []
        await asyncio.to_thread(ledger.flush)  # read your own writes
        return list(await self._run(aggregate, ledger.sessions, q))

    # ------------------------------------------------------------ usage and costs

    async def usage(self, endpoint: str, *, start_time: int, end_time: int | None, bucket_width: str,
                    group_by: Sequence[str], project_ids: Sequence[str], user_ids: Sequence[str],
                    api_key_ids: Sequence[str], models: Sequence[str], batch: bool | None, limit: int | None,
                    page: str | None) -> wire.UsagePage:
        if bucket_width not in WIDTHS:
            raise InvalidRequest("`bucket_width` must be one of 1m, 1h, 1d.", param="bucket_width")
        width = WIDTHS[bucket_width]
        end = _check_range(start_time, end_time)
        groups = _check_groups(group_by, GROUPS[endpoint])
        count = _page_size(limit, PAGE_SIZES[bucket_width])
        first = _cursor(page, start_time)
        last = min(end, first + count * width)
        q = UsageQuery(start=first, end=last, width=width, endpoints=(endpoint,), group_by=groups,
                       project_ids=tuple(project_ids), user_ids=tuple(user_ids), api_key_ids=tuple(api_key_ids),
                       models=tuple(models), batch=batch if endpoint == "completions" else None)
        rows = await self._query(q)

        def shape(g: UsageGroup) -> wire.UsageResult:
            k = g.keys
            if endpoint == "completions":
                return wire.CompletionsUsageResult(
                    input_tokens=g.input_tokens, output_tokens=g.output_tokens, input_cached_tokens=g.cached_tokens,
                    input_uncached_tokens=g.input_tokens - g.cached_tokens, num_model_requests=g.requests,
                    project_id=k.get("project_id"), user_id=k.get("user_id"),  # type: ignore[arg-type]
                    api_key_id=k.get("api_key_id"), model=k.get("model"),  # type: ignore[arg-type]
                    batch=k.get("batch"), service_tier=k.get("service_tier"))  # type: ignore[arg-type]
            cls = wire.EmbeddingsUsageResult if endpoint == "embeddings" else wire.ModerationsUsageResult
            return cls(input_tokens=g.input_tokens, num_model_requests=g.requests,
                       project_id=k.get("project_id"), user_id=k.get("user_id"),  # type: ignore[arg-type]
                       api_key_id=k.get("api_key_id"), model=k.get("model"))  # type: ignore[arg-type]

        return _buckets(rows, first, width, count, end, shape)

    async def costs(self, *, start_time: int, end_time: int | None, bucket_width: str, group_by: Sequence[str],
                    project_ids: Sequence[str], api_key_ids: Sequence[str], limit: int | None,
                    page: str | None) -> wire.UsagePage:
        if bucket_width != "1d":
            raise InvalidRequest("`bucket_width` must be 1d for costs.", param="bucket_width")
        width = WIDTHS["1d"]
        end = _check_range(start_time, end_time)
        groups = _check_groups(group_by, COST_GROUPS)
        count = _page_size(limit, COST_PAGE)
        first = _cursor(page, start_time)
        # A line item is a model's usage (hearth prices tokens per model).
        columns = tuple("model" if g == "line_item" else g for g in groups)
        q = UsageQuery(start=first, end=min(end, first + count * width), width=width, group_by=columns,
                       project_ids=tuple(project_ids), api_key_ids=tuple(api_key_ids))
        rows = await self._query(q)

        def shape(g: UsageGroup) -> wire.UsageResult:
            k = g.keys
            return wire.CostsResult(amount=wire.CostAmount(value=pricing.usd(g.cost_nanousd)),
                                    line_item=k.get("model"), project_id=k.get("project_id"),  # type: ignore[arg-type]
                                    api_key_id=k.get("api_key_id"))  # type: ignore[arg-type]

        return _buckets(rows, first, width, count, end, shape)

    # ------------------------------------------------------------ project rate limits

    def _rate_limit(self, project_id: str, model: str) -> wire.ProjectRateLimit:
        limits = self._metering.limits
        v = limits.values_for(project_id, model) if limits is not None else None
        v = v or LimitOverride()
        return wire.ProjectRateLimit(id=f"rl-{model}", model=model, max_requests_per_1_minute=v.rpm,
                                     max_tokens_per_1_minute=v.tpm, max_requests_per_1_day=v.rpd,
                                     max_tokens_per_1_day=v.tpd, batch_1_day_max_input_tokens=v.batch_tpd)

    async def list_rate_limits(self, project_id: str, after: str | None, before: str | None,
                               limit: int) -> admin_wire.ListPage[Any]:
        await self._run(self._policies.overrides, project_id)  # 404 for an unknown project
        items = [self._rate_limit(project_id, m) for m in sorted(self._models())]
        if after is not None:
            items = [i for i in items if i.id > after]
        if before is not None:
            items = [i for i in items if i.id < before][-limit:]
        page, more = items[:limit], len(items) > limit
        return admin_wire.ListPage[Any](data=page, first_id=page[0].id if page else None,
                                        last_id=page[-1].id if page else None, has_more=more)

    async def update_rate_limit(self, project_id: str, rate_limit_id: str,
                                body: wire.ProjectRateLimitUpdate) -> wire.ProjectRateLimit:
        model = rate_limit_id.removeprefix("rl-").removeprefix("rl_")
        if model not in self._models():
            raise NotFoundError(f"No rate limit found with id '{rate_limit_id}' in project '{project_id}'.",
                                param="rate_limit_id")
        sent = body.model_fields_set
        values = {col: getattr(body, name) for name, col in RATE_LIMIT_FIELDS.items() if name in sent}
        await self._run(self._policies.set_override, project_id, model, values)
        if self._metering.policy is not None:
            await self._metering.policy.reload()
        return self._rate_limit(project_id, model)

    # ------------------------------------------------------------ spend limits

    async def spend_limit(self, project_id: str | None) -> wire.SpendLimit:
        scope_id = project_id or self._org_id
        if project_id is not None:
            await self._run(self._policies.overrides, project_id)  # 404 for an unknown project
        cap = await self._run(self._policies.spend_limit, scope_id)
        scope = project_scope(project_id) if project_id else org_scope(self._org_id)
        meter, ledger = self._metering.meter, self._metering.ledger
        if ledger is not None:
            await asyncio.to_thread(ledger.flush)
        if meter is not None:
            spent, held = await meter.usage(scope, self._metering.month_to_date)
        else:
            spent, held = await self._metering.month_to_date(scope), 0
        return wire.SpendLimit(object="project.spend_limit" if project_id else "organization.spend_limit",
                               project_id=project_id, monthly_limit_usd=None if cap is None else pricing.usd(cap),
                               spent_this_month_usd=pricing.usd(spent), held_usd=pricing.usd(held),
                               period_start=month_start())

    async def set_spend_limit(self, project_id: str | None, body: wire.SpendLimitUpdate) -> wire.SpendLimit:
        scope_id = project_id or self._org_id
        nanos = None if body.monthly_limit_usd is None else pricing.nanousd(body.monthly_limit_usd)
        await self._run(self._policies.set_spend_limit, scope_id, nanos, project=project_id is not None)
        scope = project_scope(project_id) if project_id else org_scope(self._org_id)
        ledger, meter = self._metering.ledger, self._metering.meter
        if ledger is not None:
            await asyncio.to_thread(ledger.flush)
        if meter is not None:
            await meter.invalidate(scope)  # recount from the ledger: spend while unlimited was not metered
        if self._metering.policy is not None:
            await self._metering.policy.reload()
        return await self.spend_limit(project_id)
