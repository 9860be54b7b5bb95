"""``RedisLimiter``: buckets in Redis, exact across processes and replicas.

Each operation is ONE Lua script, which Redis runs atomically: reserve reads every bucket of the call,
and commits all of them or none; settle claims the reservation and adjusts. No check-then-act round
trips, so no races between replicas. The clock is Redis ``TIME`` read inside the script unless the
caller passes ``now`` (tests): replicas' clocks may disagree, Redis' is the one they share.

Keys (``{scope}`` is a Redis Cluster hash tag, so every key a script touches lives in one slot):
  ``<prefix>{<scope>}:<kind>:<window_s>``  hash ``u`` (used) and ``t`` (as of); expires when refilled
  ``<prefix>{<scope>}:res:<id>``           an admitted, unsettled reservation; settle deletes it
The bucket math is the one in ``base``; floats cross the wire as ``%.17g`` strings so Lua and Python
compute on identical doubles and agree on every decision.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis

from hearth.platform.ratelimit.base import (
    EPSILON,
    Decision,
    Reservation,
    check_amounts,
    decide,
    new_reservation_id,
)
from hearth.platform.ratelimit.limits import Limit, Limits

_log = logging.getLogger(__name__)

# Shared prologue: the script's clock. TIME is read before any write, which Redis < 7 requires when
# scripts replicate their effects (the default from 7 on, opted into here for 5 and 6).
_CLOCK = """
local now
if ARGV[1] == '' then
  if redis.replicate_commands then redis.replicate_commands() end
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
else
  now = tonumber(ARGV[1])
end
local function num(x) return string.format('%.17g', x) end
-- Usage of a bucket at `now`, replenished since it was written; a clock behind it refills nothing.
local function load(key, rate)
  local v = redis.call('HMGET', key, 'u', 't')
  local u = tonumber(v[1]) or 0
  local t = tonumber(v[2]) or now
  if now > t then
    u = u - (now - t) * rate
    if u < 0 then u = 0 end
    t = now
  end
  return u, t
end
-- A bucket expires once fully replenished (plus slack), so idle scopes cost nothing.
local function save(key, u, t, rate)
  if u > 0 then
    redis.call('HSET', key, 'u', num(u), 't', num(t))
    redis.call('PEXPIRE', key, math.ceil(u / rate * 1000) + 1000)
  else
    redis.call('DEL', key)
  end
end
"""

# KEYS: n bucket keys, then the reservation key. ARGV: now|'', reservation ttl ms, eps, then
# (amount, window_s, need) per bucket. Returns {admitted, now, used_1..used_n}.
_RESERVE = _CLOCK + """
local n = #KEYS - 1
local eps = tonumber(ARGV[3])
local used, ts, rates = {}, {}, {}
local ok = 1
for i = 1, n do
  local amount, window, need = tonumber(ARGV[3*i+1]), tonumber(ARGV[3*i+2]), tonumber(ARGV[3*i+3])
  rates[i] = amount / window
  used[i], ts[i] = load(KEYS[i], rates[i])
  if used[i] + need > amount + eps then ok = 0 end
end
if ok == 1 then
  for i = 1, n do
    local need = tonumber(ARGV[3*i+3])
    if need > 0 then
      used[i] = used[i] + need
      save(KEYS[i], used[i], ts[i], rates[i])
    end
  end
  redis.call('SET', KEYS[n+1], '1', 'PX', ARGV[2])
end
local out = {ok, num(now)}
for i = 1, n do out[#out+1] = num(used[i]) end
return out
"""

# KEYS: the reservation key, then the tokens bucket keys. ARGV: now|'', delta tokens, then
# (amount, window_s) per bucket. Returns 1 if applied, 0 if already settled (or expired).
_SETTLE = _CLOCK + """
if redis.call('DEL', KEYS[1]) == 0 then return 0 end
local delta = tonumber(ARGV[2])
for i = 2, #KEYS do
  local j = 2 * i - 1
  local rate = tonumber(ARGV[j]) / tonumber(ARGV[j+1])
  local u, t = load(KEYS[i], rate)
  -- A refund stops at empty usage; an excess charge may go past capacity (debt).
  u = u + delta
  if u < 0 then u = 0 end
  save(KEYS[i], u, t, rate)
end
return 1
"""


def _text(value: bytes | str | int) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisLimiter:
    """Redis-backed ``Limiter``. Give a URL (the limiter owns and closes the client) or a
    ``redis.asyncio.Redis`` (the caller owns it). ``reservation_ttl_s``: how long an admitted
    reservation stays settleable; settle after that is a no-op, so keep it above the longest request."""

    def __init__(self, url_or_client: str | Redis, *, prefix: str = "hearth:rl:",
                 reservation_ttl_s: float = 86_400.0) -> None:
        if isinstance(url_or_client, str):
            self._client: Redis = Redis.from_url(url_or_client)
            self._owned = True
        else:
            self._client, self._owned = url_or_client, False
        self._prefix = prefix
        self._ttl_ms = max(1, int(reservation_ttl_s * 1000))
        # register_script sends EVALSHA and falls back to EVAL after a SCRIPT FLUSH or a failover.
        self._reserve = self._client.register_script(_RESERVE)
        self._settle = self._client.register_script(_SETTLE)
        self._background: set[asyncio.Future[Any]] = set()

    @property
    def client(self) -> Redis:
        return self._client

    def bucket_key(self, scope: str, limit: Limit) -> str:
        return f"{self._prefix}{{{scope}}}:{limit.key}"

    def reservation_key(self, scope: str, reservation_id: str) -> str:
        return f"{self._prefix}{{{scope}}}:res:{reservation_id}"

    async def reserve(self, scope: str, limits: Limits, requests: int, tokens: int,
                      now: float | None = None) -> Decision:
        check_amounts(requests, tokens)
        rid = new_reservation_id()
        keys = [self.bucket_key(scope, limit) for limit in limits.items]
        keys.append(self.reservation_key(scope, rid))
        args: list[str | int | float] = ["" if now is None else repr(float(now)), self._ttl_ms, repr(EPSILON)]
        for limit in limits.items:
            args += [limit.amount, limit.window_s, limit.need(requests, tokens)]
        call = asyncio.ensure_future(self._reserve(keys=keys, args=args))
        try:
            # Shielded: a caller cancelled (client gone) mid-call must not leave a committed
            # reservation that nobody knows of; the script's reply is still awaited and released.
            reply: Sequence[bytes | str | int] = await asyncio.shield(call)
        except asyncio.CancelledError:
            # Callbacks run in the order added: the refund is queued before the call leaves
            # _background, so close() never misses it.
            call.add_done_callback(lambda done: self._release_orphan(done, scope, limits, requests,
                                                                     tokens, rid, now))
            self._track(call)
            raise
        admitted, at, used = self._parse(reply)
        reservation = Reservation(rid, scope, limits, requests, tokens, at) if admitted else None
        return decide(limits, requests, tokens, used, admitted, reservation)

    async def settle(self, reservation: Reservation, actual_tokens: int, now: float | None = None) -> None:
        check_amounts(0, actual_tokens)
        delta = actual_tokens - reservation.tokens
        # With nothing to adjust, only the claim is sent, so a second settle still finds it gone.
        token_limits = reservation.limits.of_kind("tokens") if delta else ()
        keys = [self.reservation_key(reservation.scope, reservation.id)]
        keys += [self.bucket_key(reservation.scope, limit) for limit in token_limits]
        args: list[str | int | float] = ["" if now is None else repr(float(now)), delta]
        for limit in token_limits:
            args += [limit.amount, limit.window_s]
        # Settling usually runs while the request's task is being cancelled (disconnect); shielded,
        # the adjustment lands even if that task is cancelled again while waiting.
        call = asyncio.ensure_future(self._settle(keys=keys, args=args))
        self._track(call)  # so close() waits for it even if our caller stops waiting
        await asyncio.shield(call)

    @staticmethod
    def _parse(reply: Sequence[bytes | str | int]) -> tuple[bool, float, list[float]]:
        return int(reply[0]) == 1, float(_text(reply[1])), [float(_text(v)) for v in reply[2:]]

    def _release_orphan(self, done: asyncio.Future[Any], scope: str, limits: Limits, requests: int,
                        tokens: int, rid: str, now: float | None) -> None:
        """Refund the tokens of a reservation whose caller was cancelled before seeing it. Its
        request stays counted, as any request that reached admission does."""
        if done.cancelled() or done.exception() is not None:
            return
        admitted, at, _ = self._parse(done.result())
        if admitted:
            reservation = Reservation(rid, scope, limits, requests, tokens, at)
            self._track(asyncio.ensure_future(self._refund_orphan(reservation, now)))

    async def _refund_orphan(self, reservation: Reservation, now: float | None) -> None:
        try:
            await self.settle(reservation, 0, now=now)
        except Exception:  # noqa: BLE001 - nobody is left to raise to; the bucket refills anyway
            _log.warning("could not refund rate limit reservation %s of a cancelled request",
                         reservation.id, exc_info=True)

    def _track(self, future: asyncio.Future[Any]) -> None:
        # Held until done: the event loop keeps only weak references to tasks.
        self._background.add(future)
        future.add_done_callback(self._forget)

    def _forget(self, future: asyncio.Future[Any]) -> None:
        self._background.discard(future)
        if not future.cancelled():
            # Marks a failure as retrieved, so asyncio does not log it as lost: a settle's caller got
            # it, and a cancelled reserve's caller is gone (its bucket refills on its own).
            future.exception()

    async def close(self) -> None:
        """Wait for background refunds and settles, then close the client if this limiter owns it."""
        while self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)
        if self._owned:
            await self._client.aclose()
