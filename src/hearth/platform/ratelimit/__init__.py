"""Rate limits per scope (project × model), OpenAI-style: requests and tokens per minute and per day.

Reserve an estimate at admission, settle to the actual count when the request ends (also when it
fails or the client disconnects). ``MemoryLimiter`` serves one process; ``RedisLimiter`` is exact
across replicas. ``hearth.platform.ratelimit.redis`` is imported lazily so that the in-memory path
does not import redis-py.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hearth.platform.ratelimit.base import Decision, Limiter, Reservation
from hearth.platform.ratelimit.headers import go_duration, ratelimit_headers
from hearth.platform.ratelimit.limits import Limit, LimitKind, Limits, rpd, rpm, tpd, tpm
from hearth.platform.ratelimit.memory import MemoryLimiter

if TYPE_CHECKING:
    from hearth.platform.ratelimit.redis import RedisLimiter

__all__ = [
    "Decision", "Limit", "LimitKind", "Limiter", "Limits", "MemoryLimiter", "RedisLimiter",
    "Reservation", "go_duration", "ratelimit_headers", "rpd", "rpm", "tpd", "tpm",
]


def __getattr__(name: str) -> Any:
    if name == "RedisLimiter":
        from hearth.platform.ratelimit.redis import RedisLimiter

        return RedisLimiter
    raise AttributeError(name)
