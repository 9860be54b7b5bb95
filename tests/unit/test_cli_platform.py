"""`hearth keys|projects|migrate` against a real SQLite database in a temp data dir."""

from __future__ import annotations

import re
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hearth.cli import app

runner = CliRunner()


@pytest.fixture
def data_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv("HEARTH_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("HEARTH_DATABASE_URL", raising=False)
    return tmp_path


def test_keys_lifecycle_from_the_shell(data_dir: Path) -> None:
    assert runner.invoke(app, ["migrate"]).exit_code == 0
    admin_file = data_dir / "admin-key.txt"
    r = runner.invoke(app, ["keys", "list"])
    assert r.exit_code == 0 and stat.S_IMODE(admin_file.stat().st_mode) == 0o600  # bootstrapped, private

    r = runner.invoke(app, ["keys", "create", "--name", "app1"])
    assert r.exit_code == 0, r.output
    secret = re.search(r"sk-proj-[A-Za-z0-9_-]{40,}", r.output)
    assert secret is not None
    listed = runner.invoke(app, ["keys", "list"]).output
    assert "app1" in listed and secret.group(0) not in listed and secret.group(0)[-4:] in listed
    key_id = re.search(r"key_[A-Za-z0-9_-]+", listed)
    assert key_id is not None

    r = runner.invoke(app, ["keys", "rotate", key_id.group(0), "--overlap", "30"])
    assert r.exit_code == 0 and "sk-proj-" in r.output and secret.group(0) not in r.output
    assert runner.invoke(app, ["keys", "revoke", key_id.group(0)]).exit_code == 0
    assert "app1" not in runner.invoke(app, ["keys", "list"]).output
    r = runner.invoke(app, ["keys", "revoke", "key_doesnotexist"])
    assert r.exit_code == 1 and "key_doesnotexist" in r.output


def test_projects_and_admin_keys(data_dir: Path) -> None:
    r = runner.invoke(app, ["projects", "create", "Team A"])
    assert r.exit_code == 0
    pid = r.output.strip()
    assert pid.startswith("proj_")
    assert "Team A" in runner.invoke(app, ["projects", "list"]).output
    r = runner.invoke(app, ["keys", "create", "--project", pid, "--scope", "models", "--name", "m"])
    assert r.exit_code == 0 and "sk-proj-" in r.output
    assert "models" in runner.invoke(app, ["keys", "list", "--project", pid]).output
    assert runner.invoke(app, ["projects", "archive", pid]).exit_code == 0
    assert "Team A" not in runner.invoke(app, ["projects", "list"]).output
    assert "archived" in runner.invoke(app, ["projects", "list", "--all"]).output
    r = runner.invoke(app, ["keys", "create", "--admin", "--name", "ops"])
    assert r.exit_code == 0 and "sk-admin-" in r.output
    assert "ops" in runner.invoke(app, ["keys", "list", "--admin"]).output


def test_usage_table_by_day_model_and_project(data_dir: Path) -> None:
    import time

    from hearth.bootstrap import open_platform
    from hearth.config import Settings
    from hearth.platform.usage import UsageRecord, insert_records

    store = open_platform(Settings(data_dir=data_dir))
    store.bootstrap(data_dir / "admin-key.txt")
    now = int(time.time())
    insert_records(store.sessions, [
        UsageRecord(id="r1", created_at=now, endpoint="completions", model="alpha", project_id="proj_x",
                    input_tokens=1200, output_tokens=34, cost_nanousd=2_500_000),
        UsageRecord(id="r2", created_at=now, endpoint="completions", model="alpha", project_id="proj_x",
                    input_tokens=800, output_tokens=6, cost_nanousd=500_000),
        UsageRecord(id="r3", created_at=now - 86400, endpoint="embeddings", model="beta", project_id="proj_y",
                    input_tokens=5),
    ])
    r = runner.invoke(app, ["usage", "--days", "3"], env={"HEARTH_DATA_DIR": str(data_dir)})
    assert r.exit_code == 0, r.output
    today = time.strftime("%Y-%m-%d", time.gmtime(now))
    line = next(ln for ln in r.output.splitlines() if today in ln and "alpha" in ln)
    assert "proj_x" in line and "2,000" in line and "40" in line and "0.003000" in line
    assert any("beta" in ln and "proj_y" in ln for ln in r.output.splitlines())
    r = runner.invoke(app, ["usage", "--project", "proj_y"], env={"HEARTH_DATA_DIR": str(data_dir)})
    assert "alpha" not in r.output and "beta" in r.output
