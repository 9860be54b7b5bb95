"""The ``x-ratelimit-*`` response headers, formatted as OpenAI sends them.

OpenAI's reset headers are Go ``time.Duration`` strings (``1s``, ``6m0s``, ``20ms``, ``1h2m3.5s``),
rounded to the millisecond. Clients (the official SDKs, LangChain, LiteLLM) parse that format, so we
reproduce Go's ``Duration.String`` exactly rather than approximate it.
"""

from __future__ import annotations

import math

from hearth.platform.ratelimit.base import Decision

NS_PER_US = 1_000
NS_PER_MS = 1_000_000
NS_PER_S = 1_000_000_000


def _frac(value: int, digits: int) -> tuple[int, str]:
    """Split ``value`` into its integer part and ``.fraction`` of ``digits`` digits, trailing zeros
    dropped and the point omitted for a zero fraction: Go's ``fmtFrac``."""
    whole, rest = divmod(value, 10**digits)
    if rest == 0:
        return whole, ""
    return whole, "." + str(rest).rjust(digits, "0").rstrip("0")


def format_go_duration_ns(ns: int) -> str:
    """Go's ``time.Duration(ns).String()``."""
    sign = "-" if ns < 0 else ""
    u = abs(ns)
    if u < NS_PER_S:
        # Below a second Go picks the largest unit that keeps an integer part: ns, µs or ms.
        if u == 0:
            return "0s"
        if u < NS_PER_US:
            return f"{sign}{u}ns"
        unit, digits = ("µs", 3) if u < NS_PER_MS else ("ms", 6)
        whole, frac = _frac(u, digits)
        return f"{sign}{whole}{frac}{unit}"
    seconds, frac = _frac(u, 9)
    out = f"{seconds % 60}{frac}s"
    minutes = seconds // 60
    if minutes:
        # Once a larger unit appears the smaller ones are always written, even as 0: "6m0s", "1h0m0s".
        out = f"{minutes % 60}m{out}"
        hours = minutes // 60
        if hours:
            out = f"{hours}h{out}"
    return sign + out


def _round_half_away(ns: int, resolution_ns: int) -> int:
    """Go's ``Duration.Round``: to the nearest multiple, halves away from zero."""
    q, r = divmod(abs(ns), resolution_ns)
    if 2 * r >= resolution_ns:
        q += 1
    return q * resolution_ns * (-1 if ns < 0 else 1)


def go_duration(seconds: float, *, resolution_ns: int = NS_PER_MS) -> str:
    """``seconds`` as a Go duration string, rounded to ``resolution_ns`` (ms by default, as OpenAI
    does); pass ``resolution_ns=1`` for Go's exact output."""
    if not math.isfinite(seconds):
        raise ValueError(f"a duration must be finite, got {seconds!r}")
    if resolution_ns <= 0:
        raise ValueError("resolution_ns must be positive")
    return format_go_duration_ns(_round_half_away(round(seconds * NS_PER_S), resolution_ns))


def ratelimit_headers(decision: Decision) -> dict[str, str]:
    """The six ``x-ratelimit-*`` headers for the tightest requests and tokens limits; a kind with no
    limit configured is left out, as OpenAI leaves out headers for limits that do not apply."""
    headers: dict[str, str] = {}
    for kind, limit, remaining, reset in (
        ("requests", decision.limit_requests, decision.remaining_requests, decision.reset_requests_s),
        ("tokens", decision.limit_tokens, decision.remaining_tokens, decision.reset_tokens_s),
    ):
        if limit is None or remaining is None or reset is None:
            continue
        headers[f"x-ratelimit-limit-{kind}"] = str(limit)
        headers[f"x-ratelimit-remaining-{kind}"] = str(remaining)
        headers[f"x-ratelimit-reset-{kind}"] = go_duration(reset)
    return headers
