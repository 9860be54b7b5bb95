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
    return Sequence(rid, tuple(range(prompt_len)), max_tokens)


def run(sched: Scheduler, step: FakeStep, max_steps: int = 1000) -> dict[str, FinishReason]:
    done: dict[str, FinishReason] = {}
    for _ in range(max_steps):
        if sched.idle:
            break
        plan = sched.schedule()
        assert plan.n_tokens <= sched.token_budget
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
    assert first.tokens == (0, 1, 2, 3, 4) and first.pos == 0 and first.logits
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
