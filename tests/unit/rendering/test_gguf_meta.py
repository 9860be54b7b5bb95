"""read_gguf_metadata against the two shipped models and against hand-made edge cases."""

from __future__ import annotations

from pathlib import Path

import pytest

from hearth.rendering.gguf_meta import (
    ArrayInfo,
    GGUFFormatError,
    GGUFMetadata,
    read_gguf_metadata,
)


def test_smollm2_header(smollm2_meta: GGUFMetadata) -> None:
    meta = smollm2_meta
    assert meta.version == 3
    assert meta.architecture == "llama"
    assert meta.name == "Smollm2 135M 8k Lc100K Mix1 Ep2"
    assert meta.context_length == 8192
    assert meta.tensor_count == 272
    assert meta.token_id("bos") == 1
    assert meta.token_id("eos") == 2
    # SmolLM2 uses its chat delimiters as bos/eos.
    assert meta.token_text(1) == "<|im_start|>"
    assert meta.token_text(2) == "<|im_end|>"
    assert meta.kv["tokenizer.ggml.model"] == "gpt2"
    assert meta.kv["tokenizer.ggml.add_bos_token"] is False
    tokens = meta.kv["tokenizer.ggml.tokens"]
    assert isinstance(tokens, list) and len(tokens) == 49152
    assert meta.chat_template is not None and "<|im_start|>" in meta.chat_template


def test_qwen_header_from_first_part(qwen_meta: GGUFMetadata) -> None:
    meta = qwen_meta
    assert meta.architecture == "qwen2"
    assert meta.name == "Qwen2.5 Coder 0.5B Instruct AWQ"
    assert meta.context_length == 32768
    assert meta.token_id("bos") == 151643
    assert meta.token_id("eos") == 151645
    assert meta.token_text(151643) == "<|endoftext|>"
    assert meta.token_text(151645) == "<|im_end|>"
    token_type = meta.kv["tokenizer.ggml.token_type"]
    assert isinstance(token_type, list) and len(token_type) == 151936
    assert all(isinstance(t, int) for t in token_type[:10])
    assert meta.chat_template is not None and "<tools>" in meta.chat_template


def test_qwen_header_from_all_parts_matches_first_part(
    qwen_parts: list[Path], qwen_meta: GGUFMetadata
) -> None:
    assert (
        read_gguf_metadata(qwen_parts, skip_arrays=True).kv
        == read_gguf_metadata(qwen_parts[0], skip_arrays=True).kv
    )
    assert qwen_meta.tensor_count == read_gguf_metadata(qwen_parts).tensor_count


def test_skip_arrays_keeps_scalars_and_reports_lengths(
    smollm2_path: Path, smollm2_meta: GGUFMetadata
) -> None:
    skipped = read_gguf_metadata(smollm2_path, skip_arrays=True)
    assert skipped.kv["tokenizer.ggml.tokens"] == ArrayInfo(element_type=8, length=49152)
    merges = skipped.kv["tokenizer.ggml.merges"]
    assert isinstance(merges, ArrayInfo) and merges.length == 48900
    scalars = {k: v for k, v in smollm2_meta.kv.items() if not isinstance(v, list)}
    assert {k: v for k, v in skipped.kv.items() if not isinstance(v, ArrayInfo)} == scalars
    assert skipped.token_text(1) is None  # vocab not read


def _split(data: bytes, sizes: list[int], directory: Path) -> list[Path]:
    """Cut ``data`` into files of ``sizes`` (cycled), so reads straddle many boundaries."""
    paths: list[Path] = []
    offset, i = 0, 0
    while offset < len(data):
        size = sizes[i % len(sizes)]
        path = directory / f"chunk{i:04d}"
        path.write_bytes(data[offset : offset + size])
        paths.append(path)
        offset += size
        i += 1
    return paths


def test_reads_across_chunk_boundaries(
    tmp_path: Path, smollm2_path: Path, smollm2_meta: GGUFMetadata
) -> None:
    with smollm2_path.open("rb") as f:
        head = f.read(4 * 1024 * 1024)  # the whole header of SmolLM2 is well under 4 MiB
    # Tiny chunks first cut through the magic, version and counts; then odd sizes cut through
    # strings, array headers and packed arrays.
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    chunks = _split(head[:40], [1, 2, 3, 5, 7], tmp_path / "a")
    chunks += _split(head[40:], [99_991, 13, 250_007], tmp_path / "b")
    meta = read_gguf_metadata(chunks)
    assert meta.kv == smollm2_meta.kv
    assert meta.tensor_count == smollm2_meta.tensor_count


def test_bad_magic(tmp_path: Path) -> None:
    path = tmp_path / "x.gguf"
    path.write_bytes(b"GGML" + b"\0" * 64)
    with pytest.raises(GGUFFormatError, match="bad magic"):
        read_gguf_metadata(path)


def test_truncated(tmp_path: Path, smollm2_path: Path) -> None:
    path = tmp_path / "x.gguf"
    with smollm2_path.open("rb") as f:
        path.write_bytes(f.read(5000))
    with pytest.raises(GGUFFormatError, match="unexpected end"):
        read_gguf_metadata(path)
