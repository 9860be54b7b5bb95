"""RedisLimiter against a real Redis on 127.0.0.1:6379 (db 0): the shared limiter cases, agreement
with MemoryLimiter on random operation sequences, and exactness across replicas and processes.

Every test uses its own key prefix and deletes its keys. Skipped, with the reason, only when no
Redis answers.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit" / "platform"))
from test_ratelimit_cases import T0, LimiterCases
from test_ratelimit_memory import OPS, assert_within_bucket_bounds, run_ops

from hearth.platform.ratelimit import Decision, Limits, MemoryLimiter, rpm, tpm

REDIS_URL = "redis://127.0.0.1:6379/0"


def _redis_unreachable() -> str | None:
    try:
        import redis
    except ImportError:
        return "redis-py is not installed"
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2, socket_timeout=2)
    try:
        client.ping()
        return None
    except Exception as e:  # noqa: BLE001 - any failure means "no server to test against"
        return f"no Redis at {REDIS_URL}: {type(e).__name__}: {e}"
    finally:
        client.close()


_REASON = _redis_unreachable()
pytestmark = pytest.mark.skipif(_REASON is not None, reason=_REASON or "")


def _new_prefix() -> str:
    return f"hearth:test:{uuid.uuid4().hex}:"


def _delete_prefix(prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = list(client.scan_iter(match=prefix + "*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture
def prefix() -> Iterator[str]:
    p = _new_prefix()
    yield p
    _delete_prefix(p)


def _limiter(prefix: str) -> Any:
    from hearth.platform.ratelimit.redis import RedisLimiter

    return RedisLimiter(REDIS_URL, prefix=prefix)


class TestRedisLimiter(LimiterCases):
    @pytest.fixture
    async def limiter(self, prefix: str) -> AsyncIterator[Any]:
        lim = _limiter(prefix)
        yield lim
        await lim.close()


async def test_keys_expire_once_refilled_and_settle_removes_the_claim(prefix: str) -> None:
    lim = _limiter(prefix)
    try:
        d = await lim.reserve("s", Limits.openai(rpm=60, tpm=6000), 1, 100)  # 1 s to refill each
        assert d.reservation
        client = lim.client
        keys = sorted(k.decode() for k in await client.keys(prefix + "*"))
        want = [lim.bucket_key("s", rpm(60)), lim.bucket_key("s", tpm(6000)),
                lim.reservation_key("s", d.reservation.id)]
        assert keys == sorted(want)
        assert 0 < await client.pttl(lim.bucket_key("s", rpm(60))) <= 2000
        await lim.settle(d.reservation, 100)
        assert not await client.exists(lim.reservation_key("s", d.reservation.id))
    finally:
        await lim.close()


async def test_two_replicas_admit_exactly_the_limit(prefix: str) -> None:
    a, b = _limiter(prefix), _limiter(prefix)  # two clients, two connection pools
    try:
        assert a.client.connection_pool is not b.client.connection_pool
        limits = Limits((rpm(10),))
        calls = [(a if i % 2 else b).reserve("shared", limits, 1, 0) for i in range(64)]
        decisions: list[Decision] = await asyncio.gather(*calls)
        assert sum(d.admitted for d in decisions) == 10
    finally:
        await a.close()
        await b.close()


async def test_cancelled_reserve_leaves_no_tokens_held(prefix: str) -> None:
    """A client that disconnects while its reserve is in flight never sees its reservation, so
    the limiter itself must give the tokens back when the script's reply arrives."""
    limits = Limits((tpm(1000),))
    lim = _limiter(prefix)
    for i in range(40):
        task = asyncio.create_task(lim.reserve(f"s{i}", limits, 1, 1000, now=T0))
        for _ in range(i % 8):  # cancel at different points of the round trip
            await asyncio.sleep(0)
        task.cancel()
        try:
            d = await task
        except asyncio.CancelledError:
            continue
        assert d.reservation  # finished before the cancel: the caller settles, as a service would
        await lim.settle(d.reservation, 0, now=T0)
    await lim.close()  # waits for the background refunds
    check = _limiter(prefix)
    try:
        for i in range(40):
            assert (await check.reserve(f"s{i}", limits, 1, 1000, now=T0)).admitted, i
    finally:
        await check.close()


def _process_worker(prefix: str, now: float, barrier: Any, results: Any) -> None:
    """One OS process as one replica: connect, wait for the other, then fire 32 reserves at once."""

    async def main() -> int:
        lim = _limiter(prefix)
        try:
            await lim.client.ping()
            await asyncio.to_thread(barrier.wait, 60)
            decisions = await asyncio.gather(
                *(lim.reserve("shared", Limits((rpm(10),)), 1, 0, now=now) for _ in range(32)))
            return sum(d.admitted for d in decisions)
        finally:
            await lim.close()

    results.put(asyncio.run(main()))


def test_two_processes_admit_exactly_the_limit(prefix: str) -> None:
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    # One explicit clock for both: the assertion must not depend on how long spawning takes.
    procs = [ctx.Process(target=_process_worker, args=(prefix, T0, barrier, results)) for _ in range(2)]
    for p in procs:
        p.start()
    counts = [results.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0
    assert sum(counts) == 10


def test_property_redis_agrees_with_memory() -> None:
    """Random reserve/settle sequences give the same decisions on Redis as in memory, bit for bit:
    the Lua script and the Python code run the same float arithmetic."""
    prefix = _new_prefix()
    with asyncio.Runner() as runner:
        redis_lim = _limiter(prefix)

        @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
        @given(ops=OPS)
        def check(ops: list[tuple[str, float, int, int]]) -> None:
            async def both() -> None:
                memory = MemoryLimiter()
                scope = uuid.uuid4().hex
                want = await run_ops(memory, scope, ops)
                got = await run_ops(redis_lim, scope, ops)
                assert_within_bucket_bounds(got)
                fields = ("admitted", "never", "retry_after_s", "remaining_requests", "reset_requests_s",
                          "remaining_tokens", "reset_tokens_s", "violated")
                assert [[getattr(d, f) for f in fields] for d in got.decisions] == \
                    [[getattr(d, f) for f in fields] for d in want.decisions]

            runner.run(both())

        try:
            check()
        finally:
            runner.run(redis_lim.close())
            _delete_prefix(prefix)
