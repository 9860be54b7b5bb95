"""The one pricing function: exact values, and properties over the whole input space (hypothesis)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hearth.platform.errors import InvalidArgument
from hearth.platform.pricing import FREE, RateCard, cost_nanousd, nanousd, usd

# gpt-4o-mini's published card: $0.15 input, $0.075 cached input, $0.60 output per 1M tokens.
MINI = RateCard.of(input="0.15", cached_input="0.075", output="0.60")

tokens = st.integers(min_value=0, max_value=10**9)
prices = st.decimals(min_value=0, max_value=1000, places=4, allow_nan=False, allow_infinity=False)


def test_known_values() -> None:
    assert cost_nanousd(MINI, 1_000_000, 0) == 150_000_000  # $0.15
    assert cost_nanousd(MINI, 0, 1_000_000) == 600_000_000
    assert cost_nanousd(MINI, 1_000_000, 1_000_000, cached_tokens=1_000_000) == 675_000_000
    assert cost_nanousd(MINI, 1000, 500) == 150 * 1000 + 600 * 500  # 0.45 millicents
    assert cost_nanousd(MINI, 1000, 500, batch=True) == (150 * 1000 + 600 * 500) // 2
    assert usd(cost_nanousd(MINI, 1_000_000, 0)) == pytest.approx(0.15)
    assert cost_nanousd(FREE, 10**6, 10**6) == 0


def test_cached_price_defaults_to_input_and_cached_is_clamped() -> None:
    card = RateCard.of(input=1, output=2)
    assert cost_nanousd(card, 100, 0, cached_tokens=100) == cost_nanousd(card, 100, 0)
    assert cost_nanousd(MINI, 10, 0, cached_tokens=50) == cost_nanousd(MINI, 10, 0, cached_tokens=10)


def test_bad_values_are_refused() -> None:
    with pytest.raises(InvalidArgument):
        RateCard.of(input=-1)
    with pytest.raises(InvalidArgument):
        RateCard.of(output="nan")
    with pytest.raises(InvalidArgument):
        cost_nanousd(MINI, -1, 0)
    assert nanousd("12.5") == 12_500_000_000


@given(prices, prices, prices, tokens, tokens, tokens, tokens, tokens)
def test_monotonic_in_every_count(pi: Decimal, pc: Decimal, po: Decimal, i: int, o: int, c: int,
                                  di: int, do: int) -> None:
    card = RateCard(pi, po, pc)
    base = cost_nanousd(card, i, o, c)
    assert base >= 0
    assert cost_nanousd(card, i + di, o, c) >= base or pc > pi  # more input never costs less...
    assert cost_nanousd(card, i, o + do, c) >= base
    # ...and the reservation bound used by spend limits holds: uncached input prices the worst case
    # whenever the cached price is not above the input price.
    if pc <= pi:
        assert cost_nanousd(card, i, o, 0) >= base


@given(prices, prices, tokens, tokens)
def test_batch_is_half_price_and_additive(pi: Decimal, po: Decimal, i: int, o: int) -> None:
    card = RateCard(pi, po)
    full = cost_nanousd(card, i, o)
    assert abs(cost_nanousd(card, i, o, batch=True) * 2 - full) <= 1
    # Input and output are priced independently: the sum of parts is the whole (within rounding).
    assert abs(cost_nanousd(card, i, 0) + cost_nanousd(card, 0, o) - full) <= 1
