"""The PlatformStore cases and the migrations against a real PostgreSQL on 127.0.0.1:5432.

Each test gets a fresh schema (selected through ``search_path``) that is dropped afterwards.
Skipped, with the reason, only when no server answers as user ``postgres`` or ``root``.
"""

from __future__ import annotations

import secrets
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, text

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit" / "platform"))
from platform_store_cases import StoreCases

from hearth.platform.db import current_revision, head_revision, make_engine, upgrade

HOST = "127.0.0.1:5432"
DATABASE = "test"
USERS = ("postgres", "root")


def _server_url() -> str:
    pytest.importorskip("psycopg", reason="psycopg is not installed")
    errors = []
    for user in USERS:
        url = f"postgresql+psycopg://{user}@{HOST}/{DATABASE}"
        engine = create_engine(url, connect_args={"connect_timeout": 3})
        try:
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            return url
        except Exception as e:  # noqa: BLE001 - any failure means "try the next user"
            errors.append(f"{user}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
        finally:
            engine.dispose()
    pytest.skip(f"PostgreSQL unreachable at {HOST}/{DATABASE} ({'; '.join(errors)})")


@pytest.fixture(scope="module")
def server_url() -> str:
    return _server_url()


@pytest.fixture
def db_url(server_url: str) -> Iterator[str]:
    schema = f"hearth_test_{secrets.token_hex(6)}"
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        yield f"{server_url}?options=-csearch_path%3D{schema}"
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    finally:
        admin.dispose()


class TestPostgresStore(StoreCases):
    """Every store case, on PostgreSQL (the ``db_url`` fixture above)."""


def test_postgres_upgrade_creates_tables_and_is_idempotent(db_url: str) -> None:
    upgrade(db_url)
    upgrade(db_url)
    engine = make_engine(db_url)
    try:
        names = set(inspect(engine).get_table_names())
        assert {"organizations", "projects", "service_accounts", "api_keys", "alembic_version"} <= names
        assert current_revision(engine) == head_revision()
    finally:
        engine.dispose()


def test_postgres_usage_ledger_queries_and_policies(db_url: str, tmp_path: Path) -> None:
    """The ledger's idempotent inserts, the bucketed GROUP BY and the policy tables on PostgreSQL."""
    from hearth.platform.db import make_sessionmaker
    from hearth.platform.keys import load_or_create_server_secret
    from hearth.platform.policies import PolicyStore
    from hearth.platform.store import PlatformStore
    from hearth.platform.usage import UsageLedger, UsageRecord, insert_records
    from hearth.platform.usage_queries import UsageQuery, aggregate, spend_since

    upgrade(db_url)
    engine = make_engine(db_url)
    try:
        sessions = make_sessionmaker(engine)
        store = PlatformStore(sessions, load_or_create_server_secret(tmp_path / "secret"))
        store.bootstrap(tmp_path / "admin-key.txt")
        project = store.organization().default_project_id
        t0 = 1_700_000_000
        ledger = UsageLedger(sessions, tmp_path / "wal")
        ledger.open()
        for i in range(5):
            ledger.record(UsageRecord(id=f"r{i}", created_at=t0 + 40 * i, endpoint="completions",
                                      model="a" if i % 2 else "b", project_id=project, input_tokens=10,
                                      output_tokens=i, cost_nanousd=100))
        assert ledger.flush() == 5
        ledger.close()
        assert insert_records(sessions, [UsageRecord(id="r0", created_at=t0, endpoint="completions", model="b")]) == 0
        q = UsageQuery(start=t0, end=t0 + 240, width=60, endpoints=("completions",), group_by=("model",))
        got = [(g.bucket_start - t0, g.keys["model"], g.requests, g.output_tokens) for g in aggregate(sessions, q)]
        assert got == [(0, "a", 1, 1), (0, "b", 1, 0), (60, "b", 1, 2), (120, "a", 1, 3), (120, "b", 1, 4)]
        assert spend_since(sessions, t0, [project]) == 500
        policies = PolicyStore(sessions)
        policies.set_override(project, "a", {"rpm": 7})
        policies.set_override(project, "a", {"tpm": 9000})
        policies.set_spend_limit(project, 5_000_000_000, project=True)
        snap = policies.snapshot()
        o = snap.overrides[(project, "a")]
        assert (o.rpm, o.tpm, o.rpd) == (7, 9000, None)
        assert snap.spend_limits == {project: 5_000_000_000}
    finally:
        engine.dispose()
