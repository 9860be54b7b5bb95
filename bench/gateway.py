#!/usr/bin/env python3
"""Gateway overhead: hearth with auth + rate limits + spend limit + usage ledger on, vs the same
server with every platform feature off, both in front of the fake engine (answers instantly).

Each configuration runs as a real `hearth serve` process (one at a time, same flags otherwise); the
client is this process. Figures per workload:
  - latency p50 / p99 at concurrency 1 (and the p50 the platform adds),
  - requests/s at concurrency 16,
  - server CPU milliseconds per request (utime + stime of the server process over the run / requests):
    the figure that survives a noisy machine, since it does not count waiting.
Per-chunk cost = (CPU per 256-chunk stream - CPU per 16-chunk stream) / 240.

Run:  .venv/bin/python bench/gateway.py [--quick] [--out results.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
HEARTH = REPO / ".venv" / "bin" / "hearth"
MODEL = "qwen2.5-coder-0.5b-instruct"  # served by the fake engine: no weights are loaded
TICK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime, all threads


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    url: str
    key: str


def start(name: str, data: Path, platform: bool) -> Server:
    port = free_port()
    env = {**os.environ, "HEARTH_DATA_DIR": str(data), "HEARTH_ENGINE__BACKEND": "fake",
           "HEARTH_ENGINE__FAKE_REPLY_TOKENS": "256", "HEARTH_LOG_LEVEL": "warning"}
    if platform:
        env.update({
            "HEARTH_RATE_LIMITS": json.dumps({"*": {"rpm": 10**9, "tpm": 10**12, "rpd": 10**9, "tpd": 10**13}}),
            "HEARTH_PRICES": json.dumps({"*": {"input": 0.15, "cached_input": 0.075, "output": 0.6}}),
        })
    else:
        env["HEARTH_AUTH"] = "false"
    log = (data / f"{name}.log").open("wb")
    proc = subprocess.Popen([str(HEARTH), "serve", "--port", str(port)], env=env, stdout=log,
                            stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        if proc.poll() is not None:
            raise RuntimeError((data / f"{name}.log").read_text()[-2000:])
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError("server did not start")
        time.sleep(0.1)
    key = "unused"
    if platform:
        admin = (data / "admin-key.txt").read_text().strip()
        h = {"Authorization": f"Bearer {admin}"}
        pid = httpx.get(url + "/v1/organization/projects", headers=h).json()["data"][0]["id"]
        key = httpx.post(f"{url}/v1/organization/projects/{pid}/api_keys", json={"name": "bench"}, headers=h
                         ).json()["value"]
        # A spend limit far above what the run costs, so the spend meter runs on every request.
        r = httpx.post(f"{url}/v1/organization/projects/{pid}/spend_limit", json={"monthly_limit_usd": 1e6},
                       headers=h)
        r.raise_for_status()
    return Server(proc, url, key)


def stop(s: Server) -> None:
    s.proc.send_signal(signal.SIGINT)
    try:
        s.proc.wait(20)
    except subprocess.TimeoutExpired:
        s.proc.kill()


async def one(c: httpx.AsyncClient, body: dict[str, Any]) -> float:
    t = time.perf_counter()
    if body.get("stream"):
        async with c.stream("POST", "/v1/chat/completions", json=body) as r:
            r.raise_for_status()
            async for _ in r.aiter_raw():
                pass
    else:
        r = await c.post("/v1/chat/completions", json=body)
        r.raise_for_status()
    return time.perf_counter() - t


async def workload(s: Server, body: dict[str, Any], n: int, conc: int) -> dict[str, float]:
    limits = httpx.Limits(max_connections=conc, max_keepalive_connections=conc)
    async with httpx.AsyncClient(base_url=s.url, headers={"Authorization": f"Bearer {s.key}"}, limits=limits,
                                 timeout=60) as c:
        for _ in range(min(50, n)):  # warm up: connections, caches, the first key lookup
            await one(c, body)
        lat: list[float] = []
        queue = list(range(n))

        async def worker() -> None:
            while queue:
                queue.pop()
                lat.append(await one(c, body))

        cpu0, t0 = cpu_seconds(s.proc.pid), time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(conc)))
        wall, cpu = time.perf_counter() - t0, cpu_seconds(s.proc.pid) - cpu0
    lat.sort()
    return {"p50_ms": statistics.median(lat) * 1000, "p99_ms": lat[int(len(lat) * 0.99) - 1] * 1000,
            "rps": n / wall, "cpu_ms_per_req": cpu / n * 1000}


def bodies() -> dict[str, dict[str, Any]]:
    msg = [{"role": "user", "content": "Say hello to the benchmark."}]
    return {
        "non-stream": {"model": MODEL, "messages": msg, "max_tokens": 16},
        "stream-16": {"model": MODEL, "messages": msg, "max_tokens": 16, "stream": True},
        "stream-256": {"model": MODEL, "messages": msg, "max_tokens": 256, "stream": True},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer requests and rounds (a smoke run)")
    ap.add_argument("--rounds", type=int, default=4, help="rounds per workload, alternating the order")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    scale = 0.2 if args.quick else 1.0
    rounds = 1 if args.quick else args.rounds
    plan = [("non-stream", 1, 1500), ("non-stream", 16, 2000), ("stream-16", 1, 500), ("stream-256", 1, 150)]
    runs: dict[str, dict[str, list[dict[str, float]]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        # Both servers run side by side; the one not being measured sits idle (no CPU).
        servers = {}
        try:
            for name, platform in (("bare", False), ("full", True)):
                data = Path(tmp) / name
                data.mkdir()
                servers[name] = start(name, data, platform)
            for wl, conc, n in plan:
                for rnd in range(rounds):
                    for name in ("bare", "full") if rnd % 2 == 0 else ("full", "bare"):
                        r = asyncio.run(workload(servers[name], bodies()[wl], max(20, int(n * scale)), conc))
                        runs.setdefault(f"{wl} c{conc}", {}).setdefault(name, []).append(r)
                        print(f"{name:5s} {wl:11s} c{conc:<3d} p50 {r['p50_ms']:7.2f} ms  p99 {r['p99_ms']:7.2f} ms  "
                              f"{r['rps']:8.1f} req/s  server CPU {r['cpu_ms_per_req']:6.2f} ms/req", flush=True)
        finally:
            for s in servers.values():
                stop(s)
    results = {wl: {name: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for name, rs in pair.items()}
               for wl, pair in runs.items()}
    print(f"\nplatform on (auth + rate limits + spend limit + usage ledger) vs off, same fake engine; "
          f"medians of {rounds} alternating round(s):")
    print(f"{'workload':18s} {'added p50 ms':>12s} {'CPU ms/req off':>15s} {'CPU ms/req on':>14s} "
          f"{'added CPU ms':>13s} {'req/s off':>10s} {'req/s on':>9s}")
    for wl, pair in results.items():
        b, f = pair["bare"], pair["full"]
        print(f"{wl:18s} {f['p50_ms'] - b['p50_ms']:12.3f} {b['cpu_ms_per_req']:15.3f} {f['cpu_ms_per_req']:14.3f} "
              f"{f['cpu_ms_per_req'] - b['cpu_ms_per_req']:13.3f} {b['rps']:10.1f} {f['rps']:9.1f}")
    s16, s256 = results["stream-16 c1"], results["stream-256 c1"]
    for name in ("bare", "full"):
        per_chunk = (s256[name]["cpu_ms_per_req"] - s16[name]["cpu_ms_per_req"]) / 240
        print(f"CPU per extra stream chunk ({name}): {per_chunk:.4f} ms")
    if args.out:
        args.out.write_text(json.dumps({"medians": results, "runs": runs}, indent=2))


if __name__ == "__main__":
    sys.exit(main())
