"""MemoryLimiter: the shared limiter cases, the memory bound, property tests, and header formatting."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_ratelimit_cases import T0, LimiterCases

from hearth.platform.ratelimit import Decision, Limiter, Limits, MemoryLimiter, Reservation, go_duration
from hearth.platform.ratelimit.headers import format_go_duration_ns


class TestMemoryLimiter(LimiterCases):
    @pytest.fixture
    async def limiter(self) -> AsyncIterator[MemoryLimiter]:
        lim = MemoryLimiter()
        yield lim
        await lim.close()


async def test_memory_stays_bounded_when_buckets_refill() -> None:
    limiter = MemoryLimiter()
    limits = Limits.openai(rpm=10, tpm=1000)
    peak = 0
    for i in range(50_000):
        # Each scope's two buckets refill within 6 s, so ~1200 are live at a time; without eviction
        # the table would grow to 100,000.
        now = T0 + i * 0.01
        d = await limiter.reserve(f"scope-{i}", limits, 1, 100, now=now)
        assert d.reservation
        await limiter.settle(d.reservation, 100, now=now)
        peak = max(peak, len(limiter))
    assert peak <= 3000  # live entries, times two for the amortised sweep


async def test_unsettled_reservations_expire() -> None:
    limiter = MemoryLimiter(reservation_ttl_s=10.0)
    d = await limiter.reserve("s", Limits.openai(tpm=1000), 1, 1000, now=T0)
    assert d.reservation
    for i in range(3000):  # enough traffic to trigger sweeps, long after the reservation's ttl
        await limiter.reserve(f"other-{i}", Limits(), 1, 0, now=T0 + 100.0 + i)
    await limiter.settle(d.reservation, 0, now=T0 + 4000.0)  # expired: ignored, not refunded late
    assert len(limiter) < 2100


# --- property tests -----------------------------------------------------------------------------

PROP_LIMITS = Limits.openai(rpm=5, tpm=1000, tpd=3000)

# Bursts (no time passing) and small requests exercise the requests limit; large ones the tokens limits,
# and above 1000 tokens the "never" path.
_dt = st.one_of(st.just(0.0), st.floats(0, 2), st.floats(0, 30))
_tokens = st.one_of(st.integers(0, 50), st.integers(0, 1100))
_reserve = st.tuples(st.just("reserve"), _dt, _tokens, st.just(0))
_settle = st.tuples(st.just("settle"), _dt, st.integers(0, 1500), st.integers(0, 64))
OPS = st.lists(st.one_of(_reserve, _settle), max_size=40)


@dataclass
class Trace:
    """Per limit, the (time, units) the limiter took (+) and gave back (-), for the window check."""

    events: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    decisions: list[Decision] = field(default_factory=list)

    def add(self, key: str, at: float, units: float) -> None:
        self.events.setdefault(key, []).append((at, units))


class Reference:
    """The specification, written the other way round from the implementation (what is left, with
    an explicit cap) so that a shared mistake is unlikely: a token bucket per limit, full at start,
    refilling at amount/window up to amount; refunds stop at full, excess charges go into debt."""

    def __init__(self, limits: Limits, now: float) -> None:
        self.limits, self.now = limits, now
        self.left = {lim.key: float(lim.amount) for lim in limits.items}

    def advance(self, now: float) -> None:
        for lim in self.limits.items:
            self.left[lim.key] = min(lim.amount, self.left[lim.key] + (now - self.now) * lim.rate)
        self.now = now

    def margin(self, tokens: int) -> float:
        return min(self.left[lim.key] - lim.need(1, tokens) for lim in self.limits.items)

    def take(self, tokens: int) -> None:
        for lim in self.limits.items:
            self.left[lim.key] -= lim.need(1, tokens)

    def remaining(self, kind: str) -> int:
        return min(max(0, int(self.left[lim.key] + 1e-9)) for lim in self.limits.items if lim.kind == kind)

    def adjust_tokens(self, delta: int) -> None:
        for lim in self.limits.of_kind("tokens"):
            self.left[lim.key] = min(lim.amount, self.left[lim.key] - delta)


async def run_ops(limiter: Limiter, scope: str, ops: Sequence[tuple[str, float, int, int]]) -> Trace:
    """Drive ``limiter`` through ``ops`` with an explicit, increasing clock, checking every decision
    against ``Reference``, that a refusal changes nothing, and that waiting ``retry_after_s`` is
    exactly enough."""
    trace, held, settled = Trace(), list[Reservation](), set[str]()
    now = T0
    ref = Reference(PROP_LIMITS, now)

    async def reserve(tokens: int) -> Decision:
        ref.advance(now)
        d = await limiter.reserve(scope, PROP_LIMITS, 1, tokens, now=now)
        trace.decisions.append(d)
        margin = ref.margin(tokens)
        if abs(margin) > 1e-6:  # closer than that, float rounding may decide either way
            assert d.admitted == (margin >= 0), (margin, d)
        if d.admitted:
            ref.take(tokens)
        for kind, limit, remaining in (("requests", d.limit_requests, d.remaining_requests),
                                       ("tokens", d.limit_tokens, d.remaining_tokens)):
            assert limit is not None and remaining is not None and 0 <= remaining <= limit, kind
            assert abs(remaining - ref.remaining(kind)) <= 1, (kind, remaining, ref.left)
        if d.admitted:
            assert d.reservation is not None
            held.append(d.reservation)
            for lim in PROP_LIMITS.items:
                trace.add(lim.key, now, lim.need(1, tokens))
        return d

    for kind, dt, amount, index in ops:
        now += dt
        if kind == "settle":
            if not held:
                continue
            r = held[index % len(held)]
            ref.advance(now)
            await limiter.settle(r, amount, now=now)
            if r.id not in settled:
                ref.adjust_tokens(amount - r.tokens)
                if amount < r.tokens:
                    # Only refunds are traced: an excess charge only ever makes the bucket stricter.
                    for lim in PROP_LIMITS.of_kind("tokens"):
                        trace.add(lim.key, now, amount - r.tokens)
            settled.add(r.id)
            continue
        d = await reserve(amount)
        if d.admitted or d.never:
            assert d.never == (amount > 1000) and (d.retry_after_s == float("inf")) == d.never
            continue
        assert d.violated is not None and d.retry_after_s > 0
        again = await reserve(amount)  # a refusal consumed nothing: the same answer again
        assert (again.admitted, again.remaining_requests, again.remaining_tokens, again.retry_after_s) == (
            d.admitted, d.remaining_requests, d.remaining_tokens, d.retry_after_s)
        if d.retry_after_s > 1e-3:
            now += d.retry_after_s / 2
            assert not (await reserve(amount)).admitted  # retry_after is not too generous ...
            now += d.retry_after_s / 2 + 1e-7
        else:
            now += d.retry_after_s + 1e-7
        assert (await reserve(amount)).admitted  # ... nor too strict
    return trace


def assert_within_bucket_bounds(trace: Trace) -> None:
    """Over every interval [t1, t2]: taken - given back <= amount + rate * (t2 - t1). That is the
    token-bucket guarantee (a full burst, then the replenishment rate) and nothing more."""
    for lim in PROP_LIMITS.items:
        events = trace.events.get(lim.key, [])
        for i, j in itertools.combinations_with_replacement(range(len(events)), 2):
            t1, t2 = events[i][0], events[j][0]
            net = sum(units for at, units in events if t1 <= at <= t2)
            assert net <= lim.amount + lim.rate * (t2 - t1) + 1e-6, (lim, t1, t2, net)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=OPS)
def test_property_memory_never_exceeds_the_buckets(ops: list[tuple[str, float, int, int]]) -> None:
    async def main() -> Trace:
        limiter = MemoryLimiter()
        try:
            return await run_ops(limiter, "prop", ops)
        finally:
            await limiter.close()

    assert_within_bucket_bounds(asyncio.run(main()))


# --- headers ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("seconds", "expected"), [
    (0, "0s"), (1, "1s"), (1.5, "1.5s"), (8.64, "8.64s"), (0.02, "20ms"), (0.001, "1ms"),
    (0.0015, "2ms"), (0.0005, "1ms"), (0.0004, "0s"), (59.9999, "1m0s"), (60, "1m0s"), (360, "6m0s"),
    (61.001, "1m1.001s"), (3600, "1h0m0s"), (3723, "1h2m3s"), (86_400, "24h0m0s"), (17_280, "4h48m0s"),
    (-1.5, "-1.5s"),
])
def test_go_duration(seconds: float, expected: str) -> None:
    assert go_duration(seconds) == expected


@pytest.mark.parametrize(("ns", "expected"), [
    (0, "0s"), (1, "1ns"), (999, "999ns"), (1_500, "1.5\u00b5s"), (1_000_000, "1ms"),
    (1_234_567, "1.234567ms"), (5_400_000_000_000 + 918_273_645, "1h30m0.918273645s"),
    (72 * 3600 * 10**9 + 180 * 10**9 + 5 * 10**8, "72h3m0.5s"), (-2_000, "-2\u00b5s"),
])
def test_format_go_duration_ns_matches_go(ns: int, expected: str) -> None:
    assert format_go_duration_ns(ns) == expected


def test_go_duration_exact_resolution_and_bad_input() -> None:
    assert go_duration(0.0000015, resolution_ns=1) == "1.5\u00b5s"
    with pytest.raises(ValueError):
        go_duration(float("inf"))
