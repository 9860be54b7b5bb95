"""The pure scheduler, driven by a fake step backend: admission, chunked prefill, fairness, KV."""

from __future__ import annotations

import pytest

from hearth.engine.errors import Overloaded
from hearth.engine.scheduler import Plan, Sampled, Scheduler, Sequence
from hearth.engine.types import FinishReason


class FakeStep:
    """Emits token 100+i for every sampled sequence; `stop_at` maps request id -> step of EOG."""

    def __init__(self, stop_at: dict[str, int] | None = None) -> None:
        self.stop_at = stop_at or {}
        self.plans: list[Plan] = []

    def __call__(self, plan: Plan) -> dict[Sequence, Sampled]:
        self.plans.append(plan)
        out = {}
        for s in plan.sample:
            n = s.generated + 1
            out[s] = Sampled(100 + n, stop=self.stop_at.get(s.request_id) == n)
        return out


def seq(rid: str, prompt_len: int = 4, max_tokens: int = 3) -> Sequence:
    base = 1000 * sum(map(ord, rid))  # distinct prompts: no prefix sharing unless a test asks for it
    return Sequence(rid, tuple(range(base, base + prompt_len)), max_tokens)


def run(sched: Scheduler, step: FakeStep, max_steps: int = 1000) -> dict[str, FinishReason]:
    done: dict[str, FinishReason] = {}
    for _ in range(max_steps):
        if sched.idle:
            break
        plan = sched.schedule()
        assert plan.n_tokens <= sched.max_step_tokens
        for f in sched.update(plan, step(plan)):
            done[f.seq.request_id] = f.reason
    return done


def test_single_sequence_prefill_then_decode_to_length() -> None:
    s = Scheduler(max_seqs=4, kv_capacity=100, token_budget=8)
    a = seq("a", prompt_len=5, max_tokens=3)
    s.add(a)
    step = FakeStep()
    assert run(s, step) == {"a": FinishReason.LENGTH}
    first = step.plans[0].chunks[0]
    assert first.tokens == a.prompt and first.pos == 0 and first.logits
    # Then one token per step, fed back at consecutive positions after the prompt.
    assert [(c.tokens, c.pos) for p in step.plans[1:] for c in p.chunks] == [((101,), 5), ((102,), 6)]
    assert a.generated == 3 and s.reserved == 0 and s.kv_used == 0


def test_chunked_prefill_never_stalls_running_streams() -> None:
    s = Scheduler(max_seqs=4, kv_capacity=1000, token_budget=8)
    s.add(seq("short", prompt_len=2, max_tokens=20))
    step = FakeStep()
    s.update(p := s.schedule(), step(p))
    s.add(seq("long", prompt_len=30, max_tokens=2))
    steps_with_short = 0
    while any(x.request_id == "long" and not x.decoding for x in s.running + list(s.waiting)):
        plan = s.schedule()
        ids = [c.seq.request_id for c in plan.chunks]
        assert "short" in ids  # the running stream advances every single step
        assert plan.n_tokens <= 8
        steps_with_short += 1
        s.update(plan, step(plan))
    assert steps_with_short == 5  # 30 prompt tokens at 7 per step (1 slot goes to the decoder)


def test_an_idle_step_finishes_a_prompt_that_fits_in_finish_tokens() -> None:
    s = Scheduler(max_seqs=4, kv_capacity=1000, token_budget=8, finish_tokens=32)
    a = seq("a", prompt_len=30, max_tokens=2)
    b = seq("b", prompt_len=5, max_tokens=2)
    s.add(a)
    s.add(b)
    plan = s.schedule()
    # Nothing decodes: a's whole prompt runs now (one step, one first token), and only a's.
    assert [(c.seq.request_id, len(c.tokens), c.logits) for c in plan.chunks] == [("a", 30, True)]
    s.update(plan, FakeStep()(plan))
    plan = s.schedule()  # a decodes now: b's prompt is back under the normal budget
    assert [(c.seq.request_id, len(c.tokens)) for c in plan.chunks] == [("a", 1), ("b", 5)]


def test_a_prompt_longer_than_finish_tokens_is_chunked_as_usual() -> None:
    s = Scheduler(max_seqs=4, kv_capacity=1000, token_budget=8, finish_tokens=16)
    s.add(seq("a", prompt_len=30, max_tokens=2))
    step = FakeStep()
    assert run(s, step) == {"a": FinishReason.LENGTH}
    assert [len(c.tokens) for c in step.plans[0].chunks] == [8]


def test_finish_tokens_never_grows_a_step_beside_decoding_streams() -> None:
    s = Scheduler(max_seqs=4, kv_capacity=1000, token_budget=8, finish_tokens=64)
    s.add(seq("short", prompt_len=2, max_tokens=20))
    step = FakeStep()
    s.update(p := s.schedule(), step(p))
    s.add(seq("long", prompt_len=30, max_tokens=2))
    plan = s.schedule()
    assert plan.n_tokens == 8 and [c.seq.request_id for c in plan.chunks] == ["short", "long"]


def test_eog_finishes_with_stop_and_frees_the_slot() -> None:
    s = Scheduler(max_seqs=1, kv_capacity=100, token_budget=8)
    s.add(seq("a", max_tokens=50))
    s.add(seq("b", max_tokens=2))
    done = run(s, FakeStep(stop_at={"a": 2}))
    assert done == {"a": FinishReason.STOP, "b": FinishReason.LENGTH}


def test_fifo_admission_head_is_never_overtaken() -> None:
    s = Scheduler(max_seqs=4, kv_capacity=20, token_budget=16)
    s.add(seq("big1", prompt_len=8, max_tokens=4))    # reserves 12
    s.add(seq("big2", prompt_len=8, max_tokens=4))    # does not fit beside big1
    s.add(seq("small", prompt_len=1, max_tokens=1))   # would fit, but must not overtake big2
    plan = s.schedule()
    assert [x.request_id for x in plan.admitted] == ["big1"]
    assert [x.request_id for x in s.waiting] == ["big2", "small"]
    order: list[str] = []
    step = FakeStep()
    while not s.idle:
        plan = s.schedule()
        order += [x.request_id for x in plan.admitted]
        s.update(plan, step(plan))
    assert order == ["big2", "small"]


def test_kv_reservation_is_never_exceeded() -> None:
    s = Scheduler(max_seqs=8, kv_capacity=64, token_budget=16)
    for i in range(20):
        s.add(seq(f"r{i}", prompt_len=3 + i % 5, max_tokens=2 + i % 7))
    step = FakeStep()
    done: dict[str, FinishReason] = {}
    while not s.idle:
        plan = s.schedule()
        assert s.reserved <= 64 and s.kv_used <= s.reserved
        assert len(s.running) <= 8
        assert len({x.seq_id for x in s.running}) == len(s.running)  # no slot shared
        for f in s.update(plan, step(plan)):
            done[f.seq.request_id] = f.reason
    assert len(done) == 20 and s.reserved == 0


def test_abort_running_and_waiting() -> None:
    s = Scheduler(max_seqs=1, kv_capacity=100, token_budget=8)
    a, b = seq("a", max_tokens=50), seq("b")
    s.add(a)
    s.add(b)
    plan = s.schedule()
    s.update(plan, FakeStep()(plan))
    fa = s.abort("a")
    assert fa is not None and fa.reason is FinishReason.ABORT and fa.seq_id == 0
    assert s.reserved == 0 and not s.running
    fb = s.abort("b")
    assert fb is not None and fb.seq_id == -1 and s.idle
    assert s.abort("nope") is None


def test_aborted_between_schedule_and_update_is_ignored() -> None:
    s = Scheduler(max_seqs=2, kv_capacity=100, token_budget=8)
    s.add(seq("a"))
    plan = s.schedule()
    out = FakeStep()(plan)
    s.abort("a")
    assert s.update(plan, out) == []


def test_queue_bound_raises_overloaded() -> None:
    s = Scheduler(max_seqs=1, kv_capacity=100, token_budget=8, max_queue=2)
    s.add(seq("a"))
    s.add(seq("b"))
    with pytest.raises(Overloaded):
        s.add(seq("c"))


def test_sequence_that_can_never_fit_is_refused() -> None:
    s = Scheduler(max_seqs=1, kv_capacity=10, token_budget=8)
    with pytest.raises(ValueError):
        s.add(seq("a", prompt_len=8, max_tokens=8))


# ---------------------------------------------------------------- prefix cache


def finish_one(s: Scheduler, sq: Sequence, step: FakeStep) -> Plan:
    s.add(sq)
    last = s.schedule()
    while not s.idle:
        s.update(last, step(last))
        last = s.schedule()
    return last


def test_finished_prompt_is_reused_by_the_next_request() -> None:
    s = Scheduler(max_seqs=2, kv_capacity=200, token_budget=64, max_cached=4)
    step = FakeStep()
    a = Sequence("a", (1, 2, 3, 4, 5, 6), 2, cache_key="p")
    finish_one(s, a, step)
    assert len(s.cache) == 1 and s.cache[0].tokens == (1, 2, 3, 4, 5, 6, 101)
    b = Sequence("b", (1, 2, 3, 4, 9, 9, 9), 2, cache_key="p")
    s.add(b)
    plan = s.schedule()
    assert plan.copies == ((s.cache[0].seq_id, b.seq_id, 4),)
    assert b.cached == 4 and plan.chunks[0].tokens == (9, 9, 9) and plan.chunks[0].pos == 4
    assert s.cache_hit_tokens == 4


def test_whole_prompt_cached_still_runs_its_last_token() -> None:
    s = Scheduler(max_seqs=2, kv_capacity=200, token_budget=64, max_cached=4)
    finish_one(s, Sequence("a", (1, 2, 3), 2, cache_key="p"), FakeStep())
    b = Sequence("b", (1, 2, 3), 2, cache_key="p")
    s.add(b)
    plan = s.schedule()
    assert b.cached == 2 and plan.chunks[0].tokens == (3,) and plan.chunks[0].logits


def test_other_tenants_and_non_reusing_sequences_get_nothing() -> None:
    s = Scheduler(max_seqs=2, kv_capacity=200, token_budget=64, max_cached=4)
    finish_one(s, Sequence("a", (1, 2, 3, 4), 2, cache_key="p"), FakeStep())
    other = Sequence("b", (1, 2, 3, 4), 2, cache_key="q")
    seeded = Sequence("c", (1, 2, 3, 4), 2, cache_key="p", reuse=False)
    s.add(other)
    s.add(seeded)
    plan = s.schedule()
    assert plan.copies == () and other.cached == 0 and seeded.cached == 0


def test_cache_is_evicted_lru_when_admission_needs_the_cells() -> None:
    s = Scheduler(max_seqs=1, kv_capacity=20, token_budget=16, max_cached=4)
    step = FakeStep()
    finish_one(s, Sequence("a", (1,) * 8, 2, cache_key="x"), step)
    finish_one(s, Sequence("b", (2,) * 8, 2, cache_key="y"), step)
    assert [e.key for e in s.cache] == ["x", "y"] and s.cached_cells == 18
    big = Sequence("c", (3,) * 10, 4, cache_key="z")  # needs 14 cells: both entries must go
    s.add(big)
    plan = s.schedule()
    assert plan.admitted == (big,)
    assert len(plan.drops) == 2 and s.cache == []
    assert s.reserved + s.cached_cells <= s.kv_capacity


def test_aborted_sequences_are_never_cached() -> None:
    s = Scheduler(max_seqs=1, kv_capacity=100, token_budget=16, max_cached=4)
    s.add(Sequence("a", (1, 2, 3), 50, cache_key="p"))
    plan = s.schedule()
    s.update(plan, FakeStep()(plan))
    f = s.abort("a")
    assert f is not None and s.cache == [] and s.take_drops() == [f.seq_id]


def test_an_entry_covered_by_a_longer_one_is_replaced() -> None:
    s = Scheduler(max_seqs=1, kv_capacity=200, token_budget=32, max_cached=4)
    step = FakeStep()
    finish_one(s, Sequence("a", (1, 2, 3), 2, cache_key="p"), step)          # caches 1 2 3 101
    finish_one(s, Sequence("b", (1, 2, 3, 101, 7), 2, cache_key="p"), step)  # extends it
    assert [e.tokens for e in s.cache] == [(1, 2, 3, 101, 7, 101)]


def test_concurrent_requests_with_one_prompt_prefill_it_once() -> None:
    s = Scheduler(max_seqs=4, kv_capacity=500, token_budget=8, max_cached=4)
    prompt = tuple(range(20))
    seqs = [Sequence(f"n{i}", prompt, 2, cache_key="p") for i in range(3)]
    for q in seqs:
        s.add(q)
    step = FakeStep()
    prefill_tokens = 0
    first_sample: dict[str, int] = {}
    n = 0
    while not s.idle:
        plan = s.schedule()
        n += 1
        assert plan.copies == ()  # nothing computed twice, nothing copied: the cells are shared
        prefill_tokens += sum(len(c.tokens) for c in plan.chunks if c.pos < len(c.seq.prompt))
        for q in plan.sample:
            first_sample.setdefault(q.request_id, n)
        s.update(plan, step(plan))
    # The leader prefills 20 tokens with both followers riding on its first 19 positions; each
    # follower runs only its last prompt token, in the same step as the leader's last chunk.
    assert prefill_tokens == 20 + 1 + 1
    assert first_sample == {"n0": 3, "n1": 3, "n2": 3}
    assert all(q.cached == 19 for q in seqs[1:]) and seqs[0].cached == 0
    assert s.cache_hit_tokens == 38


def test_a_burst_with_one_system_prompt_prefills_it_jointly() -> None:
    s = Scheduler(max_seqs=4, kv_capacity=500, token_budget=128, max_cached=4)
    system = tuple(range(30))
    a = Sequence("a", system + (1000, 1001), 2, cache_key="p")
    b = Sequence("b", system + (2000, 2001, 2002), 2, cache_key="p")
    c = Sequence("c", system + (3000,), 2, cache_key="q")  # another tenant: never shares
    for q in (a, b, c):
        s.add(q)
    plan = s.schedule()
    lead = next(ch for ch in plan.chunks if ch.seq is a)
    assert lead.tokens == a.prompt and [(r.request_id, k) for r, k in lead.riders] == [("b", 30)]
    own = next(ch for ch in plan.chunks if ch.seq is b)
    assert own.pos == 30 and own.tokens == (2000, 2001, 2002) and own.logits
    other = next(ch for ch in plan.chunks if ch.seq is c)
    assert other.tokens == c.prompt and other.riders == ()
    assert plan.n_tokens == 32 + 3 + 31 and set(plan.sample) == {a, b, c}
    s.update(plan, FakeStep()(plan))
    assert (a.prefilled, b.prefilled, b.cached, a.cached) == (32, 33, 30, 0)
    assert a.kv_tokens == 32 and b.kv_tokens == 33


def test_a_rider_keeps_riding_when_the_shared_prefix_spans_several_steps() -> None:
    s = Scheduler(max_seqs=2, kv_capacity=500, token_budget=8, max_cached=4)
    system = tuple(range(20))
    a = Sequence("a", system + (1000,), 2, cache_key="p")
    b = Sequence("b", system + (2000,), 2, cache_key="p")
    s.add(a)
    s.add(b)
    rides = []
    while not b.decoding:
        plan = s.schedule()
        for ch in plan.chunks:
            rides += [(ch.pos, k) for r, k in ch.riders if r is b]
            assert ch.seq is not b or ch.pos == 20  # b computes nothing of the shared prefix itself
        s.update(plan, FakeStep()(plan))
    assert rides == [(0, 8), (8, 8), (16, 4)] and b.cached == 20


def test_a_newcomer_with_a_cached_prefix_rides_instead_of_waiting() -> None:
    s = Scheduler(max_seqs=4, kv_capacity=500, token_budget=64, max_cached=4)
    system = tuple(range(24))
    finish_one(s, Sequence("w", system + (7,), 1, cache_key="p"), FakeStep())  # caches the prefix
    a = Sequence("a", system + (1, 2, 3), 2, cache_key="p")
    b = Sequence("b", system + (1, 2, 4), 2, cache_key="p")
    s.add(a)
    s.add(b)
    plan = s.schedule()
    # Both start from the cached 24 tokens; b shares a's next two tokens by riding, no waiting.
    assert a.cached == 24 and {ch.seq for ch in plan.chunks} == {a, b}
    lead = next(ch for ch in plan.chunks if ch.seq is a)
    assert [(r.request_id, k) for r, k in lead.riders] == [("b", 2)]
    assert set(plan.sample) == {a, b}


def test_followers_of_another_tenant_do_not_wait() -> None:
    s = Scheduler(max_seqs=4, kv_capacity=500, token_budget=64, max_cached=4)
    a = Sequence("a", tuple(range(20)), 2, cache_key="p")
    b = Sequence("b", tuple(range(20)), 2, cache_key="q")
    s.add(a)
    s.add(b)
    plan = s.schedule()
    assert {c.seq.request_id for c in plan.chunks} == {"a", "b"} and plan.copies == ()


def test_isolated_sequences_run_with_the_engine_to_themselves() -> None:
    s = Scheduler(max_seqs=4, kv_capacity=1000, token_budget=8)
    a, b, c = seq("a", max_tokens=3), seq("b", prompt_len=12, max_tokens=2), seq("c", max_tokens=2)
    b.isolated = True
    for x in (a, b, c):
        s.add(x)
    step = FakeStep()
    assert run(s, step) == {"a": FinishReason.LENGTH, "b": FinishReason.LENGTH, "c": FinishReason.LENGTH}
    alone = [p for p in step.plans if any(ch.seq is b for ch in p.chunks)]
    # b never shares a step, and waits for a (FIFO) while c waits behind b: no overtaking.
    assert alone and all({ch.seq.request_id for ch in p.chunks} == {"b"} for p in alone)
    first_b = step.plans.index(alone[0])
    assert all(ch.seq is a for p in step.plans[:first_b] for ch in p.chunks)
    assert all(ch.seq is c for p in step.plans[step.plans.index(alone[-1]) + 1:] for ch in p.chunks)
    # Its prompt is prefilled in chunks of the full budget, as if it ran alone.
    assert [len(ch.tokens) for p in alone for ch in p.chunks][:2] == [8, 4]
