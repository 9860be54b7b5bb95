"""Engines and sessions for SQLite (default, one file in the data dir) and PostgreSQL.

The platform uses synchronous SQLAlchemy with short sessions. Async callers (services, the API)
must run store methods in a thread pool (``anyio.to_thread.run_sync`` / ``asyncio.to_thread``) and
must never hold a session across an ``await`` on a stream.

SQLite runs in WAL mode (readers never block the writer) with foreign keys on and a busy timeout.
pysqlite's own implicit transaction handling is switched off and we emit ``BEGIN`` ourselves: plain
reads use ``BEGIN DEFERRED``, and a connection given the ``WRITE`` execution option starts with
``BEGIN IMMEDIATE``, which takes the write lock up front (waiting up to the busy timeout) instead of
failing with "database is locked" when a read transaction later tries to upgrade to a write.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.orm import Session, sessionmaker

log = logging.getLogger(__name__)

WRITE = "hearth_write"  # execution option: this transaction will write
SQLITE_BUSY_TIMEOUT_MS = 30_000


def is_sqlite(url: str | URL) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def make_engine(url: str | URL, *, echo: bool = False) -> Engine:
    """An engine for ``sqlite:///path`` or ``postgresql+psycopg://...``; connects lazily.

    For a SQLite file the parent directory is created if missing. Bound parameters (key hashes
    among them) are kept out of SQL logs and out of error messages, which reach the error log.
    """
    u = make_url(url)
    if u.get_backend_name() != "sqlite":
        return create_engine(u, echo=echo, pool_pre_ping=True, hide_parameters=True)
    if u.database and u.database != ":memory:" and not u.database.startswith("file:"):
        Path(u.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        u,
        echo=echo,
        hide_parameters=True,
        connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "check_same_thread": False},
    )
    event.listen(engine, "connect", _sqlite_on_connect)
    event.listen(engine, "begin", _sqlite_on_begin)
    return engine


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    # We emit BEGIN ourselves (see _sqlite_on_begin); this also stops pysqlite committing before DDL.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")  # first: WAL switch may wait
        mode = cursor.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() not in ("wal", "memory"):
            log.warning("SQLite refused WAL mode (journal_mode=%s)", mode)
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.execute("PRAGMA synchronous = NORMAL")  # durable across crashes in WAL mode
    finally:
        cursor.close()


def _sqlite_on_begin(conn: Connection) -> None:
    immediate = conn.get_execution_options().get(WRITE, False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    """Sessions that keep loaded values after commit (the store converts rows to records anyway)."""
    return sessionmaker(engine, expire_on_commit=False)
