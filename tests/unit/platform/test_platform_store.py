"""PlatformStore on a SQLite file (WAL). The same cases run on PostgreSQL in
tests/integration/test_platform_postgres.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from platform_store_cases import StoreCases


class TestSqliteStore(StoreCases):
    @pytest.fixture
    def db_url(self, tmp_path: Path) -> str:
        return f"sqlite:///{tmp_path / 'db' / 'platform.db'}"
