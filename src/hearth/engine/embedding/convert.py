"""Sentence-transformers BERT directory -> BERT GGUF for llama.cpp's embedding mode.

Mirrors what llama.cpp's convert_hf_to_gguf.py does for `BertModel`: arch `bert`, the WordPiece
vocabulary in llama.cpp's spelling (continuations lose `##`, word starts gain U+2581, special
tokens stay as they are), the special-token ids and add-CLS/SEP flags from the tokenizer files,
the pooling of `1_Pooling/config.json`, and the weights as F32 under GGUF tensor names.

`prepared_gguf` converts once into a cache directory, under a name that changes when the source
files or this converter change, and renames the file into place only when it is complete.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from hearth.engine.embedding.safetensors import read_safetensors

CONVERTER_VERSION = 1
REQUIRED = ("config.json", "tokenizer.json", "model.safetensors")


class ConversionError(ValueError):
    """The directory is not a sentence-transformers BERT model this converter supports."""


def _json(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ConversionError(f"{path}: expected a JSON object")
    return data


def check_dir(model_dir: Path) -> None:
    missing = [n for n in REQUIRED if not (model_dir / n).is_file()]
    if missing:
        raise ConversionError(f"{model_dir} is not a sentence-transformers BERT directory: missing "
                              f"{', '.join(missing)} (needed: {', '.join(REQUIRED)})")


def max_seq_length(model_dir: Path) -> int | None:
    """sentence-transformers' `max_seq_length` (the token limit the model was tuned for), if set."""
    p = model_dir / "sentence_bert_config.json"
    v = _json(p).get("max_seq_length") if p.is_file() else None
    return v if isinstance(v, int) and v > 0 else None


def _pooling(model_dir: Path) -> int:
    import gguf

    p = model_dir / "1_Pooling" / "config.json"
    if not p.is_file():
        return int(gguf.PoolingType.MEAN)
    cfg = _json(p)
    if cfg.get("pooling_mode_mean_tokens"):
        return int(gguf.PoolingType.MEAN)
    if cfg.get("pooling_mode_cls_token"):
        return int(gguf.PoolingType.CLS)
    raise ConversionError(f"{p}: only mean or CLS pooling is supported")


def convert(model_dir: Path, out: Path) -> Path:
    """Write the GGUF of `model_dir` to `out` (F32 weights, about the size of the safetensors)."""
    import gguf

    check_dir(model_dir)
    cfg = _json(model_dir / "config.json")
    if cfg.get("model_type", "bert") != "bert" or cfg.get("position_embedding_type", "absolute") != "absolute":
        raise ConversionError(f"{model_dir}: only BERT models with absolute positions are supported "
                              f"(model_type={cfg.get('model_type')!r})")
    if cfg.get("hidden_act", "gelu") != "gelu":
        raise ConversionError(f"{model_dir}: hidden_act {cfg.get('hidden_act')!r} is not supported (gelu only)")
    tok = _json(model_dir / "tokenizer.json")
    model = tok.get("model", {})
    if model.get("type") != "WordPiece":
        raise ConversionError(f"{model_dir}: tokenizer is {model.get('type')!r}, not WordPiece")
    vocab = sorted(model["vocab"].items(), key=lambda kv: kv[1])
    if [i for _, i in vocab] != list(range(len(vocab))):
        raise ConversionError(f"{model_dir}: the WordPiece vocabulary has gaps")
    special = {t["content"] for t in tok.get("added_tokens", []) if t.get("special")}
    tensors = read_safetensors(model_dir / "model.safetensors")
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.BERT, int(cfg["num_hidden_layers"]))

    w = gguf.GGUFWriter(str(out), "bert")
    w.add_name(model_dir.name)
    w.add_context_length(int(cfg.get("max_position_embeddings", 512)))
    w.add_embedding_length(int(cfg["hidden_size"]))
    w.add_feed_forward_length(int(cfg["intermediate_size"]))
    w.add_block_count(int(cfg["num_hidden_layers"]))
    w.add_head_count(int(cfg["num_attention_heads"]))
    w.add_layer_norm_eps(float(cfg.get("layer_norm_eps", 1e-12)))
    w.add_causal_attention(False)
    w.add_pooling_type(gguf.PoolingType(_pooling(model_dir)))
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    w.add_token_type_count(int(cfg.get("type_vocab_size", 2)))
    w.add_tokenizer_model("bert")
    w.add_token_list([t if t in special else (t[2:] if t.startswith("##") else "\u2581" + t) for t, _ in vocab])
    w.add_token_types([gguf.TokenType.CONTROL if t in special else gguf.TokenType.NORMAL for t, _ in vocab])
    gguf.SpecialVocab(model_dir, n_vocab=len(vocab)).add_to_gguf(w, quiet=True)
    for name, arr in tensors.items():
        key = name.removeprefix("bert.")
        if key == "embeddings.position_ids" or key.startswith(("pooler.", "cls.")):
            continue  # buffers and task heads: not part of the encoder
        new = names.get_name(key, try_suffixes=(".weight", ".bias"))
        if new is None:
            raise ConversionError(f"{model_dir}: no GGUF name for the tensor {name}")
        w.add_tensor(new, np.ascontiguousarray(arr, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return out


def fingerprint(model_dir: Path) -> str:
    """Changes when a source file or the converter changes (names, sizes, mtimes; no full hash)."""
    h = hashlib.sha256(f"v{CONVERTER_VERSION}".encode())
    for p in sorted(model_dir.rglob("*.json")) + [model_dir / "model.safetensors"]:
        st = p.stat()
        h.update(f"{p.relative_to(model_dir)}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def prepared_gguf(model_dir: Path, cache_dir: Path, model_id: str) -> Path:
    """The GGUF of `model_dir` in `cache_dir`, converted now unless an up-to-date one is there."""
    check_dir(model_dir)
    out = cache_dir / f"{model_id}.{fingerprint(model_dir)}.gguf"
    if out.is_file():
        return out
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(f".partial-{os.getpid()}")
    try:
        convert(model_dir, tmp)
        os.replace(tmp, out)  # never a half-written GGUF under the final name
    finally:
        tmp.unlink(missing_ok=True)
    for old in cache_dir.glob(f"{model_id}.*.gguf"):  # earlier conversions of the same model
        if old != out:
            old.unlink(missing_ok=True)
    return out
