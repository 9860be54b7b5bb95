"""Monthly spend limits, enforced by reserve-then-settle so concurrency cannot overshoot them.

A request reserves (``hold``) its worst-case cost against every budget that applies (its project's
and the organization's) in one atomic step: admitted only if, for each, month-to-date spend plus the
holds in flight plus this one fit the cap. When it ends, ``settle`` swaps the hold for the actual
cost. Because the worst case is an upper bound of the actual cost (prompt priced as uncached input,
every completion token allowed priced as output), settled spend never exceeds a cap; the only slack
is spend that reached the ledger by another path than this meter (see ``invalidate``).

Month-to-date spend starts from the usage ledger (``base``), loaded the first time a scope is seen
in a month, then moves with each settle. Months are UTC calendar months.

Two implementations: ``MemorySpendMeter`` (one process) and ``RedisSpendMeter`` (atomic Lua over
shared keys: several replicas together never overshoot).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from hearth.platform.usage_queries import month_key

HOLD_TTL_S = 6 * 3600  # a hold whose request died with its process stops counting after this

BaseLoader = Callable[[str], Awaitable[int]]  # scope -> month-to-date spend from the ledger (nano-USD)


@dataclass(frozen=True, slots=True)
class Budget:
    scope: str  # "org:<id>" or "project:<id>"
    cap_nanousd: int


@dataclass(frozen=True, slots=True)
class SpendHold:
    id: str
    month: str
    scopes: tuple[str, ...]
    amount: int


@dataclass(frozen=True, slots=True)
class SpendDecision:
    hold: SpendHold | None
    violated: Budget | None = None
    spent: int = 0
    held: int = 0


class SpendMeter(Protocol):
    async def reserve(self, budgets: Sequence[Budget], amount: int, base: BaseLoader,
                      now: float | None = None) -> SpendDecision: ...

    async def settle(self, hold: SpendHold, actual: int) -> None: ...

    async def usage(self, scope: str, base: BaseLoader, now: float | None = None) -> tuple[int, int]:
        """(month-to-date spend, amount held by requests in flight)."""
        ...

    async def invalidate(self, scope: str) -> None:
        """Forget the scope's running total so the next request reloads it from the ledger (after a
        limit change, or when spend reached the ledger without passing through this meter)."""
        ...

    async def close(self) -> None: ...


def _hold_id() -> str:
    return "sh_" + secrets.token_hex(16)


class MemorySpendMeter:
    """Single-process meter. Atomic because nothing awaits between the check and the commit."""

    def __init__(self) -> None:
        self._spent: dict[tuple[str, str], int] = {}
        self._holds: dict[tuple[str, str], dict[str, int]] = {}

    async def _load(self, scope: str, month: str, base: BaseLoader) -> None:
        if (scope, month) not in self._spent:
            value = await base(scope)
            self._spent.setdefault((scope, month), value)

    async def reserve(self, budgets: Sequence[Budget], amount: int, base: BaseLoader,
                      now: float | None = None) -> SpendDecision:
        month = month_key(now)
        for b in budgets:
            await self._load(b.scope, month, base)
        # From here to the commit there is no await: the check and the hold are one atomic step.
        for b in budgets:
            spent = self._spent[(b.scope, month)]
            held = sum(self._holds.get((b.scope, month), {}).values())
            if spent + held + amount > b.cap_nanousd:
                return SpendDecision(None, b, spent, held)
        hold = SpendHold(_hold_id(), month, tuple(b.scope for b in budgets), amount)
        for b in budgets:
            self._holds.setdefault((b.scope, month), {})[hold.id] = amount
        return SpendDecision(hold)

    async def settle(self, hold: SpendHold, actual: int) -> None:
        for scope in hold.scopes:
            holds = self._holds.get((scope, hold.month), {})
            if holds.pop(hold.id, None) is not None and (scope, hold.month) in self._spent:
                self._spent[(scope, hold.month)] += actual

    async def usage(self, scope: str, base: BaseLoader, now: float | None = None) -> tuple[int, int]:
        month = month_key(now)
        await self._load(scope, month, base)
        return self._spent[(scope, month)], sum(self._holds.get((scope, month), {}).values())

    async def invalidate(self, scope: str) -> None:
        for key in [k for k in self._spent if k[0] == scope]:
            del self._spent[key]

    async def close(self) -> None:
        return None


# KEYS: per budget, its spent key then its holds key. ARGV: now, amount, hold id, n, caps...
# Returns {1} admitted, {0, i, spent, held} refused by budget i (1-based), {-1, i} budget i needs its
# month-to-date spend loaded from the ledger first.
_RESERVE = """
local now, amount, id, n = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4])
for i = 1, n do
  if redis.call('EXISTS', KEYS[2*i-1]) == 0 then return {-1, i} end
end
for i = 1, n do
  local spent = tonumber(redis.call('GET', KEYS[2*i-1]))
  local held = 0
  local holds = redis.call('HGETALL', KEYS[2*i])
  for j = 1, #holds, 2 do
    local amt, deadline = string.match(holds[j+1], '(%d+):(%d+)')
    if tonumber(deadline) < now then redis.call('HDEL', KEYS[2*i], holds[j])
    else held = held + tonumber(amt) end
  end
  if spent + held + amount > tonumber(ARGV[4+i]) then return {0, i, spent, held} end
end
local value = ARGV[2] .. ':' .. tostring(math.floor(now) + HOLD_TTL)
for i = 1, n do
  redis.call('HSET', KEYS[2*i], id, value)
  redis.call('EXPIRE', KEYS[2*i], KEY_TTL)
end
return {1}
""".replace("HOLD_TTL", str(HOLD_TTL_S)).replace("KEY_TTL", str(40 * 86400))

# KEYS: per scope, spent key then holds key. ARGV: hold id, actual. Idempotent: a second call finds
# no hold and adds nothing.
_SETTLE = """
for i = 1, #KEYS, 2 do
  if redis.call('HDEL', KEYS[i+1], ARGV[1]) == 1 and redis.call('EXISTS', KEYS[i]) == 1 then
    redis.call('INCRBY', KEYS[i], ARGV[2])
  end
end
return 1
"""


class RedisSpendMeter:
    """Shared meter: every replica reserves through the same Lua script on the same keys."""

    def __init__(self, url: str, prefix: str = "hearth:spend:") -> None:
        import redis.asyncio as aioredis

        self._r: Any = aioredis.from_url(url)
        self._prefix = prefix
        self._reserve = self._r.register_script(_RESERVE)
        self._settle = self._r.register_script(_SETTLE)

    def _keys(self, scope: str, month: str) -> list[str]:
        base = f"{self._prefix}{{{scope}}}:{month}"
        return [base + ":spent", base + ":holds"]

    async def _load(self, scope: str, month: str, base: BaseLoader) -> None:
        value = await base(scope)
        # NX: a replica that loaded first wins; its total already moves with settles.
        await self._r.set(self._keys(scope, month)[0], value, nx=True, ex=40 * 86400)

    async def reserve(self, budgets: Sequence[Budget], amount: int, base: BaseLoader,
                      now: float | None = None) -> SpendDecision:
        month = month_key(now)
        keys = [k for b in budgets for k in self._keys(b.scope, month)]
        hold = SpendHold(_hold_id(), month, tuple(b.scope for b in budgets), amount)
        t = int(time.time() if now is None else now)
        for _ in range(3):
            res = await self._reserve(keys=keys, args=[t, amount, hold.id, len(budgets),
                                                       *[b.cap_nanousd for b in budgets]])
            if int(res[0]) == 1:
                return SpendDecision(hold)
            b = budgets[int(res[1]) - 1]
            if int(res[0]) == 0:
                return SpendDecision(None, b, int(res[2]), int(res[3]))
            await self._load(b.scope, month, base)
        raise RuntimeError("spend meter: could not load month-to-date spend")

    async def settle(self, hold: SpendHold, actual: int) -> None:
        keys = [k for s in hold.scopes for k in self._keys(s, hold.month)]
        await self._settle(keys=keys, args=[hold.id, actual])

    async def usage(self, scope: str, base: BaseLoader, now: float | None = None) -> tuple[int, int]:
        month = month_key(now)
        spent_key, holds_key = self._keys(scope, month)
        if not await self._r.exists(spent_key):
            await self._load(scope, month, base)
        spent = int(await self._r.get(spent_key) or 0)
        t = int(time.time() if now is None else now)
        held = 0
        for v in (await self._r.hgetall(holds_key)).values():
            amt, deadline = v.decode().split(":")
            if int(deadline) >= t:
                held += int(amt)
        return spent, held

    async def invalidate(self, scope: str) -> None:
        await self._r.delete(self._keys(scope, month_key())[0])

    async def close(self) -> None:
        await self._r.aclose()
