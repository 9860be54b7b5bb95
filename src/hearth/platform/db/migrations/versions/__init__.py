"""Alembic revisions, applied in order by ``hearth.platform.db.migrate.upgrade``."""
