"""One thread for every llama.cpp computation of the process's chat models.

llama.cpp's CPU backend runs a step's operations in OpenMP parallel regions, and libgomp keeps a
team of worker threads for each thread that starts one. Once all the teams together hold more
threads than the machine has cores, libgomp cuts the spin at every barrier from GOMP_SPINCOUNT to
~100 iterations, so a thread that reaches a barrier first sleeps and must be woken, at each of a
step's hundreds of barriers. Measured on a 2-core AMD EPYC (Qwen 0.5B, 2 threads): one-token
steps took 26 ms with one chat model, and 48 ms once a second chat model, decoding on a thread
of its own, had run a single request, even while that model sat idle.

So every chat model's load and steps run on this one thread: one OpenMP team whatever the number
of models. Their steps take turns (round robin, one step each): on a small machine two models'
steps running at once would only split the same cores, with the barriers of both slowed.
"""

from __future__ import annotations

import collections
import concurrent.futures
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

log = logging.getLogger("hearth.engine.compute")

T = TypeVar("T")


class Worker(Protocol):
    def poll(self, now: float) -> float | None:
        """Called with the thread's lock held: 0 when a step is due now, seconds until one is due,
        or None when there is nothing to do until someone notifies the thread's condition."""

    def step(self) -> bool:
        """One unit of work, without the lock. False when the worker is finished (it is removed)."""


class ComputeThread:
    def __init__(self, name: str = "llama-compute") -> None:
        self.cond = threading.Condition()
        self._workers: list[Worker] = []
        self._jobs: collections.deque[tuple[Callable[[], Any], concurrent.futures.Future[Any]]] = (
            collections.deque())
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    @property
    def ident(self) -> int | None:
        return self._thread.ident

    def alive(self) -> bool:
        return self._thread.is_alive()

    def call(self, fn: Callable[[], T]) -> concurrent.futures.Future[T]:
        """Run fn on the thread, before any further step (a model load, for example)."""
        fut: concurrent.futures.Future[T] = concurrent.futures.Future()
        with self.cond:
            self._jobs.append((fn, fut))
            self.cond.notify_all()
        return fut

    def add(self, worker: Worker) -> None:
        with self.cond:
            self._workers.append(worker)
            self.cond.notify_all()

    def _next(self) -> tuple[tuple[Callable[[], Any], concurrent.futures.Future[Any]] | None, list[Worker]]:
        with self.cond:
            while True:
                if self._jobs:
                    return self._jobs.popleft(), []
                now = time.monotonic()
                ready: list[Worker] = []
                wait: float | None = None
                for w in self._workers:
                    due = w.poll(now)
                    if due is None:
                        continue
                    if due <= 0:
                        ready.append(w)
                    else:
                        wait = due if wait is None else min(wait, due)
                if ready:
                    return None, ready
                self.cond.wait(wait)

    def _run(self) -> None:
        while True:
            job, ready = self._next()
            if job is not None:
                fn, fut = job
                if fut.set_running_or_notify_cancel():
                    try:
                        fut.set_result(fn())
                    except BaseException as exc:  # noqa: BLE001 - the caller of call() re-raises it
                        fut.set_exception(exc)
                continue
            for w in ready:
                try:
                    keep = w.step()
                except BaseException:  # a worker handles its own failures; this thread must outlive any
                    log.exception("a compute worker failed")
                    keep = False
                if not keep:
                    with self.cond:
                        self._workers.remove(w)


_shared: ComputeThread | None = None
_shared_lock = threading.Lock()


def shared() -> ComputeThread:
    """The process's compute thread (started on first use)."""
    global _shared
    with _shared_lock:
        if _shared is None or not _shared.alive():
            _shared = ComputeThread()
        return _shared
