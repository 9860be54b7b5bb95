"""The official openai SDK against /v1/embeddings (FakeEmbedder, real platform and project key)."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest
from openai import AsyncOpenAI
from openai.types import CreateEmbeddingResponse, Embedding

from hearth.engine.backends.fake import FakeEngine
from hearth.engine.embedding import FakeEmbedder
from tests.conftest import make_app

MODEL = "all-minilm-l6-v2"  # a fake under the real id: the SDK sees the same names as in production


@pytest.fixture
def embedder() -> FakeEmbedder:
    return FakeEmbedder(MODEL, dimensions=384, max_tokens=256)


@pytest.fixture
def app(embedder: FakeEmbedder, tmp_path: Path):  # type: ignore[no-untyped-def]
    return make_app(FakeEngine("fake-model"), tmp_path, with_platform=True, embedders=[embedder])


@pytest.fixture
async def sdk(app) -> AsyncIterator[AsyncOpenAI]:  # type: ignore[no-untyped-def]
    store = app.state.runtime.container.admin.store
    key = str(store.create_project_key(store.organization().default_project_id, "embeddings").secret)
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://hearth.test")
    async with AsyncOpenAI(base_url="http://hearth.test/v1", api_key=key, http_client=http, max_retries=0) as c:
        yield c


def check(r: CreateEmbeddingResponse, n: int, tokens: int) -> np.ndarray:
    assert isinstance(r, CreateEmbeddingResponse) and r.object == "list" and r.model == MODEL
    assert len(r.data) == n and all(isinstance(d, Embedding) and d.object == "embedding" for d in r.data)
    assert [d.index for d in r.data] == list(range(n))
    assert r.usage.prompt_tokens == r.usage.total_tokens == tokens
    vecs = np.array([d.embedding for d in r.data], np.float32)
    assert vecs.shape == (n, 384)
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    return vecs


async def test_default_encoding_is_base64_and_decoded(sdk: AsyncOpenAI, embedder: FakeEmbedder) -> None:
    raw = await sdk.embeddings.with_raw_response.create(model=MODEL, input="the quick brown fox")
    assert raw.http_request.read().count(b'"encoding_format":"base64"') == 1  # what the SDK sends unasked
    assert isinstance(raw.http_response.json()["data"][0]["embedding"], str)
    vecs = check(raw.parse(), 1, 4)  # the SDK decoded the base64 into floats
    np.testing.assert_array_equal(vecs[0], embedder.embed(["the quick brown fox"])[0])


async def test_float_encoding(sdk: AsyncOpenAI) -> None:
    texts = ["one two", "three", "four five six"]
    f = check(await sdk.embeddings.create(model=MODEL, input=texts, encoding_format="float"), 3, 6)
    # Asked for explicitly, base64 stays a string for the caller to decode (little-endian float32).
    r = await sdk.embeddings.create(model=MODEL, input=texts, encoding_format="base64")
    assert all(isinstance(d.embedding, str) for d in r.data)
    b = np.stack([np.frombuffer(base64.b64decode(str(d.embedding)), "<f4") for d in r.data])
    np.testing.assert_array_equal(f, b)


async def test_dimensions(sdk: AsyncOpenAI) -> None:
    check(await sdk.embeddings.create(model=MODEL, input="a b", dimensions=384, user="end-user-1"), 1, 2)
    with pytest.raises(openai.BadRequestError) as ei:
        await sdk.embeddings.create(model=MODEL, input="a b", dimensions=256)
    assert ei.value.status_code == 400 and ei.value.param == "dimensions"
    assert ei.value.code == "unsupported_value" and "384" in ei.value.message


async def test_token_inputs(sdk: AsyncOpenAI, embedder: FakeEmbedder) -> None:
    ids = embedder.tokenize("tokens as input")
    one = check(await sdk.embeddings.create(model=MODEL, input=ids), 1, 3)
    text = check(await sdk.embeddings.create(model=MODEL, input="tokens as input"), 1, 3)
    np.testing.assert_array_equal(one, text)
    check(await sdk.embeddings.create(model=MODEL, input=[[1, 2, 3], [4], [5, 6]]), 3, 6)


async def test_errors(sdk: AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as ei:
        await sdk.embeddings.create(model=MODEL, input="")
    assert ei.value.param == "input"
    with pytest.raises(openai.BadRequestError) as ei:
        await sdk.embeddings.create(model=MODEL, input=" ".join(["w"] * 257))
    assert ei.value.param == "input" and ei.value.code == "context_length_exceeded"
    with pytest.raises(openai.NotFoundError) as nf:
        await sdk.embeddings.create(model="text-embedding-3-small", input="a")
    assert nf.value.code == "model_not_found"


async def test_listed_in_models(sdk: AsyncOpenAI) -> None:
    assert MODEL in [m.id for m in (await sdk.models.list()).data]
