"""Database access for the platform: models, engines, sessions and migrations.

Synchronous SQLAlchemy; async callers run it in a thread pool (see ``engine.py``).
"""

from hearth.platform.db.engine import make_engine, make_sessionmaker
from hearth.platform.db.migrate import current_revision, head_revision, upgrade
from hearth.platform.db.models import ApiKey, Base, Organization, Project, ServiceAccount

__all__ = [
    "ApiKey",
    "Base",
    "Organization",
    "Project",
    "ServiceAccount",
    "current_revision",
    "head_revision",
    "make_engine",
    "make_sessionmaker",
    "upgrade",
]
