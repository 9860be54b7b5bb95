"""The prefix cache's host tier: idle prefixes leave the KV cache and come back on reuse.

`KVSim` applies every plan the way the llama.cpp backend does (parks, drops, forgets, restores,
copies, then the chunks) to a model of the KV cache: what each slot holds, position by position,
and what each parked entry saved. Before a chunk runs, its sequence's slot must hold exactly its
own tokens up to the chunk's position; a wrong restore, a park after its slot was cleared, or a
copy from the wrong place fails there.
"""

from __future__ import annotations

import random

import pytest

from hearth.engine.scheduler import Plan, Sampled, Scheduler, Sequence


class KVSim:
    def __init__(self, stop_at: dict[str, int] | None = None) -> None:
        self.slots: dict[int, list[int]] = {}
        self.parked: dict[int, list[int]] = {}
        self.stop_at = stop_at or {}
        self.restored = 0
        self.plans: list[Plan] = []

    def __call__(self, plan: Plan, sched: Scheduler) -> dict[Sequence, Sampled]:
        self.plans.append(plan)
        for sid, ref in plan.parks:
            assert self.slots.get(sid), "a park must find the finished sequence's cells"
            self.parked[ref] = self.slots.pop(sid)
        for sid in plan.drops:
            self.slots.pop(sid, None)
        for ref in plan.forgets:
            del self.parked[ref]
        for ref, dst, n in plan.restores:
            assert len(self.parked[ref]) >= n
            self.slots[dst] = list(self.parked[ref][:n])
            self.restored += n
        for src, dst, n in plan.copies:
            self.slots[dst] = list(self.slots[src][:n]) + self.slots.get(dst, [])[n:]
        for c in plan.chunks:
            truth = c.seq.prompt + tuple(c.seq.history)
            held = self.slots.setdefault(c.seq.seq_id, [])
            assert held == list(truth[:c.pos]), f"{c.seq.request_id}: wrong cells before position {c.pos}"
            held.extend(c.tokens)
            for r, n in c.riders:
                rh = self.slots.setdefault(r.seq_id, [])
                assert rh == list(r.prompt[:c.pos])
                rh.extend(c.tokens[:n])
        # The KV cache holds running sequences and resident entries only: the rest is parked.
        live = {s.seq_id for s in sched.running} | {e.seq_id for e in sched.cache if not e.parked}
        assert all(not cells for sid, cells in self.slots.items() if sid not in live)
        assert len([e for e in sched.cache if not e.parked]) <= sched.max_cached
        out = {}
        for s in plan.sample:
            n = s.generated + 1
            out[s] = Sampled(7000 + n, stop=self.stop_at.get(s.request_id) == n)
        return out


def drive(s: Scheduler, kv: KVSim, max_steps: int = 10_000) -> None:
    for _ in range(max_steps):
        if s.idle:
            return
        plan = s.schedule()
        s.update(plan, kv(plan, s))
    raise AssertionError("did not finish")


def host(**kw: int) -> Scheduler:
    args = {"max_seqs": 4, "kv_capacity": 400, "token_budget": 32, "host_cache_tokens": 1000}
    args.update(kw)
    return Scheduler(**args)


def test_a_finished_prompt_is_parked_and_frees_its_cells() -> None:
    s = host()
    kv = KVSim()
    a = Sequence("a", (1, 2, 3, 4, 5, 6), 3, cache_key="p")
    s.add(a)
    drive(s, kv)
    plan = s.schedule()  # the next plan carries the park
    assert len(plan.parks) == 1 and plan.drops == ()
    kv(plan, s)
    assert kv.parked[plan.parks[0][1]] == [1, 2, 3, 4, 5, 6, 7001, 7002]
    assert s.cached_cells == 0 and s.kv_used == 0 and s.parked_tokens == 8
    assert [e.parked for e in s.cache] == [True]


def test_a_parked_prefix_is_restored_into_the_new_slot_and_counted_as_cached() -> None:
    s = host()
    kv = KVSim()
    s.add(Sequence("a", (1, 2, 3, 4, 5, 6), 2, cache_key="p"))
    drive(s, kv)
    b = Sequence("b", (1, 2, 3, 4, 9, 9, 9), 2, cache_key="p")
    s.add(b)
    plan = s.schedule()
    ref = s.cache[0].ref
    assert plan.restores == ((ref, b.seq_id, 4),) and plan.copies == ()
    assert b.cached == 4 and plan.chunks[0].tokens == (9, 9, 9) and plan.chunks[0].pos == 4
    s.update(plan, kv(plan, s))
    drive(s, kv)
    assert kv.restored == 4 and s.cache_hit_tokens == 4


def test_other_tenants_never_get_a_parked_prefix() -> None:
    s = host()
    kv = KVSim()
    s.add(Sequence("a", (1, 2, 3, 4, 5), 2, cache_key="p"))
    drive(s, kv)
    other = Sequence("b", (1, 2, 3, 4, 5), 2, cache_key="q")
    s.add(other)
    plan = s.schedule()
    assert plan.restores == () and other.cached == 0


def test_parked_entries_are_evicted_lru_beyond_the_host_budget() -> None:
    s = host(host_cache_tokens=20)
    kv = KVSim()
    for i, rid in enumerate("abc"):
        s.add(Sequence(rid, tuple(range(100 * (i + 1), 100 * (i + 1) + 8)), 2, cache_key="p"))
        drive(s, kv)
    plan = s.schedule()
    kv(plan, s)
    # Three entries of 9 tokens do not fit in 20: the oldest went, and its saved cells with it.
    assert [e.tokens[0] for e in s.cache] == [200, 300] and s.parked_tokens == 18
    assert len(kv.parked) == 2


def test_concurrent_hits_restore_once_and_share_the_cells() -> None:
    s = host()
    kv = KVSim()
    system = tuple(range(1, 21))
    s.add(Sequence("a", system + (50,), 2, cache_key="p"))
    drive(s, kv)
    b = Sequence("b", system + (60, 61), 2, cache_key="p")
    c = Sequence("c", system + (70, 71), 2, cache_key="p")
    s.add(b)
    s.add(c)
    plan = s.schedule()
    assert plan.restores == ((s.cache[0].ref, b.seq_id, 20),)
    assert plan.copies == ((b.seq_id, c.seq_id, 20),)  # the second shares the first's cells
    assert b.cached == c.cached == 20
    s.update(plan, kv(plan, s))
    drive(s, kv)


def test_no_restore_when_the_whole_entry_would_not_fit_in_the_free_cells() -> None:
    s = host(kv_capacity=60, max_seqs=2)
    kv = KVSim()
    long = tuple(range(1, 41))
    s.add(Sequence("a", long, 2, cache_key="p"))  # parks 41 tokens
    drive(s, kv)
    running = Sequence("r", tuple(range(500, 510)), 10, cache_key="q")  # reserves 20 cells
    s.add(running)
    s.update(p := s.schedule(), kv(p, s))
    b = Sequence("b", long[:5] + (99,), 2, cache_key="p")  # matches 5: restoring writes all 41
    s.add(b)
    plan = s.schedule()
    assert b in plan.admitted and plan.restores == () and b.cached == 0
    s.update(plan, kv(plan, s))
    drive(s, kv)


def test_stale_resident_entries_move_to_host_one_per_step_while_others_run() -> None:
    s = host(max_cached=4, max_seqs=5, token_budget=64, park_after=3)
    kv = KVSim()
    s.add(Sequence("long", tuple(range(900, 905)), 30, cache_key="q"))
    s.add(Sequence("long2", tuple(range(950, 955)), 30, cache_key="q"))
    for i in range(3):
        s.add(Sequence(f"s{i}", tuple(range(100 * (i + 1), 100 * (i + 1) + 6)), 2, cache_key="p"))
    parks_per_plan = []
    for _ in range(10):
        plan = s.schedule()
        parks_per_plan.append(len(plan.parks))
        s.update(plan, kv(plan, s))
    # The three short ones finish together after step 2 and stay resident (a reuse now would be a
    # cheap copy); once unused for 3 steps while the long ones run they leave, one a step.
    assert parks_per_plan == [0, 0, 0, 0, 1, 1, 1, 0, 0, 0]
    assert s.cached_cells == 0 and s.parked_tokens == 3 * 7


def test_a_wave_joining_a_batch_moves_every_idle_entry_out_first() -> None:
    # After a wave, its entries hold the low cells. The next wave must not be placed above them
    # (every step of it would scan them) nor in the holes between them: they all leave in the plan
    # that admits it, and the shared prefix comes back into the first newcomer's own slot.
    s = host(max_cached=4, max_seqs=3, token_budget=64)
    kv = KVSim()
    system = (1, 2, 3, 4, 5)
    for i in range(3):
        s.add(Sequence(f"w1-{i}", system + (100 + i, 101 + i), 3, cache_key="p"))
    drive(s, kv)
    assert [e.parked for e in s.cache] == [False, False, False]
    wave = [Sequence(f"w2-{i}", system + (200 + i,), 3, cache_key="p") for i in range(3)]
    for q in wave:
        s.add(q)
    plan = s.schedule()
    assert set(plan.admitted) == set(wave)
    assert len(plan.parks) == 3 and all(e.parked for e in s.cache)
    assert len(plan.restores) == 1 and plan.restores[0][1] == wave[0].seq_id
    assert {dst for _, dst, _ in plan.copies} == {wave[1].seq_id, wave[2].seq_id}
    assert all(q.cached == len(system) for q in wave)
    s.update(plan, kv(plan, s))
    drive(s, kv)


def test_a_lone_sequence_never_sees_cells_freed_under_it() -> None:
    s = host(max_cached=4, park_after=1)
    kv = KVSim()
    s.add(Sequence("a", (1, 2, 3, 4), 1, cache_key="p"))
    drive(s, kv)
    s.add(Sequence("alone", (7, 8, 9), 20, cache_key="p"))
    while not s.idle:
        plan = s.schedule()
        assert plan.parks == ()  # a's entry stays put: alone's output repeats exactly
        s.update(plan, kv(plan, s))


def test_an_idle_engine_parks_nothing() -> None:
    s = host(max_cached=4, park_after=2)
    kv = KVSim()
    s.add(Sequence("a", (1, 2, 3, 4, 5, 6), 2, cache_key="p"))
    drive(s, kv)
    for _ in range(5):
        kv(plan := s.schedule(), s)
        assert plan.parks == ()  # nothing runs: idle cells cost no step
    b = Sequence("b", (1, 2, 3, 4, 9), 3, cache_key="p")
    s.add(b)
    plan = s.schedule()
    assert plan.copies == ((s.cache[0].seq_id, b.seq_id, 4),) and plan.restores == ()


def test_an_entry_is_never_parked_in_the_plan_that_copies_from_it() -> None:
    s = host(max_cached=2, max_seqs=2, kv_capacity=30, token_budget=16)
    kv = KVSim()
    s.add(Sequence("r", tuple(range(500, 504)), 12, cache_key="q"))  # keeps the engine busy
    s.update(p := s.schedule(), kv(p, s))
    s.add(Sequence("a", (1, 2, 3, 4, 5, 6), 1, cache_key="p"))
    while any(x.request_id == "a" for x in s.running + list(s.waiting)):
        s.update(p := s.schedule(), kv(p, s))
    assert [e.parked for e in s.cache] == [False]  # resident, not yet moved out
    b = Sequence("b", (1, 2, 3, 4, 9), 2, cache_key="p")  # room is tight
    s.add(b)
    plan = s.schedule()
    # b joins r's batch, so the entry leaves before admission and b gets its prefix written back;
    # whatever the plan copies from, it never parks in the same plan.
    sources = {src for src, _, _ in plan.copies}
    assert not sources & {sid for sid, _ in plan.parks}
    assert b.cached == 4 and len(plan.restores) == 1
    s.update(plan, kv(plan, s))
    drive(s, kv)


@pytest.mark.parametrize("resident", [0, 3])
@pytest.mark.parametrize("seed", range(6))
def test_random_load_keeps_every_sequence_on_its_own_tokens(seed: int, resident: int) -> None:
    rng = random.Random(seed)
    s = host(max_seqs=6, kv_capacity=600, token_budget=24, host_cache_tokens=300, max_cached=resident)
    stops: dict[str, int] = {}
    kv = KVSim(stops)
    systems = {k: tuple(rng.randrange(10, 500) for _ in range(rng.randrange(5, 40))) for k in "pq"}
    made = 0
    for _ in range(60):
        for _ in range(rng.randrange(0, 3)):
            key = rng.choice("pq")
            rid = f"r{made}"
            made += 1
            tail = tuple(rng.randrange(10, 500) for _ in range(rng.randrange(1, 12)))
            if rng.random() < 0.3 and s.cache:  # a follow-up turn of an earlier conversation
                e = rng.choice(s.cache)
                prompt = e.tokens + tail if e.key == key else systems[key] + tail
            else:
                prompt = systems[key] + tail
            if rng.random() < 0.3:
                stops[rid] = rng.randrange(1, 5)
            if len(prompt) + 8 <= s.kv_capacity:
                s.add(Sequence(rid, prompt, rng.randrange(1, 8), cache_key=key))
        for _ in range(rng.randrange(1, 6)):
            if s.idle:
                break
            plan = s.schedule()
            s.update(plan, kv(plan, s))
    drive(s, kv)
    kv(s.schedule(), s)  # the last parks and forgets ride on the next plan
    assert kv.restored > 0 and s.cache_hit_tokens >= kv.restored
    assert s.parked_tokens <= 300 and set(kv.parked) == {e.ref for e in s.cache if e.parked}
