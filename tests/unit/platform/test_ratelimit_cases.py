"""Behaviour every ``Limiter`` must have; run on the memory limiter here and on Redis in
tests/integration/test_ratelimit_redis.py. The class has no ``Test`` prefix, so this module collects
nothing itself: a test module subclasses it and provides a ``limiter`` fixture."""

from __future__ import annotations

import asyncio
import math
import uuid

import pytest

from hearth.platform.ratelimit import Limit, Limiter, Limits, ratelimit_headers, rpd, rpm, tpd, tpm

T0 = 1_000.0  # explicit clock for deterministic cases


class LimiterCases:
    @pytest.fixture
    def scope(self) -> str:
        # Unique per test, so tests sharing one Redis never see each other's buckets.
        return f"proj_test|model-{uuid.uuid4().hex}"

    async def test_concurrent_reserves_admit_exactly_the_limit(self, limiter: Limiter, scope: str) -> None:
        limits = Limits((rpm(10),))
        decisions = await asyncio.gather(*(limiter.reserve(scope, limits, 1, 0, now=T0) for _ in range(64)))
        admitted = [d for d in decisions if d.admitted]
        assert len(admitted) == 10
        assert len({d.reservation.id for d in admitted if d.reservation}) == 10
        refused = [d for d in decisions if not d.admitted]
        assert all(d.violated == rpm(10) and not d.never and d.reservation is None for d in refused)
        assert all(d.retry_after_s == pytest.approx(6.0) for d in refused)
        assert all(d.remaining_requests == 0 for d in refused)

    async def test_concurrent_reserves_with_default_clock(self, limiter: Limiter, scope: str) -> None:
        limits = Limits((rpd(10),))  # a day window: the test's own duration refills nothing
        decisions = await asyncio.gather(*(limiter.reserve(scope, limits, 1, 0) for _ in range(64)))
        assert sum(d.admitted for d in decisions) == 10
        refused = next(d for d in decisions if not d.admitted)
        assert refused.retry_after_s == pytest.approx(8640.0, abs=1.0)

    async def test_bucket_refills_continuously(self, limiter: Limiter, scope: str) -> None:
        limits = Limits((rpm(10),))
        for _ in range(10):
            assert (await limiter.reserve(scope, limits, 1, 0, now=T0)).admitted
        early = await limiter.reserve(scope, limits, 1, 0, now=T0 + 5.9)
        assert not early.admitted
        assert early.retry_after_s == pytest.approx(0.1)
        assert early.reset_requests_s == pytest.approx(60.0 - 5.9)
        assert (await limiter.reserve(scope, limits, 1, 0, now=T0 + 6.0)).admitted  # one every 6 s
        assert not (await limiter.reserve(scope, limits, 1, 0, now=T0 + 6.0)).admitted
        fresh = await limiter.reserve(scope, limits, 1, 0, now=T0 + 66.0)  # full again
        assert fresh.admitted and fresh.remaining_requests == 9
        assert fresh.reset_requests_s == pytest.approx(6.0)

    async def test_all_or_nothing_across_limits(self, limiter: Limiter, scope: str) -> None:
        limits = Limits.openai(rpm=10, tpm=1000)
        first = await limiter.reserve(scope, limits, 1, 900, now=T0)
        assert first.admitted and first.remaining_requests == 9 and first.remaining_tokens == 100
        refused = await limiter.reserve(scope, limits, 1, 200, now=T0)
        assert not refused.admitted and refused.violated == tpm(1000)
        assert refused.retry_after_s == pytest.approx(6.0)  # 100 tokens short at 1000/60 per second
        assert refused.remaining_requests == 9  # the requests bucket was not charged
        second = await limiter.reserve(scope, limits, 1, 100, now=T0)
        assert second.admitted and second.remaining_requests == 8 and second.remaining_tokens == 0

    async def test_violated_is_the_limit_with_the_longest_wait(self, limiter: Limiter, scope: str) -> None:
        limits = Limits.openai(rpm=2, tpm=100)
        assert (await limiter.reserve(scope, limits, 1, 100, now=T0)).admitted
        assert (await limiter.reserve(scope, limits, 1, 0, now=T0)).admitted
        d = await limiter.reserve(scope, limits, 1, 100, now=T0)
        assert not d.admitted and d.violated == tpm(100) and d.retry_after_s == pytest.approx(60.0)

    async def test_settle_refunds_the_unused_estimate(self, limiter: Limiter, scope: str) -> None:
        limits = Limits((tpm(1000),))
        d = await limiter.reserve(scope, limits, 1, 1000, now=T0)
        assert d.admitted and d.reservation and d.remaining_tokens == 0
        await limiter.settle(d.reservation, 100, now=T0)
        after = await limiter.reserve(scope, limits, 1, 900, now=T0)  # the 900 came back
        assert after.admitted and after.remaining_tokens == 0
        await limiter.settle(d.reservation, 100, now=T0)  # idempotent: nothing comes back twice
        await limiter.settle(d.reservation, 0, now=T0)
        assert not (await limiter.reserve(scope, limits, 1, 1, now=T0)).admitted

    async def test_refund_never_overfills(self, limiter: Limiter, scope: str) -> None:
        limits = Limits((tpm(1000),))
        d = await limiter.reserve(scope, limits, 1, 500, now=T0)
        assert d.reservation
        await limiter.settle(d.reservation, 0, now=T0 + 120.0)  # already refilled: nothing to refund
        full = await limiter.reserve(scope, limits, 1, 1000, now=T0 + 120.0)
        assert full.admitted and full.remaining_tokens == 0
        assert not (await limiter.reserve(scope, limits, 1, 1, now=T0 + 120.0)).admitted

    async def test_settle_charges_an_overrun_as_debt(self, limiter: Limiter, scope: str) -> None:
        limits = Limits((tpm(1000),))
        d = await limiter.reserve(scope, limits, 1, 100, now=T0)
        assert d.reservation
        await limiter.settle(d.reservation, 1300, now=T0)  # 300 tokens over capacity
        debt = await limiter.reserve(scope, limits, 1, 0, now=T0)  # in debt, even 0 tokens wait
        assert not debt.admitted and debt.remaining_tokens == 0 and debt.reset_tokens_s == pytest.approx(78.0)
        assert debt.retry_after_s == pytest.approx(18.0)
        refused = await limiter.reserve(scope, limits, 1, 1, now=T0 + 17.0)
        assert not refused.admitted and refused.retry_after_s == pytest.approx(1.06)
        assert (await limiter.reserve(scope, limits, 1, 1, now=T0 + 18.06)).admitted

    async def test_settle_with_default_clock(self, limiter: Limiter, scope: str) -> None:
        limits = Limits((tpd(1000),))
        d = await limiter.reserve(scope, limits, 1, 1000)
        assert d.reservation
        await limiter.settle(d.reservation, 100)
        again = await limiter.reserve(scope, limits, 1, 900)
        assert again.admitted and again.remaining_tokens == 0

    async def test_never_fits(self, limiter: Limiter, scope: str) -> None:
        limits = Limits.openai(rpm=10, tpm=1000)
        d = await limiter.reserve(scope, limits, 1, 1001, now=T0)
        assert not d.admitted and d.never and d.violated == tpm(1000) and d.reservation is None
        assert d.retry_after_s == math.inf
        assert d.remaining_requests == 10 and d.remaining_tokens == 1000  # nothing was consumed
        assert (await limiter.reserve(scope, Limits((rpm(1),)), 2, 0, now=T0)).never  # 2 requests > 1

    async def test_limits_apply_per_scope(self, limiter: Limiter, scope: str) -> None:
        limits = Limits((rpm(1),))
        assert (await limiter.reserve(scope, limits, 1, 0, now=T0)).admitted
        assert not (await limiter.reserve(scope, limits, 1, 0, now=T0)).admitted
        assert (await limiter.reserve(scope + "-other", limits, 1, 0, now=T0)).admitted

    async def test_no_limits_admits_and_settles(self, limiter: Limiter, scope: str) -> None:
        d = await limiter.reserve(scope, Limits(), 1, 10**9, now=T0)
        assert d.admitted and d.reservation and d.limit_requests is None and d.limit_tokens is None
        assert ratelimit_headers(d) == {}
        await limiter.settle(d.reservation, 5, now=T0)

    async def test_snapshot_reports_the_tightest_limit(self, limiter: Limiter, scope: str) -> None:
        limits = Limits.openai(rpm=100, tpm=10_000, rpd=5, tpd=1_000_000)
        d = await limiter.reserve(scope, limits, 1, 1000, now=T0)
        assert (d.limit_requests, d.remaining_requests) == (5, 4)  # the day limit is the tighter
        assert d.reset_requests_s == pytest.approx(86_400 / 5)
        assert (d.limit_tokens, d.remaining_tokens) == (10_000, 9000)
        assert ratelimit_headers(d) == {
            "x-ratelimit-limit-requests": "5", "x-ratelimit-remaining-requests": "4",
            "x-ratelimit-reset-requests": "4h48m0s",
            "x-ratelimit-limit-tokens": "10000", "x-ratelimit-remaining-tokens": "9000",
            "x-ratelimit-reset-tokens": "6s",
        }

    async def test_raising_a_limit_keeps_usage(self, limiter: Limiter, scope: str) -> None:
        assert (await limiter.reserve(scope, Limits((rpm(1),)), 1, 0, now=T0)).admitted
        d = await limiter.reserve(scope, Limits((rpm(3),)), 1, 0, now=T0)
        assert d.admitted and d.remaining_requests == 1

    async def test_rejects_negative_amounts(self, limiter: Limiter, scope: str) -> None:
        with pytest.raises(ValueError):
            await limiter.reserve(scope, Limits((rpm(1),)), -1, 0, now=T0)


def test_limit_validation() -> None:
    with pytest.raises(ValueError):
        Limit("requests", 0, 60)
    with pytest.raises(ValueError):
        Limit("bytes", 1, 60)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Limits((rpm(1), rpm(2)))
    assert Limits.openai(rpm=1, tpd=5).items == (rpm(1), tpd(5))
    assert tpm(600).rate == 10.0
