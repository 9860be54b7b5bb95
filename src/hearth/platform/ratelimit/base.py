"""The ``Limiter`` interface, its values, and the bucket arithmetic every implementation shares.

A bucket's state is ``used`` (units taken and not yet replenished) at time ``ts``. Storing usage rather
than what is left means a bucket at rest is simply absent (used 0), and raising a limit takes effect at
once. Replenishment is continuous at ``limit.rate`` per second, so usage decays to zero
``used / rate`` seconds after the last change.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from hearth.platform.ratelimit.limits import Limit, LimitKind, Limits

# Floats drift by ~1e-12 over a refill; without slack, the 10th of 10 requests at the same instant
# could be refused for 60.000000001 s of a 60 s window.
EPSILON = 1e-9

RESERVATION_PREFIX = "rl_"


def new_reservation_id() -> str:
    # 128 random bits like every hearth id, but hex: ids.new_id's base62 loop costs more than
    # the rest of a memory reserve.
    return RESERVATION_PREFIX + secrets.token_hex(16)


@dataclass(frozen=True, slots=True)
class Reservation:
    """What an admitted request holds: everything ``settle`` needs, so a replica other than the one
    that reserved can settle it. ``id`` makes settling idempotent. ``created_at`` is the limiter's
    clock at admission (Redis ``TIME``, this process' monotonic clock, or the caller's ``now``)."""

    id: str
    scope: str
    limits: Limits
    requests: int
    tokens: int
    created_at: float


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of ``reserve``.

    ``admitted``: whether everything was reserved (all or nothing: a refusal consumes nothing).
    ``violated``: the limit that refused, the one whose wait is longest. ``retry_after_s``: seconds until
    the same request would fit every limit (0 when admitted, ``math.inf`` when ``never``).
    ``never``: the request needs more than some limit's whole capacity (e.g. a token estimate above
    the tokens-per-minute limit); retrying cannot help, so answer with a clear message.
    The snapshot fields describe, per kind, the tightest limit (least remaining) after the decision;
    they are ``None`` when no limit of that kind applies.
    """

    admitted: bool
    reservation: Reservation | None
    violated: Limit | None = None
    retry_after_s: float = 0.0
    never: bool = False
    limit_requests: int | None = None
    remaining_requests: int | None = None
    reset_requests_s: float | None = None
    limit_tokens: int | None = None
    remaining_tokens: int | None = None
    reset_tokens_s: float | None = None


class Limiter(Protocol):
    """Admission control per scope (e.g. ``"proj_…|gpt-4o-mini"``) against a set of limits.

    Guarantees: reserve is atomic across all limits of a call and exact under concurrency (for the
    Redis implementation, across processes and replicas too); settle is idempotent. ``now`` (seconds)
    is for tests; by default the implementation's own clock is used. Use one clock for a scope: an
    explicit ``now`` far from the limiter's own clock reads as that much time passing.
    """

    async def reserve(self, scope: str, limits: Limits, requests: int, tokens: int,
                      now: float | None = None) -> Decision:
        """Take ``requests`` and ``tokens`` from every bucket in ``limits`` if all of them fit."""
        ...

    async def settle(self, reservation: Reservation, actual_tokens: int, now: float | None = None) -> None:
        """Correct the tokens buckets from the estimate to ``actual_tokens``: refund the difference
        (never past full) or charge the excess (which may leave the bucket in debt, so later requests
        wait). Requests are not adjusted: a request that started counts. A second call does nothing."""
        ...

    async def close(self) -> None:
        ...


def check_amounts(requests: int, tokens: int) -> None:
    if requests < 0 or tokens < 0:
        raise ValueError("requests and tokens must not be negative")


def refilled(used: float, ts: float, now: float, rate: float) -> float:
    """Usage at ``now`` after replenishing since ``ts``. A clock behind ``ts`` replenishes nothing
    rather than adding usage back."""
    if now <= ts:
        return used
    return max(0.0, used - (now - ts) * rate)


def fits(used: float, need: int, limit: Limit) -> bool:
    return used + need <= limit.amount + EPSILON


def decide(limits: Limits, requests: int, tokens: int, used: Sequence[float],
           admitted: bool, reservation: Reservation | None) -> Decision:
    """Build the ``Decision`` from each bucket's usage: after the commit when admitted, as found
    otherwise (a refusal changes nothing). One pass; this runs on every request."""
    violated: Limit | None = None
    retry_after = 0.0
    never = False
    # Per kind, the tightest limit: least remaining, then the longest reset.
    tightest: dict[LimitKind, tuple[int, float, int]] = {}
    for limit, u in zip(limits.items, used, strict=True):
        amount = limit.amount
        left = amount - u + EPSILON
        remaining = 0 if left <= 0 else min(amount, int(left))  # int() floors a positive float
        reset = u / limit.rate if u > 0 else 0.0
        best = tightest.get(limit.kind)
        if best is None or remaining < best[0] or (remaining == best[0] and reset > best[1]):
            tightest[limit.kind] = (remaining, reset, amount)
        if admitted or never:
            continue
        need = limit.need(requests, tokens)
        if need > amount:
            never, violated, retry_after = True, limit, math.inf
        elif not fits(u, need, limit):
            wait = (u + need - amount) / limit.rate
            if violated is None or wait > retry_after:
                violated, retry_after = limit, wait
    req, tok = tightest.get("requests"), tightest.get("tokens")
    return Decision(
        admitted=admitted, reservation=reservation, violated=violated, retry_after_s=retry_after,
        never=never,
        limit_requests=req[2] if req else None, remaining_requests=req[0] if req else None,
        reset_requests_s=req[1] if req else None,
        limit_tokens=tok[2] if tok else None, remaining_tokens=tok[0] if tok else None,
        reset_tokens_s=tok[1] if tok else None,
    )
