"""A BERT encoder forward pass in numpy float32 (the sentence-transformers pipeline: encoder,
mean or CLS pooling over the real tokens, L2 normalisation) -- the alternative to llama.cpp that
bench/embeddings.py measures. Not shipped: hearth runs embeddings in llama.cpp (faster here).

Weights come from a Hugging Face `BertModel` state dict (safetensors names, with or without the
`bert.` prefix of the task heads). Dense weights are stored transposed, (in, out), and the
query/key/value projections fused into one (H, 3H) matrix, so each layer costs four 2-D GEMMs
on the whole padded batch plus the attention products.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from hearth.engine.embedding.safetensors import read_safetensors

F32 = npt.NDArray[np.float32]
Pooling = Literal["mean", "cls"]


@dataclass(frozen=True, slots=True)
class BertConfig:
    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    vocab_size: int
    max_positions: int
    layer_norm_eps: float
    hidden_act: str = "gelu"

    @classmethod
    def from_hf(cls, cfg: dict[str, Any]) -> BertConfig:
        if cfg.get("model_type", "bert") != "bert":
            raise ValueError(f"not a BERT model (model_type={cfg.get('model_type')!r})")
        if cfg.get("position_embedding_type", "absolute") != "absolute":
            raise ValueError("only absolute position embeddings are supported")
        act = cfg.get("hidden_act", "gelu")
        if act not in _ACTIVATIONS:
            raise ValueError(f"unsupported hidden_act {act!r} (supported: {sorted(_ACTIVATIONS)})")
        return cls(
            hidden_size=int(cfg["hidden_size"]), num_layers=int(cfg["num_hidden_layers"]),
            num_heads=int(cfg["num_attention_heads"]), intermediate_size=int(cfg["intermediate_size"]),
            vocab_size=int(cfg["vocab_size"]), max_positions=int(cfg.get("max_position_embeddings", 512)),
            layer_norm_eps=float(cfg.get("layer_norm_eps", 1e-12)), hidden_act=act,
        )


@dataclass(frozen=True, slots=True)
class Layer:
    qkv_w: F32  # (H, 3H)
    qkv_b: F32
    out_w: F32  # (H, H)
    out_b: F32
    ln1_g: F32
    ln1_b: F32
    up_w: F32  # (H, I)
    up_b: F32
    down_w: F32  # (I, H)
    down_b: F32
    ln2_g: F32
    ln2_b: F32


@dataclass(frozen=True, slots=True)
class BertWeights:
    config: BertConfig
    word: F32
    position: F32
    token_type: F32  # row 0 is added to every token (single-segment input)
    ln_g: F32
    ln_b: F32
    layers: tuple[Layer, ...]

    @classmethod
    def from_state_dict(cls, config: BertConfig, sd: dict[str, npt.NDArray[Any]]) -> BertWeights:
        def get(name: str) -> F32:
            for key in (name, f"bert.{name}"):
                if key in sd:
                    return np.ascontiguousarray(sd[key], dtype=np.float32)
            raise ValueError(f"weight `{name}` is missing from the checkpoint")

        def dense(name: str) -> F32:  # torch Linear keeps (out, in); GEMMs want (in, out)
            return np.ascontiguousarray(get(f"{name}.weight").T)

        layers = []
        for i in range(config.num_layers):
            p = f"encoder.layer.{i}."
            a = p + "attention."
            layers.append(Layer(
                qkv_w=np.ascontiguousarray(np.concatenate(
                    [dense(a + "self.query"), dense(a + "self.key"), dense(a + "self.value")], axis=1)),
                qkv_b=np.concatenate([get(a + "self.query.bias"), get(a + "self.key.bias"),
                                      get(a + "self.value.bias")]),
                out_w=dense(a + "output.dense"), out_b=get(a + "output.dense.bias"),
                ln1_g=get(a + "output.LayerNorm.weight"), ln1_b=get(a + "output.LayerNorm.bias"),
                up_w=dense(p + "intermediate.dense"), up_b=get(p + "intermediate.dense.bias"),
                down_w=dense(p + "output.dense"), down_b=get(p + "output.dense.bias"),
                ln2_g=get(p + "output.LayerNorm.weight"), ln2_b=get(p + "output.LayerNorm.bias"),
            ))
        has_types = any(k.endswith("embeddings.token_type_embeddings.weight") for k in sd)
        token_type = (get("embeddings.token_type_embeddings.weight") if has_types
                      else np.zeros((1, config.hidden_size), np.float32))
        word = get("embeddings.word_embeddings.weight")
        if word.shape != (config.vocab_size, config.hidden_size):
            raise ValueError(f"word embeddings have shape {word.shape}, the config says "
                             f"({config.vocab_size}, {config.hidden_size})")
        return cls(config=config, word=word, position=get("embeddings.position_embeddings.weight"),
                   token_type=token_type, ln_g=get("embeddings.LayerNorm.weight"),
                   ln_b=get("embeddings.LayerNorm.bias"), layers=tuple(layers))


def _layer_norm(x: F32, g: F32, b: F32, eps: float) -> F32:
    mu = x.mean(axis=-1, keepdims=True)
    xc = x - mu
    var = np.mean(xc * xc, axis=-1, keepdims=True)
    out: F32 = xc * (1.0 / np.sqrt(var + eps)).astype(np.float32) * g + b
    return out


def _erf(x: F32) -> F32:
    # Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7): numpy has no erf, and the exact GELU of
    # BERT needs one. Far below float32 noise of the rest of the network.
    s = np.sign(x)
    a = np.abs(x)
    t = 1.0 / (1.0 + np.float32(0.3275911) * a)
    poly = t * (np.float32(0.254829592) + t * (np.float32(-0.284496736) + t * (
        np.float32(1.421413741) + t * (np.float32(-1.453152027) + t * np.float32(1.061405429)))))
    out: F32 = s * (1.0 - poly * np.exp(-a * a))
    return out


def _gelu(x: F32) -> F32:
    out: F32 = np.float32(0.5) * x * (1.0 + _erf(x * np.float32(0.7071067811865476)))
    return out


def _gelu_tanh(x: F32) -> F32:
    c = np.float32(0.7978845608028654)
    t: F32 = np.tanh(c * (x + np.float32(0.044715) * x * x * x))
    out: F32 = np.float32(0.5) * x * (np.float32(1.0) + t)
    return out


def _relu(x: F32) -> F32:
    out: F32 = np.maximum(x, np.float32(0.0))
    return out


_ACTIVATIONS = {"gelu": _gelu, "gelu_new": _gelu_tanh, "gelu_pytorch_tanh": _gelu_tanh, "relu": _relu}


def encode(w: BertWeights, ids: npt.NDArray[np.int64], mask: npt.NDArray[np.bool_]) -> F32:
    """Last hidden states (B, L, H) of a right-padded batch; `mask` marks the real tokens."""
    cfg = w.config
    bsz, seq = ids.shape
    h, nh = cfg.hidden_size, cfg.num_heads
    hd = h // nh
    act = _ACTIVATIONS[cfg.hidden_act]
    x = w.word[ids] + w.position[:seq] + w.token_type[0]
    x = _layer_norm(x.reshape(bsz * seq, h), w.ln_g, w.ln_b, cfg.layer_norm_eps)
    # Padded keys get a large negative score, so no real token attends to padding.
    key_bias = np.where(mask, np.float32(0.0), np.float32(-1e9)).astype(np.float32)[:, None, None, :]
    scale = np.float32(1.0 / np.sqrt(hd))
    for layer in w.layers:
        qkv = (x @ layer.qkv_w + layer.qkv_b).reshape(bsz, seq, 3, nh, hd)
        q = qkv[:, :, 0].transpose(0, 2, 1, 3)  # (B, nh, L, hd)
        k = qkv[:, :, 1].transpose(0, 2, 3, 1)  # (B, nh, hd, L)
        v = qkv[:, :, 2].transpose(0, 2, 1, 3)
        scores = (q * scale) @ k + key_bias
        scores -= scores.max(axis=-1, keepdims=True)
        np.exp(scores, out=scores)
        scores /= scores.sum(axis=-1, keepdims=True)
        ctx = (scores @ v).transpose(0, 2, 1, 3).reshape(bsz * seq, h)
        x = _layer_norm(x + (ctx @ layer.out_w + layer.out_b), layer.ln1_g, layer.ln1_b, cfg.layer_norm_eps)
        up = act(x @ layer.up_w + layer.up_b)
        x = _layer_norm(x + (up @ layer.down_w + layer.down_b), layer.ln2_g, layer.ln2_b, cfg.layer_norm_eps)
    return x.reshape(bsz, seq, h)


def pool(hidden: F32, mask: npt.NDArray[np.bool_], mode: Pooling) -> F32:
    """Sentence vectors (B, H), L2-normalised: mean over real tokens, or the [CLS] state."""
    if mode == "cls":
        vec = hidden[:, 0, :]
    else:
        m = mask[:, :, None].astype(np.float32)
        vec = (hidden * m).sum(axis=1) / np.maximum(m.sum(axis=1), np.float32(1e-9))
    norm = np.linalg.norm(vec, axis=1, keepdims=True)
    out: F32 = (vec / np.maximum(norm, np.float32(1e-12))).astype(np.float32)
    return out


class NumpyEmbedder:
    """all-MiniLM-L6-v2 (or any sentence-transformers BERT directory) in numpy; HF tokenizer.

    Set OPENBLAS_NUM_THREADS before numpy loads to choose BLAS threads.
    """

    def __init__(self, model_dir: Path, max_batch_tokens: int = 8192) -> None:
        from tokenizers import Tokenizer

        cfg = BertConfig.from_hf(json.loads((model_dir / "config.json").read_text()))
        self.weights = BertWeights.from_state_dict(cfg, read_safetensors(model_dir / "model.safetensors"))
        self.dimensions = cfg.hidden_size
        self.max_batch_tokens = max_batch_tokens
        self.tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self.tok.no_truncation()
        self.tok.no_padding()

    def tokenize(self, text: str) -> list[int]:
        return list(self.tok.encode(text).ids)

    def embed(self, texts: list[str]) -> F32:
        return self.embed_tokens([self.tokenize(t) for t in texts])

    def embed_tokens(self, lists: list[list[int]]) -> F32:
        out = np.empty((len(lists), self.dimensions), np.float32)
        order = sorted(range(len(lists)), key=lambda i: len(lists[i]))  # similar lengths together
        start = 0
        while start < len(order):
            end, longest = start, 0
            while end < len(order):
                longest = max(longest, len(lists[order[end]]))
                if (end - start + 1) * longest > self.max_batch_tokens and end > start:
                    break
                end += 1
            chunk = order[start:end]
            seq = max(len(lists[i]) for i in chunk)
            ids = np.zeros((len(chunk), seq), np.int64)
            mask = np.zeros((len(chunk), seq), np.bool_)
            for row, i in enumerate(chunk):
                ids[row, :len(lists[i])] = lists[i]
                mask[row, :len(lists[i])] = True
            out[chunk] = pool(encode(self.weights, ids, mask), mask, "mean")
            start = end
        return out
