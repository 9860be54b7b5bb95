"""FakeEngine: a deterministic engine with no model, shipped for tests and gateway benchmarks.

- Whitespace tokenizer: a token is a word; ids come from a stable hash, and text is rebuilt
  from the words it has seen.
- Replies come from `reply` (a fixed text or a function of the request); by default a
  deterministic pseudo-text that depends on the prompt, and on the seed when sampling.
- `token_delay_s` sleeps between tokens; `fail_at_token` raises GenerationFailed after k tokens.
- Every request is recorded in `requests`; `abort` and task cancellation stop generation at once.
- `metrics()` counts for real: live sequences, the KV cells they would hold (prompt + generated,
  against `kv_capacity_tokens`, by default the context length) and cumulative token totals.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
from collections.abc import AsyncIterator, Callable, Sequence

from hearth.engine.errors import GenerationFailed
from hearth.engine.textstream import TextAssembler
from hearth.engine.types import (
    Delta,
    EngineMetrics,
    FinishReason,
    GenerationRequest,
    ModelInfo,
    TokenLogprob,
    TopLogprob,
)

FAKE_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)

_WORDS = ["the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "hearth", "serves", "tokens", "from", "a", "small", "model", "on", "two", "cores", "with", "batching", "and", "caching"]


class FakeEngine:
    def __init__(
        self,
        model_id: str = "fake-model",
        *,
        context_length: int = 4096,
        reply: str | Callable[[GenerationRequest], str] | None = None,
        token_delay_s: float = 0.0,
        fail_at_token: int | None = None,
        reply_tokens: int = 24,
        kv_capacity_tokens: int | None = None,
        chat_template: str = FAKE_TEMPLATE,
    ) -> None:
        self.info = ModelInfo(
            id=model_id,
            context_length=context_length,
            chat_template=chat_template,
            bos_token="",
            eos_token="<|end|>",
        )
        self.reply = reply
        self.token_delay_s = token_delay_s
        self.fail_at_token = fail_at_token
        self.reply_tokens = reply_tokens
        self.requests: list[GenerationRequest] = []
        self.aborted: set[str] = set()
        self.active: set[str] = set()
        self._vocab: dict[int, str] = {}
        self._healthy = True
        self.kv_capacity_tokens = context_length if kv_capacity_tokens is None else kv_capacity_tokens
        self._kv_used: dict[str, int] = {}  # request id -> cells its sequence holds
        self._prompt_total = 0
        self._generated_total = 0

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        self._healthy = False

    def health(self) -> bool:
        return self._healthy

    def metrics(self) -> EngineMetrics:
        return EngineMetrics(
            running=len(self.active),
            waiting=0,  # no queue: every request runs at once
            kv_used_tokens=sum(self._kv_used.values()),
            kv_capacity_tokens=self.kv_capacity_tokens,
            prompt_tokens_total=self._prompt_total,
            generated_tokens_total=self._generated_total,
        )

    def tokenize(self, text: str, *, special: bool = True) -> list[int]:
        ids = []
        for word in text.split():
            tid = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=4).digest(), "little")
            self._vocab[tid] = word
            ids.append(tid)
        return ids

    def detokenize(self, tokens: Sequence[int]) -> str:
        return " ".join(self._vocab.get(t, "?") for t in tokens)

    def _reply_text(self, req: GenerationRequest) -> str:
        if callable(self.reply):
            return self.reply(req)
        if isinstance(self.reply, str):
            return self.reply
        seed = hash(req.prompt_tokens) if req.params.greedy else (req.params.seed, req.prompt_tokens)
        rng = random.Random(str(seed))
        return " ".join(rng.choice(_WORDS) for _ in range(self.reply_tokens))

    async def abort(self, request_id: str) -> None:
        self.aborted.add(request_id)

    async def generate(self, request: GenerationRequest) -> AsyncIterator[Delta]:
        self.requests.append(request)
        rid = request.request_id
        self.active.add(rid)
        self._kv_used[rid] = len(request.prompt_tokens)
        self._prompt_total += len(request.prompt_tokens)
        try:
            async for delta in self._run(request):
                yield delta
        finally:
            self.active.discard(rid)
            self._kv_used.pop(rid, None)

    async def _run(self, request: GenerationRequest) -> AsyncIterator[Delta]:
        params = request.params
        words = self._reply_text(request).split()
        assembler = TextAssembler(params.stop)
        n_prompt = len(request.prompt_tokens)
        produced = 0
        finish = FinishReason.STOP
        for i, word in enumerate(words):
            if request.request_id in self.aborted:
                finish = FinishReason.ABORT
                break
            if produced >= params.max_tokens:
                finish = FinishReason.LENGTH
                break
            if self.fail_at_token is not None and produced >= self.fail_at_token:
                raise GenerationFailed(f"injected failure at token {produced}")
            if self.token_delay_s:
                await asyncio.sleep(self.token_delay_s)
            else:
                await asyncio.sleep(0)
            piece = word if i == 0 else " " + word
            tid = self.tokenize(word)[0]
            produced += 1
            self._generated_total += 1
            self._kv_used[request.request_id] = n_prompt + produced
            text = assembler.feed(piece.encode())
            lp = [_fake_logprob(piece, i, params.top_logprobs)] if params.logprobs else []
            if assembler.stopped:
                yield Delta(text=text, token_ids=[tid], logprobs=lp)
                finish = FinishReason.STOP
                break
            if text or lp:
                yield Delta(text=text, token_ids=[tid], logprobs=lp)
        tail = "" if finish is FinishReason.ABORT else assembler.flush()
        yield Delta(
            text=tail,
            finish_reason=finish,
            prompt_tokens=n_prompt,
            completion_tokens=produced,
        )


def _fake_logprob(piece: str, i: int, top_n: int) -> TokenLogprob:
    lp = -0.01 * ((i % 7) + 1)
    tops = tuple(
        TopLogprob(token=piece if k == 0 else f" alt{k}", token_bytes=(piece if k == 0 else f" alt{k}").encode(),
                   logprob=lp if k == 0 else lp - k)
        for k in range(top_n)
    )
    return TokenLogprob(token=piece, token_bytes=piece.encode(), logprob=lp, top=tops)
