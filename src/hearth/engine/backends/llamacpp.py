"""The llama.cpp engine: one context shared by all sequences, stepped on the compute thread.

Each step builds one llama_batch holding the next token of every running sequence plus a chunk
of a prompt being prefilled (under a per-step token budget), decodes once, and samples every
sequence that produced logits from its own sampler chain. Sequences join and leave between steps.
Every chat model of the process loads and steps on one shared thread (compute.py: one OpenMP team).
"""

from __future__ import annotations

import asyncio
import collections
import ctypes
import logging
import mmap
import threading
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import llama_cpp as L

from hearth.engine.backends import compute
from hearth.engine.backends.constraints import GrammarRuntime, TokenMatcher
from hearth.engine.backends.llamacpp_model import (
    ContextConfig,
    LlamaModel,
    Sampler,
    q8_kernel,
    token_logprob,
)
from hearth.engine.backends.mailbox import Mailbox
from hearth.engine.errors import ContextLengthExceeded, EngineDead, GenerationFailed, Overloaded
from hearth.engine.scheduler import Chunk, Finished, Plan, Sampled, Scheduler
from hearth.engine.scheduler import Sequence as Seq
from hearth.engine.textstream import TextAssembler
from hearth.engine.types import Delta, EngineMetrics, FinishReason, GenerationRequest, ModelInfo

log = logging.getLogger("hearth.engine.llamacpp")

_FA_TILE = 64  # ggml's CPU flash attention runs tiled for compute passes of at least this many tokens
_PAD_PAIRS_PER_TOKEN = 800  # (token, cell) pairs that make one padding token pay (_decode_padded)
_LLAMA_MAX_SEQ = 256  # llama.cpp's limit on sequence ids per context


@dataclass(frozen=True, slots=True)
class LlamaCppConfig:
    model_id: str
    path: str
    n_ctx: int = 8192
    n_batch: int = 512
    idle_step_tokens: int = 2048  # a step with no decoding sequence may finish a prompt up to this
    idle_gather_ms: float = 0.0  # an idle engine waits this long for more of a burst (config.py)
    pad_small_steps: bool = True  # pad attention-heavy steps to llama.cpp's tiled attention (below)
    max_seqs: int = 16
    max_queue: int = 256
    n_threads: int = 2  # 0: measured when the model loads (_pick_decode_threads)
    n_threads_batch: int = 2
    flash_attn: str = "auto"
    context_length: int | None = None
    prefix_cache_entries: int = 32  # finished prompts kept in the KV cache for reuse
    prefix_cache_host_mb: int = 0  # > 0: those leaving the KV cache are parked in host memory
    # Greedy and seeded requests give bit-identical output whatever the load (see scheduler.py).
    batch_invariant: bool = False


@dataclass(eq=False, slots=True)
class _Seq:
    """The compute thread's per-request state beside the scheduler's Sequence."""

    req: GenerationRequest
    mailbox: Mailbox
    assembler: TextAssembler
    sampler: Sampler | None = None
    matcher: TokenMatcher | None = None


class LlamaCppEngine:
    def __init__(self, cfg: LlamaCppConfig) -> None:
        self.cfg = cfg
        self._model: LlamaModel | None = None
        self._grammar: GrammarRuntime | None = None  # built on the first constrained request
        self._grammar_lock = threading.Lock()
        self.info = ModelInfo(id=cfg.model_id, context_length=cfg.n_ctx, chat_template=None,
                              bos_token="", eos_token="")
        self._compute = compute.shared()
        self._lock = self._compute.cond  # guards the hand-off below; notifying it wakes the thread
        self._incoming: collections.deque[_Seq] = collections.deque()
        self._aborts: set[str] = set()
        self._stopping = False
        self._stopped = threading.Event()  # set once the compute thread has let go of this engine
        self._dead: BaseException | None = None
        self._loop: _Loop | None = None  # the compute thread's state (tests inspect its host cache)
        self.decode_threads = cfg.n_threads  # threads of one-token steps, once known (load)
        # Written by the compute thread after every step; read by metrics and tests.
        self.stats: dict[str, int] = {"running": 0, "waiting": 0, "kv_reserved": 0, "kv_used": 0, "steps": 0,
                                      "prompt_tokens_total": 0, "generated_tokens_total": 0,
                                      "prefix_cache_hit_tokens": 0}

    # ---------------------------------------------------------------- lifecycle

    def load(self) -> None:
        """Load weights and create the context (blocking; start() runs it on the compute thread)."""
        c = self.cfg
        # Slot ids: running sequences plus resident prefix-cache entries (see engine/scheduler.py).
        # A decode call may hold an idle step's tokens; the compute buffers stay sized by n_batch.
        # One more sequence id than the scheduler hands out: the scratch sequence that pads steps.
        slots = c.max_seqs + c.prefix_cache_entries
        m = LlamaModel(c.path, ContextConfig(c.n_ctx, max(c.n_batch, c.idle_step_tokens, _FA_TILE),
                                             slots + 1 if slots < _LLAMA_MAX_SEQ else slots,
                                             c.n_threads or 1, c.n_threads_batch, c.flash_attn,
                                             n_ubatch=min(c.n_batch, 512)))
        self._model = m
        self.decode_threads = c.n_threads or _pick_decode_threads(m, c.n_threads_batch)
        log.info("batched Q5_0 and Q8_0 matmuls in the %s kernel", q8_kernel())
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
        # The load (with its thread timing) runs on the compute thread too: one OpenMP team for
        # every llama.cpp compute of every chat model (why: compute.py).
        await asyncio.wrap_future(self._compute.call(self._open))

    def _open(self) -> None:
        """On the compute thread: load, then take turns stepping with the other models."""
        try:
            if self._model is None:
                self.load()
            loop = _Loop(self)
        except BaseException as exc:  # start() re-raises it in the caller
            self._dead = exc
            self._stopped.set()
            raise
        self._loop = loop
        self._compute.add(loop)

    async def stop(self) -> None:
        with self._lock:
            self._stopping = True
            self._lock.notify_all()
        if self._loop is not None:
            await asyncio.to_thread(self._stopped.wait, 30)
        # Closed only once the compute thread has let go of it (never while a step may use it).
        if self._model is not None and (self._loop is None or self._stopped.is_set()):
            self._model.close()
            self._model = None

    def health(self) -> bool:
        return (self._dead is None and self._loop is not None and not self._stopped.is_set()
                and self._compute.alive())

    def metrics(self) -> EngineMetrics:
        st = self.stats  # replaced wholesale by the compute thread after each step: read it once
        m = self._model
        return EngineMetrics(
            running=st["running"],
            waiting=st["waiting"] + len(self._incoming),  # handed off, not yet taken by the thread
            kv_used_tokens=st["kv_used"],
            kv_capacity_tokens=m.n_ctx if m is not None else self.cfg.n_ctx,
            prefix_cache_hit_tokens=st["prefix_cache_hit_tokens"],
            prefix_cache_host_tokens=st.get("prefix_cache_host_tokens", 0),
            prompt_tokens_total=st["prompt_tokens_total"],
            generated_tokens_total=st["generated_tokens_total"],
        )

    # ---------------------------------------------------------------- public API

    def tokenize(self, text: str, *, special: bool = True) -> list[int]:
        assert self._model is not None
        return self._model.tokenize(text, special)

    def detokenize(self, tokens: Sequence[int]) -> str:
        assert self._model is not None
        return self._model.detokenize(tokens)

    def _matcher(self, grammar: str) -> TokenMatcher:
        with self._grammar_lock:
            if self._grammar is None:
                assert self._model is not None
                self._grammar = GrammarRuntime(self._model.vocab, self._model.n_vocab)
        return self._grammar.matcher(grammar)

    async def abort(self, request_id: str) -> None:
        with self._lock:
            self._aborts.add(request_id)
            self._lock.notify_all()

    async def generate(self, request: GenerationRequest) -> AsyncIterator[Delta]:
        if self._dead is not None or self._model is None:
            raise EngineDead(f"the engine for {self.cfg.model_id} is not running")
        need = len(request.prompt_tokens) + request.params.max_tokens
        if need > self.info.context_length:
            raise ContextLengthExceeded(self.info.context_length, len(request.prompt_tokens),
                                        request.params.max_tokens)
        matcher = None
        if request.constraint is not None:
            # Compiling a schema takes milliseconds (the vocabulary index ~1-2 s, once per model):
            # keep both off the event loop and off the compute thread.
            matcher = await asyncio.to_thread(self._matcher, request.constraint.grammar)
        seq = _Seq(req=request, mailbox=Mailbox(asyncio.get_running_loop()),
                   assembler=TextAssembler(request.params.stop), matcher=matcher)
        with self._lock:
            # The queue is what the compute thread has not admitted yet (its count is published per step).
            if len(self._incoming) + self.stats["waiting"] >= self.cfg.max_queue:
                raise Overloaded(retry_after_s=1.0)
            self._incoming.append(seq)
            self._lock.notify_all()
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
                    self._lock.notify_all()


class _Loop:
    """One model's steps on the compute thread: drives the pure Scheduler with llama.cpp as the
    step backend."""

    def __init__(self, engine: LlamaCppEngine) -> None:
        self.e = engine
        assert engine._model is not None
        self.m: LlamaModel = engine._model
        cfg = engine.cfg
        self.sched = Scheduler(max_seqs=cfg.max_seqs, kv_capacity=self.m.n_ctx,
                               token_budget=max(cfg.n_batch, cfg.max_seqs), max_queue=1 << 30,
                               finish_tokens=cfg.idle_step_tokens,
                               max_cached=cfg.prefix_cache_entries,
                               host_cache_tokens=cfg.prefix_cache_host_mb * (1 << 20) // self.m.kv_bytes_per_token)
        # A token may belong to every running sequence at once (a prompt prefix prefilled jointly).
        self.batch = L.llama_batch_init(max(self.sched.max_step_tokens, _FA_TILE), 0, cfg.max_seqs)
        self.pad_seq = self.sched.n_slot_ids  # never a scheduler slot (see LlamaCppEngine.load)
        self.can_pad = (cfg.pad_small_steps and self.pad_seq < _LLAMA_MAX_SEQ
                        and L.llama_n_ubatch(self.m.ctx) >= _FA_TILE)
        self.padded_steps = 0
        self.prompt_total = 0
        self.generated_total = 0
        self.parked: dict[int, ctypes.Array[ctypes.c_uint8]] = {}  # host-memory prefix cache
        self.gather_until: float | None = None  # an idle engine's burst gathers until then (poll)

    # The compute thread's Worker protocol (compute.py): poll under its lock, then step without it.

    def poll(self, now: float) -> float | None:
        e = self.e
        if e._stopping or e._aborts or not self.sched.idle:
            return 0.0
        if not e._incoming:
            self.gather_until = None
            return None
        if e.cfg.idle_gather_ms <= 0:
            return 0.0
        # A burst reaching an idle engine (a client fanning out, or the follow-ups that a wave of
        # answers sets off) arrives over a few milliseconds. Taken at once, its first request would
        # start a step alone and the rest would wait that whole step before theirs; gathered, they
        # share the first step. (The thread steps other models meanwhile.)
        if self.gather_until is None:
            self.gather_until = now + e.cfg.idle_gather_ms / 1000
        return max(0.0, self.gather_until - now)

    def step(self) -> bool:
        """One step of this model. False once the engine stops or fails (the loop is closed then)."""
        try:
            if not self._take_new():
                self.close(EngineDead("the engine stopped"))
                return False
            self._one_step()
            return True
        except BaseException as exc:  # the engine fails alone; the compute thread serves the others
            log.exception("engine step crashed")
            self.e._dead = exc
            self.close(EngineDead(f"the engine for {self.e.cfg.model_id} failed"))
            return False

    def _one_step(self) -> None:
        for sid in self.sched.take_drops():  # an abort frees its cells now, not next step
            self.m.seq_rm(sid)
        plan = self.sched.schedule()
        t0 = time.perf_counter()
        if not self._apply_cache_ops(plan):
            return  # every running sequence has failed; the plan is void
        t1 = time.perf_counter()
        for seq in plan.admitted:
            st: _Seq = seq.payload  # type: ignore[assignment]
            st.sampler = Sampler(self.m, st.req.params, penalty_window=self.m.n_ctx)
        if plan.chunks:
            self._step(plan)
            self.prompt_total += sum(len(c.tokens) for c in plan.chunks if c.pos < len(c.seq.prompt))
            self.generated_total += len(plan.sample)
        if log.isEnabledFor(logging.DEBUG):  # per-step timings (HEARTH_LOG_LEVEL=debug)
            log.debug("step %d: %d tokens (%d sampled, %d chunks) cache ops %.1f ms "
                      "(%d parks, %d restores, %d copies) decode+sample %.1f ms; %d waiting",
                      self.e.stats["steps"], plan.n_tokens, len(plan.sample), len(plan.chunks),
                      1e3 * (t1 - t0), len(plan.parks), len(plan.restores), len(plan.copies),
                      1e3 * (time.perf_counter() - t1), len(self.sched.waiting))
        self.e.stats = {"running": len(self.sched.running), "waiting": len(self.sched.waiting),
                        "kv_reserved": self.sched.reserved, "kv_used": self.sched.kv_used,
                        "steps": self.e.stats["steps"] + 1, "prompt_tokens_total": self.prompt_total,
                        "generated_tokens_total": self.generated_total,
                        "prefix_cache_hit_tokens": self.sched.cache_hit_tokens,
                        "prefix_cache_host_tokens": self.sched.parked_tokens}

    def close(self, err: Exception) -> None:
        """Fail whatever is still running or waiting (nobody will step this engine again), free the
        batch and let stop() go on."""
        try:
            self._fail_all(err)
            for seq in self.sched.waiting:
                seq.payload.mailbox.fail(err)  # type: ignore[attr-defined]
            self.sched.waiting.clear()
            with self.e._lock:
                left = list(self.e._incoming)
                self.e._incoming.clear()
            for st in left:
                st.mailbox.fail(err)
            L.llama_batch_free(self.batch)
        finally:
            self.e._stopped.set()

    def _apply_cache_ops(self, plan: Plan) -> bool:
        """Everything in a plan that comes before its decode, in the plan's order."""
        for sid, ref in plan.parks:
            self._park(sid, ref)
        for sid in plan.drops:
            self.m.seq_rm(sid)
        for ref in plan.forgets:
            self.parked.pop(ref, None)
        for ref, dst, n in plan.restores:
            if not self._restore(ref, dst, n, plan):
                return False  # _decode has failed every running sequence
        for src, dst, n in plan.copies:
            # dst may already hold a shorter prefix (from the cache): replace it, never leave two
            # cells at one position of a sequence.
            L.llama_memory_seq_rm(self.m.memory, dst, 0, n)
            L.llama_memory_seq_cp(self.m.memory, src, dst, 0, n)
        return True

    def _park(self, sid: int, ref: int) -> None:
        """Move a finished sequence's cells to host memory (a parked prefix-cache entry)."""
        ctx = self.m.ctx
        size = L.llama_state_seq_get_size(ctx, sid)
        buf = _host_buffer(size)
        if L.llama_state_seq_get_data(ctx, buf, size, sid) == size:
            self.parked[ref] = buf
        else:  # not restorable: a later hit recomputes the prefix instead
            log.warning("could not save a cached prefix (%d bytes) to host memory", size)
        self.m.seq_rm(sid)

    def _restore(self, ref: int, dst: int, n: int, plan: Plan) -> bool:
        """Write a parked entry's cells into slot dst and keep positions [0, n). If that fails
        (no saved cells, or no free cells for the whole entry), compute those n tokens instead:
        the plan's chunks start at position n either way. False if even that failed (then
        every running sequence has been failed)."""
        buf = self.parked.get(ref)
        if buf is not None and L.llama_state_seq_set_data(self.m.ctx, buf, len(buf), dst) == len(buf):
            L.llama_memory_seq_rm(self.m.memory, dst, n, -1)
            return True
        log.warning("restoring a cached prefix failed; recomputing its %d tokens", n)
        self.m.seq_rm(dst)
        seq = next(s for s in plan.admitted if s.seq_id == dst)
        step = self.sched.token_budget
        return all(self._decode((Chunk(seq, seq.prompt[i:min(n, i + step)], i, False),), {})
                   for i in range(0, n, step))

    def _take_new(self) -> bool:
        e = self.e
        with e._lock:
            if e._stopping:
                return False
            self.gather_until = None
            incoming = list(e._incoming)
            e._incoming.clear()
            aborts, e._aborts = e._aborts, set()
        for st in incoming:
            p = st.req.params
            log.debug("request %s arrives: %d prompt tokens", st.req.request_id, len(st.req.prompt_tokens))
            isolated = self.e.cfg.batch_invariant and (p.greedy or p.seed is not None)
            self.sched.add(Seq(st.req.request_id, st.req.prompt_tokens, p.max_tokens, st,
                               cache_key=st.req.cache_key,
                               # a seeded request replays bit-exactly: it never starts from cached KV
                               reuse=p.seed is None and not isolated, isolated=isolated))
        for rid in aborts:
            f = self.sched.abort(rid)
            if f is not None:
                self._finish(f)
        return True

    def _step(self, plan: Plan) -> None:
        # An isolated (batch-invariant) sequence is alone in its plans: one decode serves every case.
        sampled: dict[Seq, Sampled] = {}
        if not self._decode(plan.chunks, sampled):
            return
        for f in self.sched.update(plan, sampled):
            self._finish(f)

    def _decode(self, chunks: tuple[Chunk, ...], sampled: dict[Seq, Sampled]) -> bool:
        """One llama_decode over `chunks`; samples the sequences that produced logits."""
        b = self.batch
        n = 0
        want: list[tuple[Seq, int]] = []
        for c in chunks:
            sid = c.seq.seq_id
            for k, tok in enumerate(c.tokens):
                b.token[n] = tok
                b.pos[n] = c.pos + k
                ids = b.seq_id[n]
                ids[0] = sid
                m = 1
                for r, upto in c.riders:
                    if k < upto:
                        ids[m] = r.seq_id
                        m += 1
                b.n_seq_id[n] = m
                b.logits[n] = 1 if (c.logits and k == len(c.tokens) - 1) else 0
                n += 1
            if c.logits:
                want.append((c.seq, n - 1))
        b.n_tokens = n
        rc = self._decode_padded(chunks, n) if self.can_pad else L.llama_decode(self.m.ctx, b)
        if rc != 0:
            self._fail_all(GenerationFailed(f"llama_decode failed with status {rc}"))
            return False
        for seq, idx in want:
            sampled[seq] = self._sample(seq, idx)
        return True

    def _decode_padded(self, chunks: tuple[Chunk, ...], n: int) -> int:
        """llama_decode of the batch's n tokens, padded to llama.cpp's tiled attention when the step is
        small but attends over many cells.

        ggml's CPU flash attention takes its tiled path (Q x K as small matrix products over 64-cell
        tiles) only when a compute pass holds >= 64 tokens; below that, each token walks the keys one
        by one, ~10 us per (token, cell) pair for Qwen 0.5B on 2 cores, about 2.5x the tiled cost.
        A 50-token follow-up turn over a 930-token conversation then takes ~1 s instead of ~0.4 s
        (measured: 48 tokens 961-1056 ms, 64 tokens 463-572 ms). Padding the batch to 64 tokens with
        throwaway tokens of a scratch sequence (no logits, their cells removed right after) costs
        those tokens' matmuls, ~8 ms each: worth it when the real tokens' (token, cell) pairs
        exceed ~800 per padding token. Decode steps (a few hundred cells per token) never qualify.
        """
        ctx = self.m.ctx
        pad = _FA_TILE - n
        if pad <= 0 or pad >= _FA_TILE - 1:
            return L.llama_decode(ctx, self.batch)
        pairs = sum(len(c.tokens) * c.pos + len(c.tokens) * (len(c.tokens) + 1) // 2 for c in chunks)
        if pairs < _PAD_PAIRS_PER_TOKEN * pad:
            return L.llama_decode(ctx, self.batch)
        b = self.batch
        for k in range(pad):
            i = n + k
            b.token[i] = 0
            b.pos[i] = k
            b.seq_id[i][0] = self.pad_seq
            b.n_seq_id[i] = 1
            b.logits[i] = 0
        b.n_tokens = n + pad
        try:
            rc = L.llama_decode(ctx, b)
        finally:
            L.llama_memory_seq_rm(self.m.memory, self.pad_seq, -1, -1)
            b.n_tokens = n
        if rc == 1:  # no room for the padding cells: the batch was not applied; run it unpadded
            return L.llama_decode(ctx, b)
        self.padded_steps += rc == 0
        return rc

    def _fail_all(self, err: Exception) -> None:
        for f in self.sched.fail_all():
            f.seq.payload.mailbox.fail(err)  # type: ignore[attr-defined]
            self._free(f)

    def _sample(self, seq: Seq, idx: int) -> Sampled:
        st: _Seq = seq.payload  # type: ignore[assignment]
        assert st.sampler is not None
        p = st.req.params
        if st.matcher is not None:
            st.matcher.apply(self.m.logits(idx))  # the sampler chain reads these same logits
        tok = st.sampler.sample(self.m.ctx, idx)
        lps = [token_logprob(self.m, self.m.logits(idx), tok, p.top_logprobs)] if p.logprobs else []
        done = st.matcher.advance(tok) if st.matcher is not None else False
        if self.m.is_eog(tok):
            st.mailbox.put(Delta(token_ids=[tok], logprobs=lps))
            return Sampled(tok, stop=True)
        text = st.assembler.feed(self.m.piece(tok))
        st.mailbox.put(Delta(text=text, token_ids=[tok], logprobs=lps))
        return Sampled(tok, stop=done or st.assembler.stopped)

    def _finish(self, f: Finished) -> None:
        st: _Seq = f.seq.payload  # type: ignore[assignment]
        tail = st.assembler.flush() if f.reason is not FinishReason.ABORT else ""
        st.mailbox.put(Delta(text=tail, finish_reason=f.reason, prompt_tokens=len(f.seq.prompt),
                             cached_tokens=f.seq.cached, completion_tokens=f.seq.generated))
        self._free(f)

    def _free(self, f: Finished) -> None:
        # The slot's cells are cleared (or kept as a cache entry) through the scheduler's drops.
        st: _Seq = f.seq.payload  # type: ignore[assignment]
        if st.sampler is not None:
            st.sampler.free()
            st.sampler = None


def _pick_decode_threads(m: LlamaModel, n_batch_threads: int, margin: float = 0.05) -> int:
    """Threads for one-token steps: 1 or n_batch_threads, whichever decodes faster here.

    Machines disagree (README, Performance): a single stream decodes faster on one thread where
    one core's memory bandwidth suffices (two threads then only add barriers), on two where it
    does not. Measured once, before any request, so the choice never changes mid-request (the
    thread count changes a step's summation order, hence the output). One thread wins ties
    within `margin`: under load the HTTP side competes for the cores, which the timing here
    does not see, and a second decode thread then waits for it at every barrier.
    """
    if n_batch_threads <= 1:
        return 1
    ms = m.one_token_step_ms((1, n_batch_threads))
    best = n_batch_threads if ms[n_batch_threads] < ms[1] * (1 - margin) else 1
    m.set_threads(best, n_batch_threads)
    log.info("one-token steps on %d thread%s (median %.1f ms on 1 thread, %.1f ms on %d)",
             best, "" if best == 1 else "s", ms[1], ms[n_batch_threads], n_batch_threads)
    return best


def _host_buffer(size: int) -> ctypes.Array[ctypes.c_uint8]:
    """Memory for one parked entry. Fresh pages are most of what a park costs: touched one by one,
    every 4 KiB page faults (~45 ms for a 1,000-token entry of Qwen 0.5B, 14 MB, measured in the
    engine); MAP_POPULATE maps them all in one call."""
    flags = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | getattr(mmap, "MAP_POPULATE", 0)
    mm = mmap.mmap(-1, size, flags=flags)
    return (ctypes.c_uint8 * size).from_buffer(mm)  # keeps mm alive; unmapped when freed
