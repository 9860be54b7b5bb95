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
- When no sequence is decoding there is no stream to stall: the first prompt chunk of such a step
  may run to the end of its prompt if the whole step stays within `finish_tokens` (a lone
  1000-token prompt yields its first token after one step, not after two half-filled ones).
- A sequence that finishes or is aborted frees its slot and its reservation at once. Its KV cells
  are cleared by the caller through the next plan's `drops`, which the caller applies before
  anything else in that step (so a slot id is never reused before its old cells are gone).

Batch-invariant mode (`Sequence.isolated`): llama.cpp's kernels round differently for different
batch shapes and KV layouts (the attention sums run over cells interleaved with other sequences'),
so a greedy or seeded sequence batched with others can drift from its run alone at near-ties.
An isolated sequence runs with the engine to itself: it is admitted only when nothing else runs and
nothing is admitted beside it; it prefills in chunks of the full budget and never starts from
cached KV, exactly as alone. It costs all batching for those requests, so it is opt-in.

Automatic prefix caching: with `max_cached > 0`, a finished sequence's KV (prompt and the tokens
fed back) stays behind as a cache entry under its slot id. A new sequence with the same
`cache_key` whose prompt shares a prefix with an entry gets those cells shared into its slot
(`Plan.copies`, done with llama.cpp's seq_cp: no recomputation), and prefills only the rest.
Entries are evicted least-recently-used when their cells are needed for admission or when there
are too many. Only requests with the same `cache_key` (tenant) ever share cells.

Host tier (`host_cache_tokens > 0`): idle cells are not free. Attention in a unified KV cache runs
over every cell up to the highest one in use, masked or not, so idle cached prefixes slow every
step of the running sequences. With the host tier, an entry that leaves the KV cache (when
sequences are about to be admitted into a batch, every resident entry, so that the newcomers take
the low cells; unused for `park_after` steps while others run, one per step; or its cells or slot
are needed; or more than `max_cached` are resident) is parked in host memory (`Plan.parks`: the
backend saves its cells and frees them) instead of dropped. A new sequence that matches a parked
entry gets its KV written back into its own slot (`Plan.restores`, then trimmed to the matched
length) — or shares the cells of a running sequence that holds them — instead of recomputing it.
Parked entries are evicted least-recently-used beyond `host_cache_tokens` (`Plan.forgets`).

Joint prefill: requests of one tenant admitted together whose prompts share a prefix (a burst with
one system prompt, the n>1 choices of one request) compute it once. The first is the leader; the
others ride on its chunks (`Chunk.riders`: the same tokens at the same positions belong to several
sequences, one KV cell each) and run only their own remaining tokens, in the same step when the
budget allows. A newcomer that arrives while a leader is part-way through the shared prefix first
takes what is already computed (a copy), then rides on the rest. Tokens a sequence got from the
cache, from a copy or by riding count as its `cached` tokens.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable, Mapping
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
    cache_key: str = ""
    reuse: bool = True  # may start from a cached prefix (off for seeded requests: bit-exact replay)
    # Batch-invariant mode: this sequence runs with the engine to itself (see _admit), so its steps
    # and prompt chunks are exactly those of a run alone and its numerics never depend on the load.
    isolated: bool = False
    cached: int = 0  # prompt tokens taken from the prefix cache
    history: list[int] = field(default_factory=list)
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
    # Joint prefill: (sequence, n) — the first n tokens of the chunk belong to that sequence too
    # (the same tokens at the same positions of a shared prompt prefix: computed once, one cell each).
    riders: tuple[tuple[Sequence, int], ...] = ()


@dataclass(frozen=True, slots=True)
class Plan:
    """One step. Apply in order: `parks` ((slot, ref): save the slot's cells to host memory under
    ref, then clear the slot), `drops` (clear these slot ids), `forgets` (free these parked refs), `restores` ((ref, dst,
    n): write ref's cells into slot dst and keep positions [0, n)), `copies` ((src, dst, n): share
    positions [0, n) of src into dst), then decode `chunks`."""

    chunks: tuple[Chunk, ...]
    admitted: tuple[Sequence, ...] = ()
    drops: tuple[int, ...] = ()
    copies: tuple[tuple[int, int, int], ...] = ()
    parks: tuple[tuple[int, int], ...] = ()
    restores: tuple[tuple[int, int, int], ...] = ()
    forgets: tuple[int, ...] = ()

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


@dataclass(eq=False, slots=True)
class CacheEntry:
    seq_id: int  # the slot holding its cells; -1 when parked in host memory
    key: str
    tokens: tuple[int, ...]
    last_used: int
    ref: int = -1  # host-memory id when parked
    used_step: int = 0  # the scheduler step it was created or last reused in

    @property
    def parked(self) -> bool:
        return self.ref >= 0


@dataclass(slots=True)
class Scheduler:
    max_seqs: int
    kv_capacity: int
    token_budget: int
    max_queue: int = 256
    max_cached: int = 0  # prefix-cache entries kept in the KV cache (each holds one slot id)
    host_cache_tokens: int = 0  # > 0: entries leaving the KV cache are parked in host memory
    max_parked: int = 4096  # parked entries at most (bounds the prefix search per admission)
    park_after: int = 16  # steps a resident entry stays unused before it is parked
    finish_tokens: int = 0  # > token_budget: a step with no decoding sequence may grow to this
    waiting: collections.deque[Sequence] = field(default_factory=collections.deque)
    running: list[Sequence] = field(default_factory=list)
    reserved: int = 0
    cache: list[CacheEntry] = field(default_factory=list)
    cache_hit_tokens: int = 0
    _free_ids: list[int] = field(default_factory=list)
    _drops: list[int] = field(default_factory=list)
    _parks: list[tuple[int, int]] = field(default_factory=list)
    _forgets: list[int] = field(default_factory=list)
    _restores: list[tuple[int, int, int]] = field(default_factory=list)
    _next_ref: int = 0
    _tick: int = 0
    _steps: int = 0

    def __post_init__(self) -> None:
        if self.token_budget < self.max_seqs:
            raise ValueError("token_budget must hold at least one token per running sequence")
        self._free_ids = list(range(self.n_slot_ids - 1, -1, -1))

    @property
    def max_step_tokens(self) -> int:
        """The most tokens one plan may hold (the backend's batch size)."""
        return max(self.token_budget, self.finish_tokens)

    @property
    def n_slot_ids(self) -> int:
        """Sequence ids the backend must provide (running slots plus cache entries)."""
        return self.max_seqs + self.max_cached

    @property
    def cached_cells(self) -> int:
        """KV cells held by resident (not parked) cache entries."""
        return sum(len(e.tokens) for e in self.cache if not e.parked)

    @property
    def parked_tokens(self) -> int:
        return sum(len(e.tokens) for e in self.cache if e.parked)

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
        copies: list[tuple[int, int, int]] = []
        if self.host_cache_tokens > 0 and self._batch_joining():
            # Newcomers joining a batch: every resident entry leaves first, so that their cells
            # take the low cells the entries held, in one run, instead of landing above them.
            # Attention runs over every cell up to the highest in use, so cells placed above idle
            # ones make each step of these sequences scan the idle cells too, for their whole life
            # (a wave of 16 after an earlier wave of 16: ~20 % per step). A newcomer that shares an
            # entry's prefix gets it written back into its own slot (or copied from an earlier
            # newcomer that did): placed among the entries' cells instead, its prompt would land
            # in scattered holes, which makes llama.cpp's tiled attention skip fewer tiles.
            for e in self._resident():
                self._park(e)
        admitted = self._admit(copies)
        self._steps += 1
        if self.host_cache_tokens > 0 and len(self.running) > 1:
            # Idle cells cost every step that runs: an entry unused for park_after steps moves to
            # host memory, one per step (a park copies its cells: spread them, never a burst). An
            # idle engine parks nothing: no step pays for the cells then. Nor does a lone sequence
            # see cells freed under it: llama.cpp would place its next tokens in them, which
            # changes its attention's summation order, so a request alone would no longer repeat
            # its output exactly.
            stale = [e for e in self._resident(but=copies) if self._steps - e.used_step >= self.park_after]
            if stale:
                self._park(_lru(stale))
        chunks: list[Chunk] = []
        for s in self.running:
            if s.decoding:
                chunks.append(Chunk(s, (s.last_token,), s.kv_tokens, True))
        budget = self.token_budget - len(chunks)
        may_finish = not chunks and self.finish_tokens > self.token_budget
        prefilling = [s for s in self.running if not s.decoding]
        pos = {s: s.prefilled for s in prefilling}  # positions reached once this step's chunks run
        rides: dict[Sequence, int] = {}  # rider -> end of the prefix it shares with its leader
        for i, s in enumerate(prefilling):
            if s in rides:
                if pos[s] < rides[s]:
                    continue  # its leader computes the rest of the shared prefix next step
            else:
                # An earlier request may be computing this prompt's prefix: share it, don't redo it.
                wait = s.reuse and s.prefilled == s.cached and self._follow(s, copies)
                pos[s] = s.prefilled  # _follow may have advanced it with a copy
                if wait:
                    continue
            if budget <= 0:
                continue
            start = pos[s]
            end = start + min(budget, len(s.prompt) - start)
            if may_finish and len(s.prompt) - start <= self.finish_tokens and not s.isolated:
                end = len(s.prompt)  # the first chunk of an idle step: finish this prompt now
            may_finish = False
            riders = self._riders(s, prefilling[i + 1:], start, end, s in rides, copies, pos, rides)
            chunks.append(Chunk(s, s.prompt[start:end], start, end == len(s.prompt), riders))
            pos[s] = end
            budget -= end - start
        drops, self._drops = tuple(self._drops), []
        parks, self._parks = tuple(self._parks), []
        forgets, self._forgets = tuple(self._forgets), []
        restores, self._restores = tuple(self._restores), []
        return Plan(tuple(chunks), tuple(admitted), drops, tuple(copies), parks, restores, forgets)

    def _riders(self, lead: Sequence, later: list[Sequence], start: int, end: int, lead_rides: bool,
                copies: list[tuple[int, int, int]], pos: dict[Sequence, int],
                rides: dict[Sequence, int]) -> tuple[tuple[Sequence, int], ...]:
        """Later newcomers of the same tenant whose prompts share the tokens this chunk computes
        ride on it: a burst of requests with one system prompt (or the n>1 choices of a request)
        prefills that prefix once, in the same step, instead of waiting for the first to finish."""
        if lead.isolated or not lead.reuse:
            return ()
        out: list[tuple[Sequence, int]] = []
        for f in later:
            if f in rides or not f.reuse or f.isolated or f.cache_key != lead.cache_key:
                continue
            if f.prefilled != f.cached:
                continue  # it has computed its own part already: its cells differ from here on
            shared = min(_common_prefix(lead.prompt, f.prompt), len(f.prompt) - 1)
            if shared <= start or pos[f] > start:
                continue
            if pos[f] < start:
                if lead_rides:
                    continue  # the leader's own cells below `start` are still being computed
                copies.append((lead.seq_id, f.seq_id, start))  # what the leader has already
                self.cache_hit_tokens += start - f.prefilled
                f.prefilled = f.cached = pos[f] = start
            n = min(end, shared) - start
            out.append((f, n))
            # Tokens another request computes for it count as cached, as with a copy.
            f.cached += n
            self.cache_hit_tokens += n
            pos[f] = start + n
            rides[f] = shared
        return tuple(out)

    def _batch_joining(self) -> bool:
        """Whether this plan admits a sequence that will run beside others (a lone newcomer to an
        idle engine does not: its cells stay where a run alone puts them)."""
        if not self.waiting or len(self.running) >= self.max_seqs:
            return False
        return len(self.running) + min(len(self.waiting), self.max_seqs - len(self.running)) > 1

    def _admit(self, copies: list[tuple[int, int, int]]) -> list[Sequence]:
        out = []
        while self.waiting and len(self.running) < self.max_seqs:
            head = self.waiting[0]
            # Make room: resident entries leave (parked, or dropped without a host tier), except
            # those this plan copies from (their cells must still be there when the copy runs).
            while (spare := self._resident(but=copies)) and (
                    self.reserved + self.cached_cells + head.reserve > self.kv_capacity or not self._free_ids):
                self._retire(_lru(spare))
            if self.reserved + self.cached_cells + head.reserve > self.kv_capacity or not self._free_ids:
                break  # FIFO: never let a later, smaller request overtake the head
            if self.running and (head.isolated or any(r.isolated for r in self.running)):
                break  # an isolated sequence runs with the engine to itself (FIFO still holds)
            self.waiting.popleft()
            head.seq_id = self._free_ids.pop()
            self.reserved += head.reserve
            self.running.append(head)
            out.append(head)
            if head.reuse:
                self._reuse_prefix(head, copies)
        return out

    # ------------------------------------------------------------------ prefix cache

    def _reuse_prefix(self, seq: Sequence, copies: list[tuple[int, int, int]]) -> None:
        best: CacheEntry | None = None
        best_n = 0
        for e in self.cache:
            if e.key == seq.cache_key:
                n = _common_prefix(e.tokens, seq.prompt)
                if n > best_n or (n == best_n and best is not None and best.parked and not e.parked):
                    best, best_n = e, n
        best_n = min(best_n, len(seq.prompt) - 1)  # the last prompt token must run: its logits
        if best is None or best_n <= 0:
            return
        if best.parked:
            # An earlier running sequence that already holds this prefix (restored or computed)
            # shares its cells instead: no second copy of the same prefix in the KV cache.
            for r in self.running:
                if r is seq:
                    break
                ready = min(_common_prefix(r.prompt, seq.prompt), r.prefilled, len(seq.prompt) - 1)
                if r.cache_key == seq.cache_key and ready >= best_n:
                    self._tick += 1
                    best.last_used, best.used_step = self._tick, self._steps
                    copies.append((r.seq_id, seq.seq_id, ready))
                    seq.prefilled = seq.cached = ready
                    self.cache_hit_tokens += ready
                    return
            # The restore writes the whole entry before trimming it: its cells must be free then.
            if len(best.tokens) > self.kv_capacity - (self.reserved - seq.reserve) - self.cached_cells:
                return
            self._restores.append((best.ref, seq.seq_id, best_n))
        else:
            copies.append((best.seq_id, seq.seq_id, best_n))
        self._tick += 1
        best.last_used, best.used_step = self._tick, self._steps
        seq.prefilled = seq.cached = best_n
        self.cache_hit_tokens += best_n

    def _follow(self, seq: Sequence, copies: list[tuple[int, int, int]]) -> bool:
        """Share what earlier running sequences of the same tenant already computed of this prompt
        (the n>1 choices of one request, or a burst of requests with one system prompt). Returns
        True while an earlier sequence is still prefilling a longer shared part: wait for it."""
        cap = len(seq.prompt) - 1
        best: Sequence | None = None
        best_n = seq.prefilled
        wait = False
        for r in self.running:
            if r is seq:
                break  # only earlier sequences lead: two newcomers never wait on each other
            if r.cache_key != seq.cache_key:
                continue
            shared = min(_common_prefix(r.prompt, seq.prompt), cap)
            ready = min(shared, r.prefilled)
            if ready > best_n:
                best, best_n = r, ready
            # Waiting costs this sequence a step or more: worth it only when the leader will compute
            # a real part of this prompt that this sequence has not got yet.
            wait = wait or (shared > r.prefilled and shared - seq.prefilled >= _MIN_SHARED_WAIT)
        if best is not None and not wait:  # one copy, once the leader has computed all of it
            copies.append((best.seq_id, seq.seq_id, best_n))
            self.cache_hit_tokens += best_n - seq.prefilled
            seq.prefilled = seq.cached = best_n
        return wait

    def _keep(self, seq: Sequence, sid: int) -> None:
        """Turn a finished sequence's slot into a cache entry: resident, parked, or none."""
        tokens = seq.prompt + tuple(seq.history[:-1])
        host = self.host_cache_tokens > 0
        too_long = host and len(tokens) > self.host_cache_tokens
        if (self.max_cached <= 0 and not host) or len(tokens) == 0 or too_long:
            self._release_slot(sid)
            return
        for e in list(self.cache):
            if e.key != seq.cache_key:
                continue
            if _common_prefix(e.tokens, tokens) == len(e.tokens):  # covered by the new entry
                self._evict(e)
            elif _common_prefix(e.tokens, tokens) == len(tokens):  # the new one adds nothing
                self._tick += 1
                e.last_used = self._tick
                self._release_slot(sid)
                return
        self._tick += 1
        self.cache.append(CacheEntry(sid, seq.cache_key, tokens, self._tick, used_step=self._steps))
        while len(resident := self._resident()) > self.max_cached:
            self._retire(_lru(resident))

    def _resident(self, but: Iterable[tuple[int, int, int]] = ()) -> list[CacheEntry]:
        """Cache entries whose cells are in the KV cache, except sources of the given copies."""
        busy = {src for src, _, _ in but}
        return [e for e in self.cache if not e.parked and e.seq_id not in busy]

    def _retire(self, e: CacheEntry) -> None:
        """A resident entry leaves the KV cache: to host memory if there is a host tier."""
        if self.host_cache_tokens > 0:
            self._park(e)
        else:
            self._evict(e)

    def _park(self, e: CacheEntry) -> None:
        ref, self._next_ref = self._next_ref, self._next_ref + 1
        # The park saves the slot's cells, then clears it (not through drops: take_drops may clear
        # slots before the next plan, and these cells must be saved first).
        self._parks.append((e.seq_id, ref))
        self._free_ids.append(e.seq_id)
        e.seq_id, e.ref = -1, ref
        while self.parked_tokens > self.host_cache_tokens or len(self.cache) > self.max_parked:
            self._evict(_lru([x for x in self.cache if x.parked]))  # e itself at least is parked

    def _release_slot(self, sid: int) -> None:
        self._drops.append(sid)
        self._free_ids.append(sid)

    def _evict(self, e: CacheEntry) -> None:
        self.cache.remove(e)
        if e.parked:
            self._forgets.append(e.ref)
        else:
            self._release_slot(e.seq_id)

    # ------------------------------------------------------------------ results

    def update(self, plan: Plan, sampled: Mapping[Sequence, Sampled]) -> list[Finished]:
        """Apply one decoded step. `sampled` holds a token for every sequence in `plan.sample`
        that is still running (aborted ones may be absent)."""
        for c in plan.chunks:
            if not c.seq.decoding:
                c.seq.prefilled += len(c.tokens)
            for r, n in c.riders:
                r.prefilled += n
        done: list[Finished] = []
        for seq, out in sampled.items():
            if seq.finish is not None:
                continue
            seq.generated += 1
            seq.last_token = out.token
            seq.history.append(out.token)
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
        if reason in (FinishReason.STOP, FinishReason.LENGTH):
            self._keep(seq, sid)
        else:  # aborted or failed: its cells may be incomplete, never cache them
            self._release_slot(sid)
        return Finished(seq, reason, sid)

    def take_drops(self) -> list[int]:
        """Slot ids to clear now (used when no step follows, e.g. at shutdown)."""
        drops, self._drops = self._drops, []
        return drops

    # ------------------------------------------------------------------ introspection

    @property
    def idle(self) -> bool:
        return not self.running and not self.waiting

    @property
    def kv_used(self) -> int:
        """Cells in use: running sequences plus cache entries (shared cells counted once each side)."""
        return sum(s.kv_tokens for s in self.running) + self.cached_cells


_MIN_SHARED_WAIT = 16


def _lru(entries: list[CacheEntry]) -> CacheEntry:
    return min(entries, key=lambda e: e.last_used)


def _common_prefix(a: tuple[int, ...], b: tuple[int, ...]) -> int:
    n = min(len(a), len(b))
    if a[:n] == b[:n]:
        return n
    lo, hi = 0, n  # binary search on slice equality: C-speed compares, O(n log n) worst case
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo
