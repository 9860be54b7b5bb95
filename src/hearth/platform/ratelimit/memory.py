"""``MemoryLimiter``: buckets in this process, for a single replica and for tests.

Each call does O(number of limits) dictionary work under a ``threading.Lock`` and never awaits while
holding it, so it is safe for concurrent tasks on one event loop and for threads alike, and the lock is
never held across a suspension point. Memory stays bounded: a bucket that has refilled completely is
indistinguishable from one that never existed, so sweeps drop it (amortised O(1) per call).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from hearth.platform.ratelimit.base import (
    Decision,
    Reservation,
    check_amounts,
    decide,
    fits,
    new_reservation_id,
    refilled,
)
from hearth.platform.ratelimit.limits import Limits

_MIN_SWEEP = 1024  # below this many entries a sweep is not worth its cost


@dataclass(slots=True)
class _Bucket:
    used: float
    ts: float
    rate: float  # kept so a sweep can tell whether the bucket has refilled without its Limit


class MemoryLimiter:
    """In-process ``Limiter``. ``reservation_ttl_s``: how long an unsettled reservation stays
    settleable; it bounds the memory leaked by callers that never settle."""

    def __init__(self, *, reservation_ttl_s: float = 86_400.0) -> None:
        self._lock = threading.Lock()
        self._buckets: dict[tuple[str, str], _Bucket] = {}
        # Outstanding reservations (id -> expiry). Settle claims its id here, which both makes it
        # idempotent and keeps memory proportional to requests in flight, not to requests served.
        self._pending: dict[str, float] = {}
        self._ttl = reservation_ttl_s
        self._sweep_at = _MIN_SWEEP

    async def reserve(self, scope: str, limits: Limits, requests: int, tokens: int,
                      now: float | None = None) -> Decision:
        check_amounts(requests, tokens)
        t = time.monotonic() if now is None else now
        with self._lock:
            buckets = self._buckets
            found = [buckets.get((scope, limit.key)) for limit in limits.items]
            used = [0.0 if b is None else refilled(b.used, b.ts, t, limit.rate)
                    for b, limit in zip(found, limits.items, strict=True)]
            admitted = all(fits(u, limit.need(requests, tokens), limit)
                           for u, limit in zip(used, limits.items, strict=True))
            reservation = None
            if admitted:
                for i, limit in enumerate(limits.items):
                    need = limit.need(requests, tokens)
                    if need:
                        used[i] += need
                        self._put(found[i], scope, limit.key, limit.rate, used[i], t)
                reservation = Reservation(new_reservation_id(), scope, limits, requests, tokens, float(t))
                self._pending[reservation.id] = t + self._ttl
                self._maybe_sweep(t)  # only admissions grow the tables
        return decide(limits, requests, tokens, used, admitted, reservation)

    async def settle(self, reservation: Reservation, actual_tokens: int, now: float | None = None) -> None:
        check_amounts(0, actual_tokens)
        t = time.monotonic() if now is None else now
        delta = actual_tokens - reservation.tokens
        with self._lock:
            if self._pending.pop(reservation.id, None) is None:
                return  # settled already, expired, or never ours
            if delta == 0:
                return
            for limit in reservation.limits.of_kind("tokens"):
                # A refund cannot push usage below zero: tokens the bucket has already replenished
                # are not given back twice. An excess charge may exceed the capacity (debt).
                bucket = self._buckets.get((reservation.scope, limit.key))
                used = 0.0 if bucket is None else refilled(bucket.used, bucket.ts, t, limit.rate)
                self._put(bucket, reservation.scope, limit.key, limit.rate, max(0.0, used + delta), t)

    async def close(self) -> None:
        with self._lock:
            self._buckets.clear()
            self._pending.clear()

    def __len__(self) -> int:
        """Buckets and reservations held; for tests of the memory bound."""
        return len(self._buckets) + len(self._pending)

    def _put(self, bucket: _Bucket | None, scope: str, key: str, rate: float, used: float,
             now: float) -> None:
        if bucket is None:
            if used > 0:
                self._buckets[(scope, key)] = _Bucket(used, now, rate)
            return
        bucket.used, bucket.rate = used, rate
        bucket.ts = max(bucket.ts, now)  # a caller clock behind ours must not rewind the bucket

    def _maybe_sweep(self, now: float) -> None:
        # Sweep when the tables have doubled since the last sweep: each sweep is paid for by the
        # inserts that preceded it, so the cost per call stays O(1) amortised.
        if len(self._buckets) + len(self._pending) < self._sweep_at:
            return
        self._buckets = {k: b for k, b in self._buckets.items() if refilled(b.used, b.ts, now, b.rate) > 0}
        self._pending = {k: exp for k, exp in self._pending.items() if exp > now}
        self._sweep_at = max(_MIN_SWEEP, 2 * (len(self._buckets) + len(self._pending)))
