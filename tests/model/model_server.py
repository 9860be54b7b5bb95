"""A real `hearth serve` process for model tests (imported by plain name: tests/ has no packages)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

KEY = "sk-smoke-test-key-000000000000"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve_model(model: str, tmp: Path, data_dir: Path | None = None) -> Iterator[str]:
    """A real `hearth serve` process on a free loopback port; stopped when the generator closes."""
    port = _free_port()
    env = {**os.environ, "HEARTH_API_KEY": KEY, "HEARTH_ENGINE__N_CTX": "4096",
           "HEARTH_ENGINE__N_THREADS": "2", "HEARTH_ENGINE__N_THREADS_BATCH": "2"}
    if data_dir is not None:
        env["HEARTH_DATA_DIR"] = str(data_dir)
    exe = Path(sys.executable).with_name("hearth")
    log_path = tmp / f"serve-{port}.log"
    log = log_path.open("wb")
    proc = subprocess.Popen([str(exe), "serve", "--host", "127.0.0.1", "--port", str(port), "--model", model],
                            stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(log_path.read_text()[-3000:])
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        else:
            raise RuntimeError("server did not become healthy")
        yield url
        assert proc.poll() is None, "the server died during the tests: " + log_path.read_text()[-3000:]
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
