"""Alembic migrations shipped in the package, run programmatically, on SQLite files."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text

import hearth.platform.db as db_pkg
from hearth.platform.db import Base, current_revision, head_revision, make_engine, make_sessionmaker, upgrade
from hearth.platform.db.migrate import MIGRATIONS_DIR
from hearth.platform.store import PlatformStore

TABLES = {"organizations", "projects", "service_accounts", "api_keys", "usage_records", "project_rate_limits",
          "spend_limits"}


def _url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'platform.db'}"


def test_migrations_ship_inside_the_package() -> None:
    assert MIGRATIONS_DIR.parent == Path(db_pkg.__file__).resolve().parent
    assert (MIGRATIONS_DIR / "env.py").is_file()
    assert (MIGRATIONS_DIR / "versions" / "0001_initial.py").is_file()
    assert head_revision() == "0002"


def test_upgrade_creates_tables_and_is_idempotent(tmp_path: Path) -> None:
    url = _url(tmp_path)
    upgrade(url)
    engine = make_engine(url)
    try:
        assert TABLES <= set(inspect(engine).get_table_names())
        assert current_revision(engine) == head_revision()
        upgrade(url)  # a no-op
        upgrade(engine)
        assert current_revision(engine) == head_revision()
        indexes = {ix["name"]: ix for ix in inspect(engine).get_indexes("api_keys")}
        assert indexes["ix_api_keys_secret_hash"]["unique"]
    finally:
        engine.dispose()


def test_models_match_the_migrated_schema(tmp_path: Path) -> None:
    url = _url(tmp_path)
    upgrade(url)
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
        assert diff == []
    finally:
        engine.dispose()


def test_upgrade_keeps_existing_data(tmp_path: Path) -> None:
    url = _url(tmp_path)
    upgrade(url, "0001")
    engine = make_engine(url)
    try:
        store = PlatformStore(make_sessionmaker(engine), b"k" * 32)
        admin = store.bootstrap(tmp_path / "admin_key")
        project = store.create_project("keep me")
        key = store.create_project_key(project.id, "k")
        upgrade(url)
        assert admin is not None and store.authenticate(admin) is not None
        assert store.get_project(project.id) == project
        assert store.authenticate(key.secret) is not None
    finally:
        engine.dispose()


def test_sqlite_connections_use_wal_and_foreign_keys(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'nested' / 'dir' / 'x.db'}")
    try:
        with engine.connect() as conn:
            assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
            assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
            assert conn.execute(text("PRAGMA busy_timeout")).scalar() >= 1000
    finally:
        engine.dispose()
