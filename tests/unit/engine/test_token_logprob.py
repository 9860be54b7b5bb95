"""token_logprob: log-probabilities under the raw distribution, against a float64 reference."""

from __future__ import annotations

import numpy as np

from hearth.engine.backends.llamacpp_model import token_logprob


class _Vocab:
    def token_bytes_any(self, token: int) -> bytes:
        return f"t{token}".encode()


def test_logprobs_match_a_float64_softmax_over_a_large_vocabulary() -> None:
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(151_936) * 4).astype(np.float32)
    x[:1000] = -np.inf  # masked by a grammar
    ref = x.astype(np.float64)
    ref = ref - (ref.max() + np.log(np.exp(ref - ref.max()).sum()))
    token = int(np.argsort(-x)[5])
    lp = token_logprob(_Vocab(), x, token, 4)  # type: ignore[arg-type]
    assert abs(lp.logprob - ref[token]) < 1e-6
    want = np.argsort(-ref, kind="stable")[:4]
    assert [t.token for t in lp.top] == [f"t{t}" for t in want]
    assert np.allclose([t.logprob for t in lp.top], ref[want], atol=1e-6)
    assert lp.token == f"t{token}" and lp.token_bytes == f"t{token}".encode()


def test_top_logprobs_of_a_flat_distribution_and_a_tiny_vocabulary() -> None:
    x = np.linspace(0.0, 1.0, 50_000, dtype=np.float32)  # no gap: every token is near the top
    lp = token_logprob(_Vocab(), x, 0, 20)  # type: ignore[arg-type]
    assert [t.token for t in lp.top] == [f"t{t}" for t in range(49_999, 49_979, -1)]
    y = np.array([0.0, 30.0, -30.0], dtype=np.float32)  # fewer near the top than asked for
    lp = token_logprob(_Vocab(), y, 2, 3)  # type: ignore[arg-type]
    assert [t.token for t in lp.top] == ["t1", "t0", "t2"]
    assert lp.logprob < -59.0
