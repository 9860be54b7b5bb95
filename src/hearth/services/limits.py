"""Rate limits per project x model: reserve an estimate at admission, settle to the real count.

The estimate is the prompt (counted with the model's tokenizer) plus `max_completion_tokens` (or
`default_completion_tokens` when the request names none) for each of the `n` choices; when the
request ends — finished, failed or abandoned by its client — the reservation is settled to
prompt + generated tokens, so unused estimate flows back at once.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

from hearth.platform.ratelimit import Decision, Limiter, Limits, Reservation, ratelimit_headers
from hearth.services.context import RequestContext

log = logging.getLogger("hearth.limits")

_NAMES = {("requests", 60): "requests per min (RPM)", ("tokens", 60): "tokens per min (TPM)",
          ("requests", 86400): "requests per day (RPD)", ("tokens", 86400): "tokens per day (TPD)"}


class RateLimited(Exception):
    """429 `rate_limit_exceeded`. `retry_after_s` is None when waiting cannot help (too large)."""

    def __init__(self, message: str, kind: str, retry_after_s: float | None, headers: dict[str, str]) -> None:
        super().__init__(message)
        self.message, self.kind, self.retry_after_s, self.headers = message, kind, retry_after_s, headers


@dataclass(frozen=True, slots=True)
class Admission:
    reservation: Reservation
    estimate: int


class LimitsService:
    def __init__(self, limiter: Limiter, table: dict[str, Limits], default_completion_tokens: int = 1024) -> None:
        self._limiter = limiter
        self._table = table
        self._default_completion = default_completion_tokens

    def limits_for(self, model: str) -> Limits | None:
        return self._table.get(model) or self._table.get("*")

    async def admit(self, ctx: RequestContext, model: str, prompt_tokens: int, max_tokens: int | None,
                    n: int) -> Admission | None:
        limits = self.limits_for(model)
        if not limits:
            return None
        completion = max_tokens if max_tokens is not None else self._default_completion
        estimate = prompt_tokens + completion * n
        project = ctx.tenant or "anonymous"
        d = await self._limiter.reserve(f"{project}|{model}", limits, 1, estimate)
        headers = ratelimit_headers(d)
        ctx.response_headers.update(headers)
        if not d.admitted or d.reservation is None:
            raise _refusal(d, model, project, estimate, headers)
        return Admission(d.reservation, estimate)

    async def settle(self, admission: Admission | None, actual_tokens: int) -> None:
        if admission is None:
            return
        try:
            await self._limiter.settle(admission.reservation, actual_tokens)
        except Exception:
            log.warning("could not settle a rate-limit reservation", exc_info=True)

    async def close(self) -> None:
        await self._limiter.close()


def _refusal(d: Decision, model: str, project: str, estimate: int, headers: dict[str, str]) -> RateLimited:
    lim = d.violated
    kind = lim.kind if lim is not None else "requests"
    name = _NAMES.get((kind, lim.window_s), f"{kind} per {lim.window_s}s") if lim is not None else kind
    amount = lim.amount if lim is not None else 0
    requested = estimate if kind == "tokens" else 1
    where = f"for {model} in project {project} on {name}: Limit {amount}, Requested {requested}."
    if d.never or not math.isfinite(d.retry_after_s):
        return RateLimited(f"Request too large {where} The input or output tokens must be reduced in order to "
                           "run successfully.", kind, None, headers)
    return RateLimited(f"Rate limit reached {where} Please try again in {d.retry_after_s:.3g}s.", kind,
                       d.retry_after_s, headers)
