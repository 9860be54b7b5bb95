"""Rate limits as values: what a scope (project × model) may consume, OpenAI-style.

Each ``Limit`` is a token bucket, like OpenAI's limits: capacity ``amount``, refilled continuously at
``amount / window_s`` per second. So "10 requests per minute" allows a burst of 10, then one more every
6 s; the bucket is full again ``window_s`` after it was last emptied. ``remaining`` (whole units
available now) and ``reset`` (seconds until the bucket is full again) follow directly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from hearth.platform.errors import InvalidArgument

LimitKind = Literal["requests", "tokens"]
KINDS: tuple[LimitKind, ...] = ("requests", "tokens")

MINUTE = 60
DAY = 86_400


@dataclass(frozen=True, slots=True)
class Limit:
    """At most ``amount`` units of ``kind`` per ``window_s`` seconds, replenished continuously."""

    kind: LimitKind
    amount: int
    window_s: int
    # Derived once: both are read on every reserve.
    rate: float = field(init=False, repr=False, compare=False)
    """Units replenished per second."""
    key: str = field(init=False, repr=False, compare=False)
    """Identifies the bucket within a scope. The amount is left out on purpose: changing a project's
    limit keeps what it has already used instead of handing it a fresh bucket."""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise InvalidArgument(f"Unknown rate limit kind {self.kind!r}.", param="kind")
        # bool is an int; a limit of True requests is a bug, not a limit.
        if not isinstance(self.amount, int) or isinstance(self.amount, bool) or self.amount <= 0:
            raise InvalidArgument(f"Rate limit amount must be a positive integer, got {self.amount!r}.",
                                  param="amount")
        if not isinstance(self.window_s, int) or isinstance(self.window_s, bool) or self.window_s <= 0:
            raise InvalidArgument(f"Rate limit window must be a positive integer of seconds, "
                                  f"got {self.window_s!r}.", param="window_s")
        object.__setattr__(self, "rate", self.amount / self.window_s)
        object.__setattr__(self, "key", f"{self.kind}:{self.window_s}")

    def need(self, requests: int, tokens: int) -> int:
        """What one reservation of ``requests`` requests and ``tokens`` tokens takes from this bucket."""
        return requests if self.kind == "requests" else tokens


@dataclass(frozen=True, slots=True)
class Limits:
    """The set of limits that apply together to one scope; a reservation must fit all of them."""

    items: tuple[Limit, ...] = ()

    def __post_init__(self) -> None:
        seen: set[str] = set()
        for limit in self.items:
            if limit.key in seen:
                # Two buckets with one key would share state in Redis and silently merge.
                raise InvalidArgument(f"Two {limit.kind} limits over the same {limit.window_s}s window.",
                                      param="limits")
            seen.add(limit.key)

    @classmethod
    def openai(cls, *, rpm: int | None = None, tpm: int | None = None,
               rpd: int | None = None, tpd: int | None = None) -> Limits:
        """The four limits OpenAI publishes per model; ``None`` leaves one out."""
        spec: tuple[tuple[LimitKind, int | None, int], ...] = (
            ("requests", rpm, MINUTE), ("tokens", tpm, MINUTE),
            ("requests", rpd, DAY), ("tokens", tpd, DAY),
        )
        return cls(tuple(Limit(kind, amount, window) for kind, amount, window in spec if amount is not None))

    def of_kind(self, kind: LimitKind) -> tuple[Limit, ...]:
        return tuple(limit for limit in self.items if limit.kind == kind)

    def __bool__(self) -> bool:
        return bool(self.items)


def rpm(amount: int) -> Limit:
    return Limit("requests", amount, MINUTE)


def tpm(amount: int) -> Limit:
    return Limit("tokens", amount, MINUTE)


def rpd(amount: int) -> Limit:
    return Limit("requests", amount, DAY)


def tpd(amount: int) -> Limit:
    return Limit("tokens", amount, DAY)
