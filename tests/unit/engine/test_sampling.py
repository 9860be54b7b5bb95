"""The numpy sampler: greedy, logit_bias, top_k, top_p, min_p, temperature and seeds."""

from __future__ import annotations

import numpy as np
import pytest

from hearth.engine.backends.sampling import LogitsSampler
from hearth.engine.types import SamplingParams


def sampler(n_vocab: int = 4, **kw: object) -> LogitsSampler:
    return LogitsSampler(SamplingParams(max_tokens=1, **kw), n_vocab)  # type: ignore[arg-type]


def logits_of(probs: list[float]) -> np.ndarray:
    return np.log(np.array(probs, dtype=np.float32))


def draws(s: LogitsSampler, x: np.ndarray, n: int = 20_000) -> np.ndarray:
    return np.bincount([s.sample(x) for _ in range(n)], minlength=len(x)) / n


def test_greedy_is_the_first_maximum_and_obeys_logit_bias() -> None:
    x = np.array([1.0, 3.0, 3.0, 2.0], dtype=np.float32)
    assert sampler(temperature=0.0).sample(x) == 1
    assert sampler(temperature=0.0, logit_bias={1: -100.0, 2: -100.0}).sample(x) == 3
    assert sampler(temperature=0.0, logit_bias={0: 5.0}).sample(x) == 0
    assert x[0] == 1.0  # the caller's logits are never modified


def test_temperature_draws_follow_the_softmax() -> None:
    x = logits_of([0.5, 0.3, 0.15, 0.05])
    f = draws(sampler(temperature=1.0, seed=1), x)
    assert np.allclose(f, [0.5, 0.3, 0.15, 0.05], atol=0.015)
    f = draws(sampler(temperature=0.5, seed=2), x)  # sharper: p^2 renormalised
    want = np.array([0.25, 0.09, 0.0225, 0.0025])
    assert np.allclose(f, want / want.sum(), atol=0.015)


def test_top_k_and_top_p_and_min_p_cut_the_tail() -> None:
    x = logits_of([0.5, 0.3, 0.15, 0.05])
    assert set(np.flatnonzero(draws(sampler(temperature=1.0, top_k=2, seed=3), x, 5000))) == {0, 1}
    assert set(np.flatnonzero(draws(sampler(temperature=1.0, top_k=1, seed=3), x, 500))) == {0}
    # nucleus: 0.5, 0.8 (reaches 0.8), so two tokens, drawn 5:3
    f = draws(sampler(temperature=1.0, top_p=0.8, seed=4), x)
    assert f[2] == f[3] == 0 and abs(f[0] - 0.625) < 0.015
    f = draws(sampler(temperature=1.0, top_p=0.81, seed=4), x, 5000)
    assert f[2] > 0 and f[3] == 0
    assert set(np.flatnonzero(draws(sampler(temperature=1.0, top_p=0.0, seed=4), x, 500))) == {0}
    # min_p 0.35: tokens below 0.35 x 0.5 = 0.175 never drawn
    assert set(np.flatnonzero(draws(sampler(temperature=1.0, min_p=0.35, seed=5), x, 5000))) == {0, 1}


@pytest.mark.parametrize("scale", [0.1, 1.0, 4.0, 12.0])  # flat to peaked
def test_top_p_over_a_large_vocabulary_matches_a_full_sort(scale: float) -> None:
    rng = np.random.default_rng(int(scale * 10))
    x = (rng.standard_normal(151_936) * scale).astype(np.float32)
    for top_p in (0.5, 0.9, 0.99):
        s = sampler(151_936, temperature=1.0, top_p=top_p)
        got = set(s._nucleus(x).tolist())
        p = np.exp(x.astype(np.float64) - x.max())
        p /= p.sum()
        order = np.argsort(-p, kind="stable")
        k = int(np.searchsorted(np.cumsum(p[order]), top_p, side="left")) + 1
        want = set(order[:k].tolist())
        assert len(got ^ want) <= 1  # equal up to rounding at the very boundary
        assert all(s.sample(x) in got for _ in range(20))


def test_a_seed_repeats_and_another_seed_differs() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal(5000).astype(np.float32)
    s1, s2, s3 = (sampler(5000, temperature=1.0, top_p=0.95, seed=k) for k in (7, 7, 8))
    r1 = [s1.sample(x) for _ in range(50)]
    assert r1 == [s2.sample(x) for _ in range(50)]
    assert r1 != [s3.sample(x) for _ in range(50)]


def test_banned_tokens_are_never_drawn() -> None:
    x = np.zeros(1000, dtype=np.float32)
    x[:990] = -np.inf  # what a grammar mask leaves
    s = sampler(1000, temperature=1.0, top_p=0.9, seed=1)
    assert all(990 <= s.sample(x) for _ in range(200))


def test_penalties_stay_with_llama_cpp() -> None:
    assert LogitsSampler.supports(SamplingParams(max_tokens=1))
    assert not LogitsSampler.supports(SamplingParams(max_tokens=1, presence_penalty=0.5))
    assert not LogitsSampler.supports(SamplingParams(max_tokens=1, frequency_penalty=-0.5))


@pytest.mark.parametrize("n", [100, 5000, 151_936])  # one level, and blocks with a partial tail
def test_the_two_level_draw_is_the_inverse_cdf(n: int) -> None:
    from hearth.engine.backends.sampling import _draw

    rng = np.random.default_rng(n)
    w = np.exp(rng.standard_normal(n).astype(np.float32) * 3)
    w[rng.choice(n, n // 3, replace=False)] = 0.0  # banned tokens
    c = np.cumsum(w.astype(np.float64))
    for u in rng.random(2000):
        want = int(np.searchsorted(c, u * c[-1], side="right"))
        assert _draw(w, float(u)) == want
    nz = np.flatnonzero(w)
    assert _draw(w, 0.0) == nz[0]
    assert _draw(w, float(np.nextafter(1.0, 0.0))) == nz[-1]  # rounding at the top end


def test_the_two_level_draw_follows_the_weights_across_blocks() -> None:
    from hearth.engine.backends.sampling import _draw

    w = np.zeros(5000, dtype=np.float32)  # 19 blocks of 256 and a tail of 136
    w[[3, 700, 4999]] = [5.0, 3.0, 2.0]
    rng = np.random.default_rng(1)
    got = np.bincount([_draw(w, float(u)) for u in rng.random(20_000)], minlength=5000) / 20_000
    assert set(np.flatnonzero(got)) == {3, 700, 4999}
    assert np.allclose(got[[3, 700, 4999]], [0.5, 0.3, 0.2], atol=0.015)


def test_full_vocabulary_draws_leave_the_logits_untouched() -> None:
    rng = np.random.default_rng(2)
    x = rng.standard_normal(151_936).astype(np.float32)
    before = x.copy()
    s = sampler(151_936, temperature=0.8, seed=3)
    assert 0 <= s.sample(x) < 151_936
    assert np.array_equal(x, before)
