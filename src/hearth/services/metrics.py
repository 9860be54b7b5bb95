"""Prometheus metrics: one `Metrics` per app (its own CollectorRegistry; no module-level state).

Two sources:
- engine state (sequences, KV cache, token totals) is read from `engine.metrics()` for every
  engine in the registry at scrape time, by `EngineCollector`; nothing is pushed per token;
- request outcomes and latencies are observed by the services through a `RequestTimer`, one per
  request, which resolves its labelled children once so that each token costs one clock read,
  one subtraction and one histogram observation.

`hearth_requests_total{outcome}` takes exactly one of OUTCOMES per request that reached a service
(requests rejected by schema validation or auth at the HTTP edge are not counted):

  stop          finished normally (every choice hit EOS or a stop string)
  length        at least one choice was cut by max_tokens / the context window
  cancelled     the client went away (or the engine aborted the request) before the end
  rejected      the engine refused it for capacity (Overloaded: 503 with Retry-After)
  client_error  the request was invalid (unknown model, context length, unsupported parameter, ...)
  server_error  the engine or the server failed
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from pydantic import ValidationError

from hearth.engine.errors import ContextLengthExceeded, ModelNotFound, Overloaded
from hearth.engine.interface import Engine
from hearth.engine.registry import EngineRegistry
from hearth.engine.types import EngineMetrics, FinishReason
from hearth.protocol.errors import InvalidRequest

log = logging.getLogger("hearth.metrics")

# The text exposition format every Prometheus version reads (2.x and 3.x); generate_latest()
# writes it for metric names like ours.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

OUTCOMES = ("stop", "length", "cancelled", "rejected", "client_error", "server_error")
UNKNOWN_MODEL = "unknown"  # label for requests that failed before a model was resolved

# CPU serving: a first token in tens of ms (short prompt, small model) up to a minute (long
# prompt on 2 cores); tokens every few ms (tiny model) to a second (7B+ model, busy batch).
TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 30.0, 60.0)
ITL_BUCKETS = (0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 2.5)
DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0)


def outcome_for_error(exc: BaseException) -> str:
    """The outcome label of a request that ended with `exc`."""
    if isinstance(exc, (asyncio.CancelledError, GeneratorExit)):
        return "cancelled"
    if isinstance(exc, Overloaded):
        return "rejected"
    if isinstance(exc, (InvalidRequest, ModelNotFound, ContextLengthExceeded, ValidationError)):
        return "client_error"
    return "server_error"


def outcome_for_finish(reasons: list[FinishReason | None]) -> str:
    """The outcome label of a request whose choices all finished with these reasons."""
    if FinishReason.ABORT in reasons:
        return "cancelled"
    if FinishReason.LENGTH in reasons:
        return "length"
    return "stop"


def engine_snapshot(engine: Engine) -> EngineMetrics:
    """`engine.metrics()`, or zeros for a backend that does not implement it yet."""
    fn = getattr(engine, "metrics", None)
    if fn is None:
        return EngineMetrics()
    snap = fn()
    return snap if isinstance(snap, EngineMetrics) else EngineMetrics()


class EngineCollector(Collector):
    """Reads every engine's snapshot at scrape time and exposes it per model."""

    def __init__(self, registry: EngineRegistry) -> None:
        self._registry = registry

    def describe(self) -> list[Metric]:
        return []  # unchecked collector: its series depend on the engines present at scrape time

    def collect(self) -> Iterator[Metric]:
        lbl = ["model"]
        running = GaugeMetricFamily("hearth_sequences_running", "Sequences being prefilled or decoded.",
                                    labels=lbl)
        waiting = GaugeMetricFamily("hearth_sequences_waiting", "Sequences queued for admission.", labels=lbl)
        kv_ratio = GaugeMetricFamily("hearth_kv_cache_usage_ratio",
                                     "Fraction of the KV cache held by live sequences (0-1).", labels=lbl)
        kv_used = GaugeMetricFamily("hearth_kv_cache_used_tokens", "KV cache cells held by live sequences.",
                                    labels=lbl)
        kv_cap = GaugeMetricFamily("hearth_kv_cache_capacity_tokens", "KV cache size in tokens.", labels=lbl)
        prompt = CounterMetricFamily("hearth_prompt_tokens", "Prompt tokens accepted for prefill.", labels=lbl)
        generated = CounterMetricFamily("hearth_generation_tokens", "Tokens generated.", labels=lbl)
        hits = CounterMetricFamily("hearth_prefix_cache_hit_tokens",
                                   "Prompt tokens served from the prefix cache.", labels=lbl)
        host = GaugeMetricFamily("hearth_prefix_cache_host_tokens",
                                 "Cached prompt-prefix tokens whose KV is parked in host memory.", labels=lbl)
        for engine in self._registry.engines():
            model = engine.info.id
            try:
                m = engine_snapshot(engine)
            except Exception:  # one broken engine must not break the scrape for the others
                log.warning("metrics snapshot failed for %s", model, exc_info=True)
                continue
            running.add_metric([model], m.running)
            waiting.add_metric([model], m.waiting)
            cap = m.kv_capacity_tokens
            kv_ratio.add_metric([model], m.kv_used_tokens / cap if cap > 0 else 0.0)
            kv_used.add_metric([model], m.kv_used_tokens)
            kv_cap.add_metric([model], cap)
            prompt.add_metric([model], m.prompt_tokens_total)
            generated.add_metric([model], m.generated_tokens_total)
            hits.add_metric([model], m.prefix_cache_hit_tokens)
            host.add_metric([model], m.prefix_cache_host_tokens)
        yield from (running, waiting, kv_ratio, kv_used, kv_cap, prompt, generated, hits, host)


class Metrics:
    """The process's metrics. Construct one per app; `Metrics()` with no engines is a valid no-op sink."""

    def __init__(self, engines: EngineRegistry | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        r = self.registry
        self.requests = Counter("hearth_requests", "Requests by final outcome.",
                                ["model", "endpoint", "outcome"], registry=r)
        self.ttft = Histogram("hearth_time_to_first_token_seconds",
                              "From request arrival to the first generated token.", ["model"],
                              buckets=TTFT_BUCKETS, registry=r)
        self.itl = Histogram("hearth_inter_token_latency_seconds",
                             "Time between successive tokens of one sequence (per token).", ["model"],
                             buckets=ITL_BUCKETS, registry=r)
        self.duration = Histogram("hearth_request_duration_seconds",
                                  "From request arrival to its end, for requests that reached an engine.",
                                  ["model", "endpoint"], buckets=DURATION_BUCKETS, registry=r)
        if engines is not None:
            r.register(EngineCollector(engines))

    def render(self) -> bytes:
        """The text exposition of every metric (serve with CONTENT_TYPE)."""
        return generate_latest(self.registry)

    def rejected(self, model: str | None, endpoint: str, exc: BaseException) -> None:
        """Count a request that failed before reaching an engine (no latency is observed)."""
        self.requests.labels(model or UNKNOWN_MODEL, endpoint, outcome_for_error(exc)).inc()

    def timer(self, model: str, endpoint: str, started: float, choices: int = 1) -> RequestTimer:
        return RequestTimer(self, model, endpoint, started, choices)


class RequestTimer:
    """Latencies and the outcome of one request that reached an engine. Not thread-safe: one per request.

    `token(i, n)` after each delta of choice i that carries n >= 1 tokens: the first token of the
    request observes TTFT; later deltas of the same choice observe the gap divided by n.
    `finish(outcome)` once (later calls are ignored) observes the duration and counts the outcome.
    """

    __slots__ = ("_done", "_endpoint", "_first", "_itl", "_last", "_metrics", "_model", "_started", "_ttft")

    def __init__(self, metrics: Metrics, model: str, endpoint: str, started: float, choices: int) -> None:
        self._metrics = metrics
        self._model = model
        self._endpoint = endpoint
        self._started = started
        self._last = [0.0] * choices
        self._first = True
        self._ttft = metrics.ttft.labels(model)
        self._itl = metrics.itl.labels(model)
        self._done = False

    def token(self, i: int, n: int) -> None:
        now = time.perf_counter()
        last = self._last[i]
        if last:
            self._itl.observe((now - last) / n)
        elif self._first:
            self._first = False
            self._ttft.observe(now - self._started)
        self._last[i] = now

    def finish(self, outcome: str) -> None:
        if self._done:
            return
        self._done = True
        m = self._metrics
        m.duration.labels(self._model, self._endpoint).observe(time.perf_counter() - self._started)
        m.requests.labels(self._model, self._endpoint, outcome).inc()
