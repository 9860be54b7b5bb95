"""all-MiniLM-L6-v2 in llama.cpp (converted from the shipped safetensors) against a plain numpy
float64 reference and Hugging Face's tokenizer, bring-your-own models, and HTTP end to end."""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from openai import OpenAI

from hearth.engine.backends.fake import FakeEngine
from hearth.engine.embedding import (
    EmbedderLoadError,
    LlamaEmbedder,
    default_model_dir,
    load_default_embedder,
    load_embedder,
)
from hearth.engine.embedding.safetensors import read_safetensors
from tests.conftest import API_KEY, LiveServer, make_app

pytestmark = pytest.mark.model

SENTENCES = [
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The girl is carrying a baby.",
    "A man is riding a horse.",
    "Héllo, WORLD!  Ünïcode, 中文 and emoji 🙂 survive tokenization.",
    "x",
]


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("gguf")


@pytest.fixture(scope="module")
def minilm(cache: Path) -> Iterator[LlamaEmbedder]:
    e = load_default_embedder(cache_dir=cache)
    yield e
    e.close()


@functools.cache
def _checkpoint() -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    d = default_model_dir()
    sd = read_safetensors(d / "model.safetensors")
    return json.loads((d / "config.json").read_text()), {
        k: np.asarray(v, np.float64) for k, v in sd.items() if v.dtype.kind == "f" and "pooler" not in k}


def reference(ids: list[int]) -> np.ndarray:
    """The sentence-transformers pipeline written out plainly in float64 for one unpadded sentence:
    BERT (post-LN, exact erf GELU, per-head attention), mean pooling, L2 normalisation."""
    cfg, w = _checkpoint()
    eps, nh = cfg["layer_norm_eps"], cfg["num_attention_heads"]

    def ln(x: np.ndarray, p: str) -> np.ndarray:
        mu = x.mean(-1, keepdims=True)
        var = ((x - mu) ** 2).mean(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + eps) * w[p + ".weight"] + w[p + ".bias"]

    def lin(x: np.ndarray, p: str) -> np.ndarray:
        return x @ w[p + ".weight"].T + w[p + ".bias"]

    erf = np.vectorize(math.erf)
    n = len(ids)
    x = w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][:n]
    x = ln(x + w["embeddings.token_type_embeddings.weight"][0], "embeddings.LayerNorm")
    for i in range(cfg["num_hidden_layers"]):
        p = f"encoder.layer.{i}."
        q, k, v = (lin(x, p + f"attention.self.{m}") for m in ("query", "key", "value"))
        hd = q.shape[1] // nh
        heads = []
        for h in range(nh):
            s = slice(h * hd, (h + 1) * hd)
            scores = q[:, s] @ k[:, s].T / math.sqrt(hd)
            probs = np.exp(scores - scores.max(-1, keepdims=True))
            heads.append(probs / probs.sum(-1, keepdims=True) @ v[:, s])
        x = ln(x + lin(np.concatenate(heads, 1), p + "attention.output.dense"), p + "attention.output.LayerNorm")
        up = lin(x, p + "intermediate.dense")
        x = ln(x + lin(0.5 * up * (1 + erf(up / math.sqrt(2))), p + "output.dense"), p + "output.LayerNorm")
    vec = x.mean(0)
    return vec / np.linalg.norm(vec)


def test_tokenizer_matches_hugging_face(minilm: LlamaEmbedder) -> None:
    from tokenizers import Tokenizer

    assert (minilm.model_id, minilm.dimensions, minilm.max_tokens) == ("all-minilm-l6-v2", 384, 256)
    assert minilm.tokenize("A man is eating food.") == [101, 1037, 2158, 2003, 5983, 2833, 1012, 102]
    hf = Tokenizer.from_file(str(default_model_dir() / "tokenizer.json"))
    hf.no_truncation()
    hf.no_padding()
    corpus = [*SENTENCES, "don't stop-believing... it's 3.14 $100 #tag @user", "naïve café résumé coöperate",
              "\t tabs\nnewlines\r\n and  spaces ", "日本語のテキスト", "antidisestablishmentarianism",
              "[CLS] written [SEP] specials", "ＦＵＬＬ ｗｉｄｔｈ", "Ελληνικά Русский עברית العربية", ""]
    for text in corpus:
        assert minilm.tokenize(text) == hf.encode(text).ids, text
    # Known difference: HF maps a "word" of more than 100 characters to [UNK]; llama.cpp splits it.
    assert minilm.with_special_tokens([1037, 2158]) == [101, 1037, 2158, 102]
    assert minilm.with_special_tokens([101, 1037, 102]) == [101, 1037, 102]
    long = " ".join(["word"] * 300)
    assert len(minilm.tokenize(long)) == 302  # never truncated: the caller decides
    with pytest.raises(ValueError, match="at most 256"):
        minilm.embed([long])


def test_matches_float64_reference(minilm: LlamaEmbedder) -> None:
    got = minilm.embed(SENTENCES)  # one padded batch of mixed lengths
    assert got.dtype == np.float32 and got.shape == (len(SENTENCES), 384)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    for i, s in enumerate(SENTENCES):
        ref = reference(minilm.tokenize(s))
        assert float(got[i] @ ref) >= 0.9999, (s, float(got[i] @ ref))
        np.testing.assert_allclose(got[i], ref, atol=1e-3)  # llama.cpp: tanh-approximated GELU


def test_semantics(minilm: LlamaEmbedder) -> None:
    v = minilm.embed(SENTENCES[:4])
    sim = v @ v.T
    # sentence-transformers' published similarity for this pair with this model is 0.7553.
    assert abs(sim[0, 1] - 0.7553) < 2e-3
    assert sim[0, 1] > max(sim[0, 2], sim[0, 3]) and sim[0, 3] > sim[0, 2]


def test_batch_equals_single(minilm: LlamaEmbedder) -> None:
    texts = [f"sentence number {i} " * (1 + i % 5) for i in range(12)] + SENTENCES
    batch = minilm.embed(texts)
    for i in (0, 4, 11, 12, 16):
        alone = minilm.embed([texts[i]])[0]
        assert float(batch[i] @ alone) >= 0.99999
    np.testing.assert_allclose(minilm.embed_tokens([minilm.tokenize(t) for t in texts]), batch, atol=1e-6)


def test_bring_your_own_directory_and_gguf(minilm: LlamaEmbedder, cache: Path, tmp_path: Path) -> None:
    """A user's sentence-transformers BERT directory (here a copy with CLS pooling), converted once;
    and a user's GGUF file by path."""
    d = tmp_path / "my-bert"
    d.mkdir()
    for name in ("config.json", "tokenizer.json", "model.safetensors"):
        (d / name).symlink_to(default_model_dir() / name)
    (d / "1_Pooling").mkdir()
    (d / "1_Pooling" / "config.json").write_text('{"pooling_mode_cls_token": true}')
    e = load_embedder(d, cache_dir=tmp_path / "cache")
    assert (e.model_id, e.max_tokens, e.pooling) == ("my-bert", 512, "cls")
    assert float(e.embed(["a b"])[0] @ minilm.embed(["a b"])[0]) < 0.999  # CLS pooling differs from mean
    e.close()
    (gguf_file,) = cache.glob("all-minilm-l6-v2.*.gguf")
    g = load_embedder(gguf_file, "mine", max_tokens=128)
    assert (g.model_id, g.max_tokens, g.dimensions) == ("mine", 128, 384)
    np.testing.assert_allclose(g.embed(SENTENCES[:2]), minilm.embed(SENTENCES[:2]), atol=1e-6)
    g.close()
    (d / "model.safetensors").unlink()
    with pytest.raises(EmbedderLoadError, match=r"model\.safetensors"):
        load_embedder(d, cache_dir=tmp_path / "cache")


@pytest.fixture(scope="module")
def server(minilm: LlamaEmbedder, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    app = make_app(FakeEngine("fake-model"), tmp_path_factory.mktemp("emb"), embedders=[minilm])
    with LiveServer(app) as srv:
        yield srv.url


def test_http_end_to_end(minilm: LlamaEmbedder, server: str) -> None:
    client = OpenAI(base_url=f"{server}/v1", api_key=API_KEY, max_retries=0)
    r = client.embeddings.create(model="all-minilm-l6-v2", input=SENTENCES)  # base64 on the wire
    got = np.array([d.embedding for d in r.data], np.float32)
    np.testing.assert_allclose(got, minilm.embed(SENTENCES), atol=1e-6)
    assert r.usage.prompt_tokens == sum(len(minilm.tokenize(s)) for s in SENTENCES)
    ids = minilm.tokenize(SENTENCES[0])[1:-1]  # without [CLS]/[SEP]: the server adds them
    t = client.embeddings.create(model="all-minilm-l6-v2", input=[ids], encoding_format="float")
    assert float(np.array(t.data[0].embedding) @ got[0]) >= 0.99999
    assert t.usage.prompt_tokens == len(ids) + 2
