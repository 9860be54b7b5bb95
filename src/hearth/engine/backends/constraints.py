"""Constrained decoding for the llama.cpp backend: llguidance computes a token mask per step.

llguidance was chosen over llama.cpp's own grammar sampler after measuring both on our models
(see the README section "Structured outputs"): its mask costs tens of microseconds per token on a
151k-token vocabulary, where the GBNF sampler has to check candidates one by one.
"""

from __future__ import annotations

import logging

import llama_cpp as L
import numpy as np

from hearth.engine.errors import InvalidConstraint

log = logging.getLogger("hearth.engine.constraints")


class GrammarRuntime:
    """llguidance's view of one model's vocabulary (built once per model: ~1 s on 151k tokens)."""

    def __init__(self, vocab: object, n_vocab: int) -> None:
        import llguidance
        import llguidance.llamacpp

        eog = [t for t in range(L.llama_vocab_n_tokens(vocab)) if L.llama_vocab_is_eog(vocab, t)]
        self.tokenizer = llguidance.llamacpp.lltokenizer_from_vocab(vocab, n_vocab=n_vocab, eos_token=eog)
        self.n_vocab = n_vocab
        self._llg = llguidance

    def matcher(self, grammar: str) -> TokenMatcher:
        return TokenMatcher(self, grammar)


class TokenMatcher:
    """One sequence's grammar state: masks its logits before sampling, advances on each token."""

    def __init__(self, rt: GrammarRuntime, grammar: str) -> None:
        self._m = rt._llg.LLMatcher(rt.tokenizer, grammar)
        if self._m.is_error():
            raise InvalidConstraint(self._m.get_error())
        self._n = rt.n_vocab
        self._mask = np.zeros((rt.n_vocab + 31) // 32, dtype=np.int32)

    def apply(self, logits: np.ndarray) -> None:
        """Set the logit of every token the grammar forbids here to -inf (in place)."""
        self._m.unsafe_compute_mask_ptr(self._mask.ctypes.data, self._mask.nbytes)
        allowed = np.unpackbits(self._mask.view(np.uint8), bitorder="little", count=self._n)
        logits[allowed == 0] = -np.inf

    def advance(self, token: int) -> bool:
        """Consume the sampled token. True when the grammar allows nothing more (end of output)."""
        if not self._m.consume_token(token):
            # Only a sampler bug can get here (the token was masked out); end the output honestly.
            log.error("constrained sequence sampled a forbidden token: %s", self._m.get_error())
            return True
        return bool(self._m.is_stopped())

    @property
    def accepting(self) -> bool:
        return bool(self._m.is_accepting())
