"""Run the platform's Alembic migrations programmatically; no ``alembic.ini`` is needed.

The migration scripts ship inside the package (``hearth/platform/db/migrations``) and are located
at runtime from this module's own path, so they work from a source checkout, an editable install
and a wheel alike.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine
from sqlalchemy.engine import URL

from hearth.platform.db.engine import WRITE, make_engine

MIGRATIONS_DIR = Path(__file__).resolve().with_name("migrations")
_PG_LOCK_ID = 0x6865617274680001  # "hearth" + 1: serializes concurrent upgrades on PostgreSQL


def alembic_config(url: str | URL | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url is not None:
        # ConfigParser interpolation: a literal % in a password must be doubled.
        rendered = url if isinstance(url, str) else url.render_as_string(hide_password=False)
        cfg.set_main_option("sqlalchemy.url", rendered.replace("%", "%%"))
    return cfg


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(url: str | URL | Engine, revision: str = "head") -> None:
    """Bring the database to ``revision`` (default: the newest). A no-op when already there.

    All steps run in one transaction (SQLite and PostgreSQL both have transactional DDL), taken with
    a write lock up front, so concurrent starts apply each migration once.
    """
    engine = url if isinstance(url, Engine) else make_engine(url)
    try:
        with engine.connect().execution_options(**{WRITE: True}) as conn, conn.begin():
            if conn.dialect.name == "postgresql":
                conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_LOCK_ID})")
            cfg = alembic_config()
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)
    finally:
        if engine is not url:
            engine.dispose()
