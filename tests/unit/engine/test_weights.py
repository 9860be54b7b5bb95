"""engine/weights.py: the Q5_0 -> Q8_0 rewrite keeps every weight, and the derived file is cached."""

from __future__ import annotations

import os
from pathlib import Path

import gguf
import numpy as np
import pytest
from gguf.quants import dequantize, quantize

from hearth.engine import weights

Q5_0 = gguf.GGMLQuantizationType.Q5_0
Q8_0 = gguf.GGMLQuantizationType.Q8_0
Q4_0 = gguf.GGMLQuantizationType.Q4_0


def _random_q5_0(rng: np.random.Generator, rows: int, blocks: int) -> np.ndarray:
    """Arbitrary Q5_0 bytes: every bit pattern of qh and qs, finite fp16 scales of both signs."""
    raw = rng.integers(0, 256, size=(rows, blocks, 22), dtype=np.uint8)
    d = (rng.standard_normal((rows, blocks)) * 0.05).astype(np.float16)
    raw[:, :, :2] = d.view(np.uint8).reshape(rows, blocks, 2)
    return raw.reshape(rows, blocks * 22)


def test_every_q5_0_weight_keeps_its_exact_value_in_q8_0() -> None:
    rng = np.random.default_rng(0)
    raw = _random_q5_0(rng, 37, 28)  # 896-wide rows, as Qwen2.5-0.5B's
    raw[0, 2:22] = 0xFF  # row 0, block 0: all fifth bits and nibbles set, q = 31 -> 15
    raw[1, 2:22] = 0x00  # row 1, block 0: q = 0 -> -16
    out = weights.q5_0_to_q8_0(raw)
    assert out.shape == (37, 28 * 34) and out.dtype == np.uint8
    want = dequantize(raw, Q5_0)  # gguf's reference dequantizer
    got = dequantize(out, Q8_0)
    assert want.shape == got.shape == (37, 896)
    assert np.array_equal(want, got)
    q8 = out.reshape(-1, 34)[:, 2:].view(np.int8)
    assert q8.min() >= -16 and q8.max() <= 15
    assert (q8[0] == 15).all() and (q8[28] == -16).all()


def test_the_rewrite_is_chunked_without_changing_the_result() -> None:
    rng = np.random.default_rng(1)
    raw = _random_q5_0(rng, 3, 5)
    one = weights.q5_0_to_q8_0(raw)
    old = weights._CHUNK_BLOCKS
    weights._CHUNK_BLOCKS = 4  # blocks of a tensor span chunk boundaries
    try:
        assert np.array_equal(weights.q5_0_to_q8_0(raw), one)
    finally:
        weights._CHUNK_BLOCKS = old
    with pytest.raises(ValueError, match="22-byte blocks"):
        weights.q5_0_to_q8_0(raw[:, :30])


def _write(path: Path, tensors: dict[str, tuple[np.ndarray, gguf.GGMLQuantizationType | None]]) -> Path:
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name("weights-test")
    w.add_block_count(1)
    w.add_token_list(["a", "b", "c"])
    w.add_string("test.note", "kept as it is")
    for name, (arr, qt) in tensors.items():
        if qt is None:
            w.add_tensor(name, arr)
        else:
            w.add_tensor(name, quantize(arr, qt), raw_dtype=qt)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def _model(path: Path, *, output: bool = True) -> Path:
    rng = np.random.default_rng(2)

    def m(rows: int, cols: int) -> np.ndarray:
        return rng.standard_normal((rows, cols)).astype(np.float32)

    t: dict[str, tuple[np.ndarray, gguf.GGMLQuantizationType | None]] = {
        "token_embd.weight": (m(48, 64), Q5_0),
        "blk.0.attn_q.weight": (m(64, 64), Q5_0),
        "blk.0.ffn_up.weight": (m(96, 64), Q4_0),
        "blk.0.attn_norm.weight": (np.ones(64, np.float32), None),
    }
    if output:
        t["output.weight"] = (m(48, 64), Q8_0)
    return _write(path, t)


def _tensors(path: Path) -> dict[str, gguf.ReaderTensor]:
    return {t.name: t for t in gguf.GGUFReader(path).tensors}


def test_matmul_weights_are_rewritten_and_everything_else_is_copied(tmp_path: Path) -> None:
    src = _model(tmp_path / "m.gguf")
    out = weights.fast_layout(src, tmp_path / "cache", "my/model:1")
    assert out.parent == tmp_path / "cache" and out.name.startswith("my_model_1.") and out.name.endswith(".q8.gguf")
    a, b = _tensors(src), _tensors(out)
    assert list(a) == list(b)
    types = {n: t.tensor_type for n, t in b.items()}
    # token_embd is a row lookup when the model has its own output matrix: left as it is.
    assert types == {"token_embd.weight": Q5_0, "blk.0.attn_q.weight": Q8_0,
                     "blk.0.ffn_up.weight": Q4_0, "blk.0.attn_norm.weight": gguf.GGMLQuantizationType.F32,
                     "output.weight": Q8_0}
    for name in a:
        want = dequantize(np.asarray(a[name].data), a[name].tensor_type)
        got = dequantize(np.asarray(b[name].data), b[name].tensor_type)
        assert np.array_equal(want, got), name
    fields = gguf.GGUFReader(out).fields
    assert fields["test.note"].contents() == "kept as it is"
    assert fields["tokenizer.ggml.tokens"].contents() == ["a", "b", "c"]
    assert not list((tmp_path / "cache").glob("*partial*"))


def test_a_tied_embedding_is_a_matmul_weight_and_is_rewritten(tmp_path: Path) -> None:
    src = _model(tmp_path / "tied.gguf", output=False)
    out = weights.fast_layout(src, tmp_path / "cache", "tied")
    assert _tensors(out)["token_embd.weight"].tensor_type == Q8_0


def test_the_derived_file_is_reused_and_replaced_when_the_source_changes(tmp_path: Path) -> None:
    src = _model(tmp_path / "m.gguf")
    cache = tmp_path / "cache"
    first = weights.fast_layout(src, cache, "m")
    stamp = first.stat().st_mtime_ns
    assert weights.fast_layout(src, cache, "m") == first
    assert first.stat().st_mtime_ns == stamp  # not written again
    st = src.stat()
    os.utime(src, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))  # the source was replaced
    second = weights.fast_layout(src, cache, "m")
    assert second != first and second.is_file()
    assert not first.exists()  # the stale derivation is removed
    assert sorted(p.name for p in cache.iterdir()) == [second.name]
    marker = cache / "m.0000000000000000.as-is"  # a stale "nothing to rewrite" goes too
    marker.touch()
    src.write_bytes(src.read_bytes())  # rewritten in place: a new mtime
    third = weights.fast_layout(src, cache, "m")
    assert sorted(p.name for p in cache.iterdir()) == [third.name]


def test_files_with_nothing_to_rewrite_and_unwritable_caches_load_the_original(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(3)
    plain = _write(tmp_path / "plain.gguf", {"blk.0.attn_q.weight": (rng.standard_normal((8, 64)).astype(np.float32), Q8_0)})
    assert weights.fast_layout(plain, tmp_path / "cache", "plain") == plain
    assert [p.suffix for p in (tmp_path / "cache").iterdir()] == [".as-is"]  # no copy, only a marker
    with monkeypatch.context() as m:  # the next start does not read the file again
        m.setattr(gguf, "GGUFReader", lambda *a, **k: pytest.fail("read again"))
        assert weights.fast_layout(plain, tmp_path / "cache", "plain") == plain
    src = _model(tmp_path / "m.gguf")
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    assert weights.fast_layout(src, blocker / "cache", "m") == src  # logged, never fatal
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"GGUF" + b"\0" * 10)
    assert weights.fast_layout(junk, tmp_path / "cache", "junk") == junk
