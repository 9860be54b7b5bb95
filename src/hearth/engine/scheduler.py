"""Continuous batching as a pure, synchronous state machine. No asyncio, no I/O, no llama.cpp.

    sched.add(seq)                  queue a sequence (FIFO; a full queue raises Overloaded)
    plan = sched.schedule()         admit what fits, compose the next step's batch
    ... the backend decodes the plan and samples every sequence in plan.sample ...
    done = sched.update(plan, out)  record sampled tokens, finish and free sequences

Guarantees:
- Admission is FIFO and never skips the head of the queue, so no request starves.
- A sequence is admitted only when its whole budget (prompt + max_tokens) fits in the KV
  capacity that is not reserved by running sequences: a running sequence never runs out of KV.
- Every step holds the next token of every decoding sequence, then prompt chunks of admitted
  sequences (oldest first) under the per-step token budget: a long prompt never stalls the
  streams already running (chunked prefill).
- A sequence that finishes or is aborted frees its slot and its reservation at once; the caller
  gets its slot id back (`Finished.seq_id`) to clear the slot's KV cells before the next step.
"""

from __future__ import annotations

import collections
from collections.abc import Mapping
from dataclasses import dataclass, field

from hearth.engine.errors import Overloaded
from hearth.engine.types import FinishReason


@dataclass(eq=False, slots=True)
class Sequence:
    """The scheduler's view of one generation. `payload` is the backend's own per-sequence state."""

    request_id: str
    prompt: tuple[int, ...]
    max_tokens: int
    payload: object = None
    seq_id: int = -1
    prefilled: int = 0
    generated: int = 0
    last_token: int = -1
    finish: FinishReason | None = None

    @property
    def reserve(self) -> int:
        return len(self.prompt) + self.max_tokens

    @property
    def decoding(self) -> bool:
        return self.prefilled == len(self.prompt)

    @property
    def kv_tokens(self) -> int:
        """Cells this sequence occupies now: its processed prompt plus the tokens fed back."""
        return self.prefilled + max(0, self.generated - 1)


@dataclass(frozen=True, slots=True)
class Chunk:
    """Tokens of one sequence placed in the step's batch at positions `pos`, `pos+1`, ..."""

    seq: Sequence
    tokens: tuple[int, ...]
    pos: int
    logits: bool  # whether the last token of the chunk needs logits (then it is sampled)


@dataclass(frozen=True, slots=True)
class Plan:
    chunks: tuple[Chunk, ...]
    admitted: tuple[Sequence, ...] = ()

    @property
    def n_tokens(self) -> int:
        return sum(len(c.tokens) for c in self.chunks)

    @property
    def sample(self) -> tuple[Sequence, ...]:
        return tuple(c.seq for c in self.chunks if c.logits)


@dataclass(frozen=True, slots=True)
class Sampled:
    token: int
    stop: bool = False  # end-of-generation token or a matched stop string


@dataclass(frozen=True, slots=True)
class Finished:
    seq: Sequence
    reason: FinishReason
    seq_id: int


@dataclass(slots=True)
class Scheduler:
    max_seqs: int
    kv_capacity: int
    token_budget: int
    max_queue: int = 256
    waiting: collections.deque[Sequence] = field(default_factory=collections.deque)
    running: list[Sequence] = field(default_factory=list)
    reserved: int = 0
    _free_ids: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.token_budget < self.max_seqs:
            raise ValueError("token_budget must hold at least one token per running sequence")
        self._free_ids = list(range(self.max_seqs - 1, -1, -1))

    # ------------------------------------------------------------------ inputs

    def add(self, seq: Sequence) -> None:
        if seq.reserve > self.kv_capacity:
            raise ValueError("a sequence that can never fit must be refused before it is added")
        if len(self.waiting) >= self.max_queue:
            raise Overloaded(retry_after_s=1.0)
        self.waiting.append(seq)

    def abort(self, request_id: str) -> Finished | None:
        for s in self.waiting:
            if s.request_id == request_id:
                self.waiting.remove(s)
                s.finish = FinishReason.ABORT
                return Finished(s, FinishReason.ABORT, -1)
        for s in self.running:
            if s.request_id == request_id:
                return self._release(s, FinishReason.ABORT)
        return None

    # ------------------------------------------------------------------ planning

    def schedule(self) -> Plan:
        admitted = self._admit()
        chunks: list[Chunk] = []
        for s in self.running:
            if s.decoding:
                chunks.append(Chunk(s, (s.last_token,), s.kv_tokens, True))
        budget = self.token_budget - len(chunks)
        for s in self.running:
            if not s.decoding and budget > 0:
                take = min(budget, len(s.prompt) - s.prefilled)
                end = s.prefilled + take
                chunks.append(Chunk(s, s.prompt[s.prefilled:end], s.prefilled, end == len(s.prompt)))
                budget -= take
        return Plan(tuple(chunks), tuple(admitted))

    def _admit(self) -> list[Sequence]:
        out = []
        while self.waiting and self._free_ids:
            head = self.waiting[0]
            if self.reserved + head.reserve > self.kv_capacity:
                break  # FIFO: never let a later, smaller request overtake the head
            self.waiting.popleft()
            head.seq_id = self._free_ids.pop()
            self.reserved += head.reserve
            self.running.append(head)
            out.append(head)
        return out

    # ------------------------------------------------------------------ results

    def update(self, plan: Plan, sampled: Mapping[Sequence, Sampled]) -> list[Finished]:
        """Apply one decoded step. `sampled` holds a token for every sequence in `plan.sample`
        that is still running (aborted ones may be absent)."""
        for c in plan.chunks:
            if not c.seq.decoding:
                c.seq.prefilled += len(c.tokens)
        done: list[Finished] = []
        for seq, out in sampled.items():
            if seq.finish is not None:
                continue
            seq.generated += 1
            seq.last_token = out.token
            if out.stop:
                done.append(self._release(seq, FinishReason.STOP))
            elif seq.generated >= seq.max_tokens:
                done.append(self._release(seq, FinishReason.LENGTH))
        return done

    def fail_all(self) -> list[Finished]:
        """The backend failed: every running sequence ends (the caller reports the error)."""
        return [self._release(s, FinishReason.ABORT) for s in list(self.running)]

    def _release(self, seq: Sequence, reason: FinishReason) -> Finished:
        seq.finish = reason
        self.running.remove(seq)
        self.reserved -= seq.reserve
        sid, seq.seq_id = seq.seq_id, -1
        self._free_ids.append(sid)
        return Finished(seq, reason, sid)

    # ------------------------------------------------------------------ introspection

    @property
    def idle(self) -> bool:
        return not self.running and not self.waiting

    @property
    def kv_used(self) -> int:
        return sum(s.kv_tokens for s in self.running)
