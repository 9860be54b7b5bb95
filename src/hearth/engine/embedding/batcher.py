"""Running an embedder off the event loop, merging concurrent requests into shared calls.

One worker thread per model runs `embed_tokens`. While it is busy, arriving requests queue; when
it frees, everything queued (up to `max_merge` inputs, but always at least one whole request) goes
into a single call, whose rows are split back per request. Requests that arrive in the same loop
tick therefore share a forward pass, and under load the batch grows by itself: no timers.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from hearth.engine.embedding.interface import Embedder, Vectors


@dataclass(slots=True)
class _Job:
    lists: list[list[int]]
    future: asyncio.Future[Vectors]


class EmbeddingBatcher:
    """`await embed_tokens(lists)`: the embedder's result for `lists`, computed on its own thread.

    Guarantees: results are exactly what `embedder.embed_tokens(lists)` returns (vectors do not
    depend on their batch mates); a cancelled request that has not started is dropped; an error in
    a merged call fails every request of that call; calls never overlap.
    """

    def __init__(self, embedder: Embedder, *, max_merge: int = 256) -> None:
        self.embedder = embedder
        self.max_merge = max_merge
        self._pending: list[_Job] = []
        self._task: asyncio.Task[None] | None = None
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"embed-{embedder.model_id}")

    async def embed_tokens(self, lists: list[list[int]]) -> Vectors:
        loop = asyncio.get_running_loop()
        job = _Job(lists, loop.create_future())
        self._pending.append(job)
        if self._task is None or self._task.done() or self._task.get_loop() is not loop:
            self._task = loop.create_task(self._drain())
        return await job.future

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        while self._pending:
            await asyncio.sleep(0)  # let the requests of this loop tick join the batch
            jobs = self._take()
            if not jobs:
                continue
            merged = [ids for j in jobs for ids in j.lists]
            try:
                vecs = await loop.run_in_executor(self._executor, self.embedder.embed_tokens, merged)
            except Exception as exc:  # noqa: BLE001 - handed to every waiting request
                for j in jobs:
                    if not j.future.done():
                        j.future.set_exception(exc)
                continue
            at = 0
            for j in jobs:
                if not j.future.done():
                    j.future.set_result(vecs[at:at + len(j.lists)])
                at += len(j.lists)

    def _take(self) -> list[_Job]:
        taken: list[_Job] = []
        count = 0
        while self._pending:
            job = self._pending[0]
            if job.future.done():  # cancelled while waiting: nothing to compute
                self._pending.pop(0)
                continue
            if taken and count + len(job.lists) > self.max_merge:
                break
            taken.append(self._pending.pop(0))
            count += len(job.lists)
        return taken

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
