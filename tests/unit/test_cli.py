from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from hearth.cli import app, is_loopback

runner = CliRunner()


@pytest.mark.parametrize(("host", "ok"), [("127.0.0.1", True), ("localhost", True), ("::1", True),
                                          ("0.0.0.0", False), ("192.0.2.1", False)])
def test_is_loopback(host: str, ok: bool) -> None:
    assert is_loopback(host) is ok


def test_serve_refuses_public_bind_without_auth(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("HEARTH_API_KEY", raising=False)
    monkeypatch.setenv("HEARTH_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("HEARTH_AUTH", "false")
    r = runner.invoke(app, ["serve", "--host", "0.0.0.0", "--port", "1"])
    assert r.exit_code == 2
    assert "HEARTH_AUTH" in r.output and "refusing" in r.output


def test_bad_config_file_is_a_clear_error(tmp_path: Path) -> None:
    cfg = tmp_path / "h.toml"
    cfg.write_text("port = 'not a port'\n")
    r = runner.invoke(app, ["models", "list", "--config", str(cfg)])
    assert r.exit_code == 2 and "invalid configuration" in r.output


def test_models_list_and_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HEARTH_DATA_DIR", str(tmp_path))
    r = runner.invoke(app, ["models", "list"], env={"COLUMNS": "200"})
    assert r.exit_code == 0
    assert "smollm2-135m-instruct" in r.output and "qwen2.5-coder-0.5b-instruct" in r.output
    r = runner.invoke(app, ["models", "path", "smollm2-135m-instruct"], env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    assert r.output.strip().splitlines()[-1].endswith("SmolLM2-135M-Instruct.Q4_1.gguf")
    r = runner.invoke(app, ["models", "path", "no-such-model"])
    assert r.exit_code == 2 and "unknown model" in r.output
