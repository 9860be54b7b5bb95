"""The usage ledger: every record reaches the database exactly once, also across a crash."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from sqlalchemy import func, select

from hearth.platform.db import make_engine, make_sessionmaker, upgrade
from hearth.platform.db.models import UsageRow
from hearth.platform.usage import SEGMENT_SUFFIX, UsageLedger, UsageRecord, insert_records
from hearth.platform.usage_queries import UsageQuery, aggregate, spend_since


@pytest.fixture
def sessions(tmp_path: Path):  # type: ignore[no-untyped-def]
    url = f"sqlite:///{tmp_path / 'u.db'}"
    upgrade(url)
    engine = make_engine(url)
    yield make_sessionmaker(engine)
    engine.dispose()


def rec(i: int, **kw: object) -> UsageRecord:
    base: dict[str, object] = {"id": f"req_{i}", "created_at": 1_700_000_000 + i, "endpoint": "completions",
                               "model": "m", "project_id": "proj_a", "input_tokens": 10, "output_tokens": 5,
                               "cost_nanousd": 100}
    base.update(kw)
    return UsageRecord(**base)  # type: ignore[arg-type]


def count(sessions) -> int:  # type: ignore[no-untyped-def]
    with sessions() as s:
        return int(s.execute(select(func.count()).select_from(UsageRow)).scalar_one())


def test_records_reach_the_database_once(sessions, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ledger = UsageLedger(sessions, tmp_path / "wal")
    ledger.open()
    for i in range(25):
        ledger.record(rec(i))
    assert count(sessions) == 0  # off the hot path: nothing written yet
    assert ledger.flush() == 25
    assert count(sessions) == 25
    assert insert_records(sessions, [rec(3), rec(99)]) == 1  # idempotent by request id
    ledger.close()
    assert list((tmp_path / "wal").glob(f"*{SEGMENT_SUFFIX}")) == []  # nothing left to replay


def test_a_crashed_process_records_are_replayed(sessions, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    wal = tmp_path / "wal"
    db = tmp_path / "u.db"
    # A real process appends 40 records and dies by SIGKILL before any flush.
    code = textwrap.dedent(f"""
        import os, signal
        from hearth.platform.db import make_engine, make_sessionmaker
        from hearth.platform.usage import UsageLedger, UsageRecord
        ledger = UsageLedger(make_sessionmaker(make_engine("sqlite:///{db}")), __import__("pathlib").Path("{wal}"))
        ledger.open()
        for i in range(40):
            ledger.record(UsageRecord(id=f"k{{i}}", created_at=1, endpoint="completions", model="m"))
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    p = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, timeout=60)
    assert p.returncode == -9, p.stderr.decode()
    assert count(sessions) == 0
    ledger = UsageLedger(sessions, wal)
    assert ledger.open() == 40
    assert count(sessions) == 40
    ledger.close()


def test_a_live_process_segment_is_not_stolen(sessions, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    a = UsageLedger(sessions, tmp_path / "wal")
    a.open()
    a.record(rec(1))
    b = UsageLedger(sessions, tmp_path / "wal")
    assert b.open() == 0  # a's segment is locked: a still owns it
    assert a.flush() == 1
    a.close()
    b.close()
    assert count(sessions) == 1


def test_database_down_keeps_records_for_retry(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'later.db'}"
    engine = make_engine(url)
    sessions = make_sessionmaker(engine)  # not migrated yet: inserts fail
    ledger = UsageLedger(sessions, tmp_path / "wal")
    ledger.open()
    ledger.record(rec(1))
    ledger.record(rec(2))
    assert ledger.flush() == 0
    assert ledger.pending() == 2
    upgrade(url)
    ledger.record(rec(3))
    assert ledger.flush() == 3
    assert ledger.pending() == 0
    ledger.close()
    engine.dispose()


def test_aggregate_buckets_groups_and_filters(sessions) -> None:  # type: ignore[no-untyped-def]
    t0 = 1_700_000_000
    insert_records(sessions, [
        rec(1, created_at=t0, model="a", input_tokens=10, output_tokens=1, cached_tokens=4, cost_nanousd=7),
        rec(2, created_at=t0 + 30, model="b", input_tokens=20, output_tokens=2),
        rec(3, created_at=t0 + 61, model="a", input_tokens=40, output_tokens=4, project_id="proj_b"),
        rec(4, created_at=t0 + 61, model="a", endpoint="embeddings", input_tokens=1000),
    ])
    q = UsageQuery(start=t0, end=t0 + 120, width=60, endpoints=("completions",), group_by=("model",))
    got = [(g.bucket_start, g.keys["model"], g.input_tokens, g.requests) for g in aggregate(sessions, q)]
    assert got == [(t0, "a", 10, 1), (t0, "b", 20, 1), (t0 + 60, "a", 40, 1)]
    q = UsageQuery(start=t0, end=t0 + 120, width=120, endpoints=("completions",), project_ids=("proj_a",))
    (only,) = aggregate(sessions, q)
    assert (only.input_tokens, only.output_tokens, only.cached_tokens, only.requests) == (30, 3, 4, 2)
    assert spend_since(sessions, t0) == 7 + 100 * 3
    assert spend_since(sessions, t0, ["proj_b"]) == 100


def test_fsync_mode_writes_through(sessions, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ledger = UsageLedger(sessions, tmp_path / "wal", fsync=True)
    ledger.open()
    ledger.record(rec(1))
    (seg,) = list((tmp_path / "wal").glob(f"*{SEGMENT_SUFFIX}"))
    assert os.path.getsize(seg) > 0
    ledger.close()
