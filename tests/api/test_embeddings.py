"""POST /v1/embeddings over FakeEmbedder: every error with its exact envelope, both encodings, usage,
and the micro-batcher (concurrent requests share calls)."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from hearth.engine.backends.fake import FakeEngine
from hearth.engine.embedding import FakeEmbedder
from tests.conftest import API_KEY, make_app

MODEL = "fake-embedding"


@pytest.fixture
def embedder() -> FakeEmbedder:
    return FakeEmbedder(MODEL, dimensions=16, max_tokens=8, vocab_size=1000)


@pytest.fixture
async def client(embedder: FakeEmbedder, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    app = make_app(FakeEngine("fake-model"), tmp_path, embedders=[embedder],
                   aliases={"text-embedding-3-small": MODEL})
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://hearth.test",
                                 headers={"Authorization": f"Bearer {API_KEY}"}) as c:
        yield c


async def post(c: httpx.AsyncClient, **body: Any) -> httpx.Response:
    return await c.post("/v1/embeddings", json={"model": MODEL, **body})


def error(r: httpx.Response, status: int, param: str | None, code: str | None,
          type_: str = "invalid_request_error") -> str:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(r.json()) == {"error"} and set(err) == {"message", "type", "param", "code"}
    assert (err["type"], err["param"], err["code"]) == (type_, param, code), err
    assert isinstance(err["message"], str) and err["message"]
    return str(err["message"])


def vectors(body: dict[str, Any]) -> np.ndarray:
    rows = []
    for d in body["data"]:
        e = d["embedding"]
        rows.append(np.frombuffer(base64.b64decode(e), "<f4") if isinstance(e, str) else np.array(e, np.float32))
    return np.stack(rows)


async def test_single_string_float(client: httpx.AsyncClient, embedder: FakeEmbedder) -> None:
    r = await post(client, input="the quick brown fox")
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"object", "data", "model", "usage"}
    assert body["object"] == "list" and body["model"] == MODEL
    assert body["usage"] == {"prompt_tokens": 4, "total_tokens": 4}
    (item,) = body["data"]
    assert set(item) == {"object", "index", "embedding"}
    assert item["object"] == "embedding" and item["index"] == 0
    assert len(item["embedding"]) == 16 and all(isinstance(x, float) for x in item["embedding"])
    v = np.array(item["embedding"])
    assert abs(np.linalg.norm(v) - 1) < 1e-6
    np.testing.assert_allclose(v, embedder.embed(["the quick brown fox"])[0], rtol=0, atol=1e-7)


async def test_base64_round_trip_equals_float(client: httpx.AsyncClient) -> None:
    texts = ["alpha beta", "gamma", "alpha beta gamma delta"]
    f = (await post(client, input=texts, encoding_format="float")).json()
    b = (await post(client, input=texts, encoding_format="base64")).json()
    assert all(isinstance(d["embedding"], str) for d in b["data"])
    assert len(base64.b64decode(b["data"][0]["embedding"])) == 16 * 4  # little-endian float32
    np.testing.assert_array_equal(vectors(f), vectors(b))  # float32 -> JSON float -> float32 is exact
    assert [d["index"] for d in b["data"]] == [0, 1, 2]
    assert b["usage"] == f["usage"] == {"prompt_tokens": 7, "total_tokens": 7}


async def test_default_encoding_is_float(client: httpx.AsyncClient) -> None:
    r = await post(client, input="x y")
    assert isinstance(r.json()["data"][0]["embedding"], list)


async def test_token_inputs(client: httpx.AsyncClient, embedder: FakeEmbedder) -> None:
    ids = embedder.tokenize("hello there world")
    one = (await post(client, input=ids)).json()
    assert len(one["data"]) == 1 and one["usage"]["prompt_tokens"] == 3
    text = (await post(client, input="hello there world")).json()
    np.testing.assert_array_equal(vectors(one), vectors(text))  # token ids embed like their text
    many = (await post(client, input=[[1, 2], [3], [4, 5, 6]])).json()
    assert [d["index"] for d in many["data"]] == [0, 1, 2]
    assert many["usage"] == {"prompt_tokens": 6, "total_tokens": 6}


async def test_order_and_batch_independence(client: httpx.AsyncClient) -> None:
    texts = [f"word{i} " * (1 + i % 5) for i in range(20)]
    batch = vectors((await post(client, input=texts)).json())
    for i in (0, 7, 19):
        alone = vectors((await post(client, input=texts[i])).json())
        np.testing.assert_allclose(batch[i], alone[0], atol=1e-6)


async def test_dimensions_and_user(client: httpx.AsyncClient) -> None:
    r = await post(client, input="a b", dimensions=16, user="user-1234")
    assert r.status_code == 200 and len(r.json()["data"][0]["embedding"]) == 16
    msg = error(await post(client, input="a b", dimensions=8), 400, "dimensions", "unsupported_value")
    assert "16" in msg and "dimensions" in msg
    error(await post(client, input="a b", dimensions=0), 400, "dimensions", "invalid_value")
    error(await post(client, input="a b", dimensions="16"), 400, "dimensions", "invalid_value")


async def test_alias_and_unknown_model(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/embeddings", json={"model": "text-embedding-3-small", "input": "a"})
    assert r.status_code == 200 and r.json()["model"] == "text-embedding-3-small"
    r = await client.post("/v1/embeddings", json={"model": "nope", "input": "a"})
    error(r, 404, "model", "model_not_found")
    r = await client.post("/v1/embeddings", json={"model": "fake-model", "input": "a"})  # a chat model
    error(r, 404, "model", "model_not_found")


async def test_models_lists_embedding_models(client: httpx.AsyncClient) -> None:
    ids = [m["id"] for m in (await client.get("/v1/models")).json()["data"]]
    assert MODEL in ids and "text-embedding-3-small" in ids and "fake-model" in ids
    assert (await client.get(f"/v1/models/{MODEL}")).json()["id"] == MODEL


@pytest.mark.parametrize(("body", "param", "code", "words"), [
    ({"input": ""}, "input", "invalid_value", "empty string"),
    ({"input": []}, "input", "invalid_value", "empty array"),
    ({"input": ["a", ""]}, "input", "invalid_value", "item 1 is an empty string"),
    ({"input": [[1], []]}, "input", "invalid_value", "item 1 is an empty token array"),
    ({"input": ["a"] * 2049}, "input", "invalid_value", "at most 2048"),
    ({"input": 5}, "input", "invalid_value", "a string, an array of strings"),
    ({"input": None}, "input", "invalid_value", "a string, an array of strings"),
    ({"input": {"text": "a"}}, "input", "invalid_value", "a string, an array of strings"),
    ({"input": [1.5]}, "input", "invalid_value", "a string, an array of strings"),
    ({"input": ["a", 1]}, "input", "invalid_value", "item 1 is not a string"),
    ({"input": [1, "a"]}, "input", "invalid_value", "token 1 is not an integer"),
    ({"input": [1, True]}, "input", "invalid_value", "token 1 is not an integer"),
    ({"input": [[1], 2]}, "input", "invalid_value", "item 1 is not an array"),
    ({"input": [[1, "2"]]}, "input", "invalid_value", "item 0: token 1 is not an integer"),
    ({"input": [-1]}, "input", "invalid_value", "negative"),
    ({"input": [5000]}, "input", "invalid_value", "vocabulary"),
    ({"input": [[1], [2, 1000]]}, "input", "invalid_value", "input 1"),
    ({"input": "a b c d e f g h i"}, "input", "context_length_exceeded", "maximum context length is 8"),
    ({"input": ["ok", "a b c d e f g h i"]}, "input", "context_length_exceeded", "input 1 has 9 tokens"),
    ({"input": list(range(9))}, "input", "context_length_exceeded", "9 tokens"),
    ({"input": "a", "encoding_format": "int8"}, "encoding_format", "invalid_value", "'float' or 'base64'"),
    ({"input": "a", "user": 5}, "user", "invalid_value", "string"),
    ({"input": "a", "temperature": 1}, "temperature", "unknown_parameter", "temperature"),
])
async def test_invalid_requests(client: httpx.AsyncClient, embedder: FakeEmbedder, body: dict[str, Any],
                                param: str, code: str, words: str) -> None:
    msg = error(await post(client, **body), 400, param, code)
    assert words in msg, msg
    assert not embedder.calls  # nothing reached the model


async def test_missing_fields_and_bad_bodies(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/embeddings", json={"model": MODEL})
    assert "'input'" in error(r, 400, "input", "missing_required_parameter")
    r = await client.post("/v1/embeddings", json={"input": "a"})
    error(r, 400, "model", "missing_required_parameter")
    r = await client.post("/v1/embeddings", content=b"{not json", headers={"content-type": "application/json"})
    error(r, 400, None, None)
    r = await client.post("/v1/embeddings", json=["a"])
    error(r, 400, None, None)


async def test_total_tokens_per_request_cap(tmp_path: Path) -> None:
    big = FakeEmbedder(MODEL, max_tokens=512)
    app = make_app(FakeEngine(), tmp_path, embedders=[big])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t",
                                 headers={"Authorization": f"Bearer {API_KEY}"}) as c:
        r = await c.post("/v1/embeddings", json={"model": MODEL, "input": [[1] * 500] * 601})
    assert "max 300000 tokens per request" in error(r, 400, "input", "max_tokens_per_request")


async def test_auth_and_scopes(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/embeddings", json={"model": MODEL, "input": "a"}, headers={"Authorization": ""})
    assert r.status_code == 401
    r = await client.get("/v1/embeddings")
    assert r.status_code == 405


async def test_no_embedding_models_configured(tmp_path: Path) -> None:
    app = make_app(FakeEngine(), tmp_path)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t",
                                 headers={"Authorization": f"Bearer {API_KEY}"}) as c:
        r = await c.post("/v1/embeddings", json={"model": MODEL, "input": "a"})
    error(r, 404, "model", "model_not_found")


async def test_engine_failure_is_500(client: httpx.AsyncClient, embedder: FakeEmbedder) -> None:
    embedder.fail = True
    r = await post(client, input="a")
    error(r, 500, None, None, "server_error")
    assert (await post(client, input="a")).status_code == 200  # the next request is served


async def test_concurrent_requests_share_forward_passes(client: httpx.AsyncClient, embedder: FakeEmbedder) -> None:
    texts = [f"request {i} text" for i in range(16)]
    rs = await asyncio.gather(*(post(client, input=t) for t in texts))
    assert all(r.status_code == 200 for r in rs)
    for t, r in zip(texts, rs, strict=True):  # each request got its own rows back
        np.testing.assert_allclose(vectors(r.json())[0], embedder.embed([t])[0], atol=1e-6)
    served = embedder.calls[:-len(texts)]  # minus the reference calls just made
    assert sum(len(c) for c in served) == 16
    assert len(served) < 16, [len(c) for c in served]  # merged into fewer calls than requests


async def test_metrics_count_embeddings(client: httpx.AsyncClient) -> None:
    await post(client, input="a")
    await post(client, input="")
    text = (await client.get("/metrics")).text
    assert f'hearth_requests_total{{endpoint="embeddings",model="{MODEL}",outcome="stop"}} 1.0' in text


# ------------------------------------------------------------------ configuration


def test_default_settings_serve_the_default_embedding_model(tmp_path: Path) -> None:
    from hearth.bootstrap import build_runtime
    from hearth.config import Settings

    s = Settings(data_dir=tmp_path, api_key=API_KEY, engine={"backend": "fake"})  # type: ignore[arg-type]
    assert s.embedding_models == ["all-minilm-l6-v2"]
    rt = build_runtime(s, with_platform=False)
    assert rt.container.embeddings.models() == ["all-minilm-l6-v2"]
    assert isinstance(rt.container.embeddings.embedder("all-minilm-l6-v2"), FakeEmbedder)
    assert "all-minilm-l6-v2" in [m.id for m in rt.container.models.list().data]
    off = build_runtime(Settings(data_dir=tmp_path, api_key=API_KEY, engine={"backend": "fake"},  # type: ignore[arg-type]
                                 embedding_models=[]), with_platform=False)
    assert off.container.embeddings.models() == []


def test_embedding_model_resolution(tmp_path: Path) -> None:
    from hearth.bootstrap import build_engine, resolve_embedding_spec, resolve_spec
    from hearth.config import Settings
    from hearth.engine.assets import AssetError

    s = Settings(data_dir=tmp_path, aliases={"minilm": "all-minilm-l6-v2"})
    assert resolve_embedding_spec(s, "minilm").id == "all-minilm-l6-v2"
    d = tmp_path / "my-encoder"
    d.mkdir()
    spec = resolve_embedding_spec(s, str(d))
    assert (spec.id, spec.kind, spec.source) == ("my-encoder", "embedding", str(d.resolve()))
    with pytest.raises(AssetError, match="chat model"):
        resolve_embedding_spec(s, "smollm2-135m-instruct")
    with pytest.raises(AssetError, match="unknown embedding model"):
        resolve_embedding_spec(s, "nope")
    with pytest.raises(AssetError, match="embedding_models"):
        build_engine(s, resolve_spec(s, "all-minilm-l6-v2"))
