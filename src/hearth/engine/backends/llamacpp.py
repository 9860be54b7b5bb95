"""The llama.cpp engine: one context shared by all sequences, driven by a dedicated thread.

Each step builds one llama_batch holding the next token of every running sequence plus a chunk
of a prompt being prefilled (under a per-step token budget), decodes once, and samples every
sequence that produced logits from its own sampler chain. Sequences join and leave between steps.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

import llama_cpp as L

from hearth.engine.backends.llamacpp_model import ContextConfig, LlamaModel, Sampler, token_logprob
from hearth.engine.backends.mailbox import Mailbox
from hearth.engine.errors import ContextLengthExceeded, EngineDead, GenerationFailed, Overloaded
from hearth.engine.textstream import TextAssembler
from hearth.engine.types import Delta, FinishReason, GenerationRequest, ModelInfo

log = logging.getLogger("hearth.engine.llamacpp")


@dataclass(frozen=True, slots=True)
class LlamaCppConfig:
    model_id: str
    path: str
    n_ctx: int = 8192
    n_batch: int = 512
    max_seqs: int = 16
    max_queue: int = 256
    n_threads: int = 2
    n_threads_batch: int = 2
    flash_attn: str = "auto"
    context_length: int | None = None


@dataclass(eq=False, slots=True)
class _Seq:
    req: GenerationRequest
    mailbox: Mailbox
    reserve: int
    seq_id: int = -1
    sampler: Sampler | None = None
    assembler: TextAssembler = field(default_factory=TextAssembler)
    prefilled: int = 0
    pos: int = 0
    last_token: int = -1
    generated: int = 0
    done: bool = False


class LlamaCppEngine:
    def __init__(self, cfg: LlamaCppConfig) -> None:
        self.cfg = cfg
        self._model: LlamaModel | None = None
        self.info = ModelInfo(id=cfg.model_id, context_length=cfg.n_ctx, chat_template=None,
                              bos_token="", eos_token="")
        self._lock = threading.Condition()
        self._incoming: collections.deque[_Seq] = collections.deque()
        self._aborts: set[str] = set()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._dead: BaseException | None = None
        # Written by the engine thread after every step; read by metrics and tests.
        self.stats: dict[str, int] = {"running": 0, "waiting": 0, "kv_reserved": 0, "steps": 0}

    # ---------------------------------------------------------------- lifecycle

    def load(self) -> None:
        """Load weights and create the context (blocking; call from a worker thread)."""
        c = self.cfg
        m = LlamaModel(c.path, ContextConfig(c.n_ctx, c.n_batch, c.max_seqs, c.n_threads,
                                             c.n_threads_batch, c.flash_attn))
        self._model = m
        limit = min(m.n_ctx, m.n_ctx_train or m.n_ctx)
        if c.context_length:
            limit = min(limit, c.context_length)
        bos = L.llama_vocab_bos(m.vocab)
        eos = L.llama_vocab_eos(m.vocab)
        self.info = ModelInfo(
            id=c.model_id,
            context_length=limit,
            chat_template=m.meta("tokenizer.chat_template"),
            bos_token=m.token_text(bos) if bos >= 0 else "",
            eos_token=m.token_text(eos) if eos >= 0 else "",
            created=int(time.time()),
        )

    async def start(self) -> None:
        if self._model is None:
            await asyncio.to_thread(self.load)
        self._thread = threading.Thread(target=self._run, name=f"engine-{self.cfg.model_id}", daemon=True)
        self._thread.start()

    async def stop(self) -> None:
        with self._lock:
            self._stopping = True
            self._lock.notify()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 30)
        if self._model is not None:
            self._model.close()
            self._model = None

    def health(self) -> bool:
        return self._dead is None and self._thread is not None and self._thread.is_alive()

    # ---------------------------------------------------------------- public API

    def tokenize(self, text: str, *, special: bool = True) -> list[int]:
        assert self._model is not None
        return self._model.tokenize(text, special)

    def detokenize(self, tokens: Sequence[int]) -> str:
        assert self._model is not None
        return self._model.detokenize(tokens)

    async def abort(self, request_id: str) -> None:
        with self._lock:
            self._aborts.add(request_id)
            self._lock.notify()

    async def generate(self, request: GenerationRequest) -> AsyncIterator[Delta]:
        if self._dead is not None or self._model is None:
            raise EngineDead(f"the engine for {self.cfg.model_id} is not running")
        need = len(request.prompt_tokens) + request.params.max_tokens
        if need > self.info.context_length:
            raise ContextLengthExceeded(self.info.context_length, len(request.prompt_tokens),
                                        request.params.max_tokens)
        seq = _Seq(req=request, mailbox=Mailbox(asyncio.get_running_loop()), reserve=need,
                   assembler=TextAssembler(request.params.stop))
        with self._lock:
            if len(self._incoming) >= self.cfg.max_queue:
                raise Overloaded(retry_after_s=1.0)
            self._incoming.append(seq)
            self._lock.notify()
        finished = False
        try:
            while True:
                d = await seq.mailbox.get()
                finished = d.finish_reason is not None
                yield d
                if finished:
                    return
        finally:
            if not finished:
                with self._lock:
                    self._aborts.add(request.request_id)
                    self._lock.notify()

    # ---------------------------------------------------------------- engine thread

    def _run(self) -> None:
        try:
            _Loop(self).run()
        except BaseException as exc:  # the thread must never die silently
            log.exception("engine thread crashed")
            self._dead = exc


class _Loop:
    """State owned by the engine thread alone (besides the locked hand-off queues)."""

    def __init__(self, engine: LlamaCppEngine) -> None:
        self.e = engine
        assert engine._model is not None
        self.m: LlamaModel = engine._model
        cfg = engine.cfg
        self.waiting: collections.deque[_Seq] = collections.deque()
        self.running: list[_Seq] = []
        self.free_ids = list(range(cfg.max_seqs - 1, -1, -1))
        self.reserved = 0
        self.capacity = max(cfg.n_batch, cfg.max_seqs)
        self.batch = L.llama_batch_init(self.capacity, 0, 1)

    def run(self) -> None:
        try:
            while self._take_new():
                self._admit()
                if self.running:
                    self._step()
                self.e.stats = {"running": len(self.running), "waiting": len(self.waiting),
                                "kv_reserved": self.reserved, "steps": self.e.stats["steps"] + 1}
        finally:
            for s in self.running + list(self.waiting):
                s.mailbox.fail(EngineDead("the engine stopped"))
                self._release(s)
            L.llama_batch_free(self.batch)

    def _take_new(self) -> bool:
        e = self.e
        with e._lock:
            while not (e._stopping or e._incoming or e._aborts or self.running or self.waiting):
                e._lock.wait()
            if e._stopping:
                return False
            self.waiting.extend(e._incoming)
            e._incoming.clear()
            aborts, e._aborts = e._aborts, set()
        if aborts:
            for s in [s for s in self.running if s.req.request_id in aborts]:
                self._finish(s, FinishReason.ABORT)
            self.waiting = collections.deque(s for s in self.waiting if s.req.request_id not in aborts)
            self.running = [s for s in self.running if not s.done]
        return True

    def _admit(self) -> None:
        n_ctx = self.m.n_ctx
        while self.waiting and self.free_ids and self.reserved + self.waiting[0].reserve <= n_ctx:
            s = self.waiting.popleft()
            s.seq_id = self.free_ids.pop()
            s.sampler = Sampler(self.m, s.req.params, penalty_window=n_ctx)
            self.reserved += s.reserve
            self.running.append(s)

    def _step(self) -> None:
        b = self.batch
        n = 0
        want: list[tuple[_Seq, int]] = []
        for s in self.running:  # decoding sequences: one token each
            if s.prefilled == len(s.req.prompt_tokens):
                n = self._put(n, s.last_token, s.pos, s.seq_id, True)
                want.append((s, n - 1))
                s.pos += 1
        budget = self.e.cfg.n_batch - n  # one decode never exceeds the context's n_batch
        for s in self.running:  # prefill chunks, oldest first, under the token budget
            prompt = s.req.prompt_tokens
            if s.prefilled < len(prompt) and budget > 0:
                take = min(budget, len(prompt) - s.prefilled)
                for k in range(take):
                    last = s.prefilled + k == len(prompt) - 1
                    n = self._put(n, prompt[s.prefilled + k], s.pos, s.seq_id, last)
                    s.pos += 1
                s.prefilled += take
                budget -= take
                if s.prefilled == len(prompt):
                    want.append((s, n - 1))
        b.n_tokens = n
        rc = L.llama_decode(self.m.ctx, b)
        if rc != 0:
            err = GenerationFailed(f"llama_decode failed with status {rc}")
            for s in self.running:
                s.mailbox.fail(err)
                self._release(s)
            self.running = []
            return
        for s, idx in want:
            self._sample(s, idx)
        self.running = [s for s in self.running if not s.done]

    def _put(self, n: int, token: int, pos: int, seq_id: int, logits: bool) -> int:
        b = self.batch
        b.token[n] = token
        b.pos[n] = pos
        b.n_seq_id[n] = 1
        b.seq_id[n][0] = seq_id
        b.logits[n] = 1 if logits else 0
        return n + 1

    def _sample(self, s: _Seq, idx: int) -> None:
        assert s.sampler is not None
        p = s.req.params
        tok = s.sampler.sample(self.m.ctx, idx)
        s.generated += 1
        s.last_token = tok
        lps = [token_logprob(self.m, self.m.logits(idx), tok, p.top_logprobs)] if p.logprobs else []
        if self.m.is_eog(tok):
            s.mailbox.put(Delta(token_ids=[tok], logprobs=lps))
            self._finish(s, FinishReason.STOP)
            return
        text = s.assembler.feed(self.m.piece(tok))
        s.mailbox.put(Delta(text=text, token_ids=[tok], logprobs=lps))
        if s.assembler.stopped:
            self._finish(s, FinishReason.STOP)
        elif s.generated >= p.max_tokens:
            self._finish(s, FinishReason.LENGTH)

    def _finish(self, s: _Seq, reason: FinishReason) -> None:
        tail = s.assembler.flush() if reason is not FinishReason.ABORT else ""
        s.mailbox.put(Delta(text=tail, finish_reason=reason, prompt_tokens=len(s.req.prompt_tokens),
                            completion_tokens=s.generated))
        self._release(s)

    def _release(self, s: _Seq) -> None:
        if s.done:
            return
        s.done = True
        if s.seq_id >= 0:
            self.m.seq_rm(s.seq_id)  # frees the sequence's KV cells before the next step
            self.free_ids.append(s.seq_id)
            self.reserved -= s.reserve
            s.seq_id = -1
        if s.sampler is not None:
            s.sampler.free()
            s.sampler = None
