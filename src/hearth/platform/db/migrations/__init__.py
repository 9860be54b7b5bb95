"""Alembic environment for the platform tables; run through ``hearth.platform.db.migrate``."""
