"""Real `hearth serve` processes (fake engine, real SQLite and Redis): the usage ledger survives
kill -9, and two processes sharing Redis admit a rate limit exactly once between them."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

STATIC_KEY = "sk-proc-test-0000000000000000"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def hearth(data_dir: Path, **env: str) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    port = _free_port()
    full = {**os.environ, "HEARTH_DATA_DIR": str(data_dir), "HEARTH_ENGINE__BACKEND": "fake",
            "HEARTH_LOG_LEVEL": "warning", **env}
    exe = Path(sys.executable).with_name("hearth")
    log = (data_dir.parent / f"serve-{port}.log").open("wb")
    proc = subprocess.Popen([str(exe), "serve", "--port", str(port)], stdout=log, stderr=subprocess.STDOUT,
                            env=full)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, (data_dir.parent / f"serve-{port}.log").read_text()[-2000:]
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.1)
        yield proc, url
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()


def _redis_up() -> bool:
    try:
        import redis

        return bool(redis.Redis(host="127.0.0.1", port=6379, socket_timeout=1).ping())
    except Exception:  # noqa: BLE001
        return False


def test_kill_9_right_after_responses_loses_no_usage_record(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    env = {"HEARTH_USAGE__FLUSH_INTERVAL_S": "30"}  # nothing reaches the database before the kill
    seen: list[str] = []
    with hearth(data, **env) as (proc, url):
        admin = (data / "admin-key.txt").read_text().strip()
        with httpx.Client(base_url=url, timeout=10) as c:
            pid = c.get("/v1/organization/projects", headers={"Authorization": f"Bearer {admin}"}).json()["data"][0]["id"]
            key = c.post(f"/v1/organization/projects/{pid}/api_keys", json={"name": "k"},
                         headers={"Authorization": f"Bearer {admin}"}).json()["value"]
            h = {"Authorization": f"Bearer {key}"}
            for i in range(24):
                body = {"model": "qwen2.5-coder-0.5b-instruct", "messages": [{"role": "user", "content": f"hi {i}"}],
                        "max_tokens": 4, "stream": i % 3 == 0}
                r = c.post("/v1/chat/completions", json=body, headers=h)
                assert r.status_code == 200, r.text
                if body["stream"]:
                    assert r.text.rstrip().endswith("[DONE]")
                seen.append(r.headers["x-request-id"])
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    db = data / "hearth.db"
    with sqlite3.connect(db) as conn:
        before = {row[0] for row in conn.execute("SELECT id FROM usage_records")}
    assert not (set(seen) <= before)  # the kill came before the flush: the records were only in the log
    with hearth(data, **env):
        pass  # a restart replays the write-ahead log before serving
    with sqlite3.connect(db) as conn:
        rows = dict(conn.execute("SELECT id, output_tokens FROM usage_records").fetchall())
    assert set(seen) <= set(rows)
    assert all(rows[i] > 0 for i in seen)


@pytest.mark.skipif(not _redis_up(), reason="Redis is not running on 127.0.0.1:6379")
def test_two_processes_sharing_redis_admit_64_concurrent_requests_exactly_10(tmp_path: Path) -> None:
    model = f"m-{uuid.uuid4().hex[:8]}"  # a fresh limiter scope
    env = {"HEARTH_API_KEY": STATIC_KEY, "HEARTH_AUTH": "true", "HEARTH_REDIS_URL": "redis://127.0.0.1:6379/0",
           "HEARTH_RATE_LIMITS": json.dumps({"*": {"rpm": 10}}),
           "HEARTH_MODELS": json.dumps([{"id": model, "source": "/unused.gguf"}]),
           "HEARTH_SERVE": json.dumps([model])}
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with hearth(tmp_path / "a", **env) as (_, url_a), hearth(tmp_path / "b", **env) as (_, url_b):
        async def run() -> list[int]:
            h = {"Authorization": f"Bearer {STATIC_KEY}"}
            body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
            async with httpx.AsyncClient(timeout=20) as c:
                rs = await asyncio.gather(*(c.post(f"{url_a if i % 2 else url_b}/v1/chat/completions", json=body,
                                                   headers=h) for i in range(64)))
            return [r.status_code for r in rs]

        codes = asyncio.run(run())
    assert codes.count(200) == 10 and codes.count(429) == 54, codes


PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def _pg(sql: str) -> bool:
    try:
        from sqlalchemy import create_engine, text

        engine = create_engine(PG_URL, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(text(sql))
        engine.dispose()
        return True
    except Exception:  # noqa: BLE001 - no server: the caller skips
        return False


@pytest.fixture
def pg_schema_url() -> Iterator[str]:
    schema = f"hearth_spend_{uuid.uuid4().hex[:8]}"
    if not _pg(f'CREATE SCHEMA "{schema}"'):
        pytest.skip("PostgreSQL is not reachable on 127.0.0.1:5432")
    yield f"{PG_URL}?options=-csearch_path%3D{schema}"
    _pg(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.mark.skipif(not _redis_up(), reason="Redis is not running on 127.0.0.1:6379")
def test_two_processes_sharing_postgres_and_redis_never_overspend(tmp_path: Path, pg_schema_url: str) -> None:
    """A project's spend limit holds across two replicas: holds and spend live in Redis, the limit
    and the ledger in one PostgreSQL database."""
    db = pg_schema_url
    model = f"m-{uuid.uuid4().hex[:8]}"
    env = {"HEARTH_DATABASE_URL": db, "HEARTH_REDIS_URL": "redis://127.0.0.1:6379/0",
           "HEARTH_PRICES": json.dumps({"*": {"input": 1, "output": 2}}),  # 1000 / 2000 nano-USD per token
           "HEARTH_MODELS": json.dumps([{"id": model, "source": "/unused.gguf"}]), "HEARTH_SERVE": json.dumps([model]),
           "HEARTH_ENGINE__FAKE_REPLY_TOKENS": "8"}
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with hearth(tmp_path / "a", **env) as (_, url_a):
        admin = (tmp_path / "a" / "admin-key.txt").read_text().strip()
        ah = {"Authorization": f"Bearer {admin}"}
        pid = httpx.get(f"{url_a}/v1/organization/projects", headers=ah).json()["data"][0]["id"]
        key = httpx.post(f"{url_a}/v1/organization/projects/{pid}/api_keys", json={"name": "k"},
                         headers=ah).json()["value"]
        body = {"model": model, "messages": [{"role": "user", "content": "hello there"}], "max_tokens": 8}
        probe = httpx.post(f"{url_a}/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"})
        usage = probe.json()["usage"]
        worst = usage["prompt_tokens"] * 1000 + 8 * 2000
        spent0 = usage["prompt_tokens"] * 1000 + usage["completion_tokens"] * 2000
        cap = spent0 + 12 * worst + worst // 2
        r = httpx.post(f"{url_a}/v1/organization/projects/{pid}/spend_limit", json={"monthly_limit_usd": cap / 1e9},
                       headers=ah)
        assert r.status_code == 200, r.text
        # Replicas verify each other's keys with the same HMAC secret (see the README).
        (tmp_path / "b" / "server-secret").write_bytes((tmp_path / "a" / "server-secret").read_bytes())
        with hearth(tmp_path / "b", **env) as (_, url_b):  # starts after the limit: loads it at once

            async def run() -> list[int]:
                h = {"Authorization": f"Bearer {key}"}
                async with httpx.AsyncClient(timeout=20) as c:
                    rs = await asyncio.gather(*(c.post(f"{url_a if i % 2 else url_b}/v1/chat/completions", json=body,
                                                       headers=h) for i in range(64)))
                return [x.status_code for x in rs]

            codes = asyncio.run(run())
            spent = httpx.get(f"{url_b}/v1/organization/projects/{pid}/spend_limit", headers=ah).json()
    assert set(codes) <= {200, 429} and 12 <= codes.count(200) < 64, codes
    assert spent["held_usd"] == 0
    assert spent["spent_this_month_usd"] * 1e9 <= cap + 1
    assert spent["spent_this_month_usd"] * 1e9 >= spent0 + 12 * (usage["prompt_tokens"] * 1000 + 8 * 2000) - 1
