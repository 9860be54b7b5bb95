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
