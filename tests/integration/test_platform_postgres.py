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
