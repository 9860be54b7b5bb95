"""Alembic environment. ``hearth.platform.db.migrate`` passes an open connection (already inside
a transaction) through ``config.attributes["connection"]``; a URL in ``sqlalchemy.url`` is the
fallback for the plain ``alembic`` command line."""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from hearth.platform.db.engine import make_engine
from hearth.platform.db.models import Base

config = context.config
target_metadata = Base.metadata


def run_migrations(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite cannot ALTER most things
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_offline() -> None:
    context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=target_metadata,
                      literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_offline()
elif (conn := config.attributes.get("connection")) is not None:
    run_migrations(conn)
else:
    engine = make_engine(config.get_main_option("sqlalchemy.url") or "")
    try:
        with engine.begin() as conn:
            run_migrations(conn)
    finally:
        engine.dispose()
