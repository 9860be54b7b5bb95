"""Spend meters: reserve-then-settle never overshoots a cap, for the in-process and the Redis meter.

The Redis meter runs against the real Redis on 127.0.0.1:6379 (skipped, with the reason, only when
none answers), with its own key prefix per test.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from hearth.platform.quotas import Budget, MemorySpendMeter, RedisSpendMeter, SpendMeter

REDIS_URL = "redis://127.0.0.1:6379/0"


def _redis_missing() -> str | None:
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
        return None
    except Exception as e:  # noqa: BLE001
        return f"no Redis at {REDIS_URL}: {e}"


@pytest.fixture(params=["memory", "redis"])
async def meter(request: Any) -> AsyncIterator[SpendMeter]:
    if request.param == "memory":
        yield MemorySpendMeter()
        return
    why = _redis_missing()
    if why:
        pytest.skip(why)
    m = RedisSpendMeter(REDIS_URL, prefix=f"test:{uuid.uuid4().hex}:")
    yield m
    r = m._r
    keys = [k async for k in r.scan_iter(f"{m._prefix}*")]
    if keys:
        await r.delete(*keys)
    await m.close()


def ledger_base(values: dict[str, int]) -> Any:
    async def base(scope: str) -> int:
        return values.get(scope, 0)
    return base


async def test_holds_count_until_settled(meter: SpendMeter) -> None:
    base = ledger_base({"project:p": 600})
    cap = [Budget("project:p", 1000)]
    a = await meter.reserve(cap, 300, base)
    assert a.hold is not None
    b = await meter.reserve(cap, 200, base)  # 600 spent + 300 held + 200 > 1000
    assert b.hold is None and b.violated == cap[0] and (b.spent, b.held) == (600, 300)
    await meter.settle(a.hold, 50)  # the request cost less than its worst case
    await meter.settle(a.hold, 50)  # idempotent
    assert await meter.usage("project:p", base) == (650, 0)
    c = await meter.reserve(cap, 350, base)
    assert c.hold is not None


async def test_every_budget_must_fit_and_a_refusal_holds_nothing(meter: SpendMeter) -> None:
    base = ledger_base({"org:o": 900})
    budgets = [Budget("project:p", 10_000), Budget("org:o", 1000)]
    d = await meter.reserve(budgets, 200, base)
    assert d.hold is None and d.violated == budgets[1]
    assert await meter.usage("project:p", base) == (0, 0)
    ok = await meter.reserve(budgets, 100, base)
    assert ok.hold is not None
    assert (await meter.usage("org:o", base))[1] == 100


async def test_concurrent_requests_never_settle_above_the_cap(meter: SpendMeter) -> None:
    """64 concurrent requests, each holding its worst case and settling a random actual cost at
    most that: total settled spend stays within the cap."""
    cap = 10_000
    budgets = [Budget("project:c", cap)]
    base = ledger_base({})
    rng = random.Random(7)
    admitted = 0

    async def one() -> None:
        nonlocal admitted
        worst = rng.randint(100, 1500)
        d = await meter.reserve(budgets, worst, base)
        if d.hold is None:
            return
        admitted += 1
        await asyncio.sleep(rng.random() / 100)
        await meter.settle(d.hold, rng.randint(0, worst))

    await asyncio.gather(*(one() for _ in range(64)))
    spent, held = await meter.usage("project:c", base)
    assert held == 0
    assert 0 < spent <= cap
    assert 0 < admitted < 64


async def test_invalidate_reloads_from_the_ledger(meter: SpendMeter) -> None:
    values = {"project:p": 100}
    base = ledger_base(values)
    assert (await meter.usage("project:p", base))[0] == 100
    values["project:p"] = 700
    assert (await meter.usage("project:p", base))[0] == 100  # the running total, not the ledger
    await meter.invalidate("project:p")
    assert (await meter.usage("project:p", base))[0] == 700
