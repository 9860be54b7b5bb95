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

from hearth.platform.policies import LimitOverride
from hearth.platform.ratelimit import Decision, Limiter, Limits, Reservation, ratelimit_headers
from hearth.services.context import RequestContext
from hearth.services.policy import PolicyCache

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


def merged(base: LimitOverride | None, override: LimitOverride | None) -> LimitOverride | None:
    """The override's values where it sets them, the configured defaults elsewhere."""
    if override is None:
        return base
    if base is None:
        return override
    return LimitOverride(*(o if o is not None else b for b, o in zip(
        (base.rpm, base.tpm, base.rpd, base.tpd, base.batch_tpd),
        (override.rpm, override.tpm, override.rpd, override.tpd, override.batch_tpd), strict=True)))


class LimitsService:
    """``defaults``: configured limits by model id ("*" for every model); ``policy``: per-project
    overrides set through the admin API (``/v1/organization/projects/{id}/rate_limits``)."""

    def __init__(self, limiter: Limiter, defaults: dict[str, LimitOverride], policy: PolicyCache | None = None,
                 default_completion_tokens: int = 1024) -> None:
        self._limiter = limiter
        self._defaults = defaults
        self._policy = policy
        self._default_completion = default_completion_tokens
        self._built: dict[tuple[str, str], tuple[object, Limits]] = {}  # (project, model) -> (version, limits)

    def values_for(self, project: str, model: str) -> LimitOverride | None:
        base = self._defaults.get(model) or self._defaults.get("*")
        snap = self._policy.current() if self._policy is not None else None
        return merged(base, snap.overrides.get((project, model)) if snap is not None else None)

    def limits_for(self, project: str, model: str) -> Limits:
        """The online limits (RPM, TPM, RPD, TPD) of a project for a model; rebuilt only when the
        policy snapshot changes, since this runs on every request."""
        version = self._policy.current() if self._policy is not None else None
        hit = self._built.get((project, model))
        if hit is not None and hit[0] is version:
            return hit[1]
        v = self.values_for(project, model)
        limits = Limits.openai(rpm=v.rpm, tpm=v.tpm, rpd=v.rpd, tpd=v.tpd) if v is not None else Limits()
        if len(self._built) > 10_000:
            self._built.clear()
        self._built[(project, model)] = (version, limits)
        return limits

    def batch_limits_for(self, project: str, model: str) -> Limits:
        """The batch queue's input tokens per day (OpenAI's ``batch_1_day_max_input_tokens``), for the
        batch API: enqueued input tokens reserve against it under the scope ``<project>|<model>|batch``."""
        v = self.values_for(project, model)
        return Limits.openai(tpd=v.batch_tpd) if v is not None and v.batch_tpd is not None else Limits()

    async def admit(self, ctx: RequestContext, model: str, prompt_tokens: int, max_tokens: int | None,
                    n: int) -> Admission | None:
        project = ctx.tenant or "anonymous"
        limits = self.limits_for(project, model)
        if not limits:
            return None
        completion = max_tokens if max_tokens is not None else self._default_completion
        estimate = prompt_tokens + completion * n
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
