"""Rate cards and the one pricing function over OpenAI's usage fields.

Prices are USD per 1M tokens, as OpenAI publishes them; costs are integer nano-USD (1e-9 USD), so
sums over millions of records stay exact and a token priced at $0.01 per 1M is still 10 units.
Cached input tokens are part of the input tokens (as in OpenAI's ``prompt_tokens_details``) and are
billed at the cached rate instead of the input rate. Batch requests get ``BATCH_DISCOUNT`` off.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal

from hearth.platform.errors import InvalidArgument

NANOS_PER_USD = 1_000_000_000
BATCH_DISCOUNT = Decimal("0.5")
_PER_TOKEN = Decimal(NANOS_PER_USD) / Decimal(1_000_000)  # nano-USD per token at $1 per 1M tokens


def _dec(name: str, v: Decimal | float | str) -> Decimal:
    d = Decimal(str(v)) if not isinstance(v, Decimal) else v
    if not d.is_finite() or d < 0:
        raise InvalidArgument(f"Price `{name}` must be a non-negative number, got {v!r}.", param=name)
    return d


@dataclass(frozen=True, slots=True)
class RateCard:
    """USD per 1M tokens. ``cached_input`` defaults to ``input`` (no cache discount)."""

    input: Decimal = Decimal(0)
    output: Decimal = Decimal(0)
    cached_input: Decimal | None = None

    @classmethod
    def of(cls, input: Decimal | float | str = 0, output: Decimal | float | str = 0,
           cached_input: Decimal | float | str | None = None) -> RateCard:
        return cls(_dec("input", input), _dec("output", output),
                   None if cached_input is None else _dec("cached_input", cached_input))

    @property
    def cached(self) -> Decimal:
        return self.input if self.cached_input is None else self.cached_input

    @property
    def free(self) -> bool:
        return not (self.input or self.output or self.cached)


FREE = RateCard()


def cost_nanousd(card: RateCard, input_tokens: int, output_tokens: int, cached_tokens: int = 0,
                 *, batch: bool = False) -> int:
    """The cost of one request in nano-USD, rounded half-even once at the end.

    ``cached_tokens`` is clamped to ``input_tokens`` (they are a part of them). Monotonic in every
    token count, which is what makes a reservation priced at the upper bounds an upper bound.
    """
    if input_tokens < 0 or output_tokens < 0 or cached_tokens < 0:
        raise InvalidArgument("Token counts must not be negative.")
    cached = min(cached_tokens, input_tokens)
    usd_per_1m = (card.input * (input_tokens - cached) + card.cached * cached + card.output * output_tokens)
    nanos = usd_per_1m * _PER_TOKEN
    if batch:
        nanos *= 1 - BATCH_DISCOUNT
    return int(nanos.to_integral_value(rounding=ROUND_HALF_EVEN))


def usd(nanos: int) -> float:
    return nanos / NANOS_PER_USD


def nanousd(amount_usd: float | str | Decimal) -> int:
    d = _dec("amount", amount_usd)
    return int((d * NANOS_PER_USD).to_integral_value(rounding=ROUND_HALF_EVEN))
