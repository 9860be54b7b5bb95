"""EmbeddingBatcher: merging, limits, failures and cancellation, over FakeEmbedder."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

from hearth.engine.embedding import EmbeddingBatcher, FakeEmbedder


class GatedEmbedder(FakeEmbedder):
    """Blocks its first call until released, so that requests queue behind it."""

    def __init__(self) -> None:
        super().__init__("gated", dimensions=8)
        self.gate = threading.Event()

    def embed_tokens(self, token_lists: list[list[int]]) -> np.ndarray:
        if len(self.calls) == 0:
            self.gate.wait(5)
        return super().embed_tokens(token_lists)


async def test_same_tick_requests_share_one_call() -> None:
    e = FakeEmbedder(dimensions=8)
    b = EmbeddingBatcher(e)
    out = await asyncio.gather(*(b.embed_tokens([[i + 1], [i + 2, i + 3]]) for i in range(5)))
    assert [len(c) for c in e.calls] == [10]
    for i, v in enumerate(out):
        np.testing.assert_allclose(v, e.embed_tokens([[i + 1], [i + 2, i + 3]]), atol=1e-7)
    b.close()


async def test_requests_queue_while_busy_and_respect_max_merge() -> None:
    e = GatedEmbedder()
    b = EmbeddingBatcher(e, max_merge=4)
    first = asyncio.ensure_future(b.embed_tokens([[1]]))
    await asyncio.sleep(0.05)  # the first call is running (blocked)
    rest = [asyncio.ensure_future(b.embed_tokens([[i]] * 3)) for i in range(2, 6)]
    await asyncio.sleep(0.01)
    e.gate.set()
    await asyncio.gather(first, *rest)
    # One call alone, then requests of 3 inputs: never more than 4 inputs unless a request is bigger.
    assert [len(c) for c in e.calls] == [1, 3, 3, 3, 3]
    big = await b.embed_tokens([[7]] * 9)  # a request larger than max_merge still runs whole
    assert big.shape == (9, 8)
    b.close()


async def test_failure_reaches_every_merged_request_and_the_next_call_works() -> None:
    e = FakeEmbedder(dimensions=8)
    e.fail = True
    b = EmbeddingBatcher(e)
    res = await asyncio.gather(b.embed_tokens([[1]]), b.embed_tokens([[2]]), return_exceptions=True)
    assert all(isinstance(r, RuntimeError) for r in res)
    assert (await b.embed_tokens([[3]])).shape == (1, 8)
    b.close()


async def test_cancelled_waiting_request_is_dropped() -> None:
    e = GatedEmbedder()
    b = EmbeddingBatcher(e)
    first = asyncio.ensure_future(b.embed_tokens([[1]]))
    await asyncio.sleep(0.05)
    gone = asyncio.ensure_future(b.embed_tokens([[2]]))
    kept = asyncio.ensure_future(b.embed_tokens([[3]]))
    await asyncio.sleep(0)
    gone.cancel()
    e.gate.set()
    await first
    assert (await kept).shape == (1, 8)
    with pytest.raises(asyncio.CancelledError):
        await gone
    assert e.calls == [[[1]], [[3]]]
    b.close()
