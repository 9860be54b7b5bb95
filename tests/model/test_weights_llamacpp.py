"""The Q8_0 rewrite of a Q5_0 model gives llama.cpp's exact logits, batched and one token at a time."""

from __future__ import annotations

import os
from pathlib import Path

import gguf
import numpy as np
import pytest
from tiny_gguf import build_tiny_gguf

pytestmark = pytest.mark.model

L = pytest.importorskip("llama_cpp")


def _logits(path: Path, prompt: list[int]) -> tuple[np.ndarray, np.ndarray]:
    from hearth.engine.backends.llamacpp_model import ContextConfig, LlamaModel

    m = LlamaModel(str(path), ContextConfig(512, 512, 1, 1, 1))
    b = L.llama_batch_init(512, 0, 1)
    try:
        def decode(tokens: list[int], start: int) -> np.ndarray:
            for i, t in enumerate(tokens):
                b.token[i], b.pos[i], b.n_seq_id[i], b.logits[i] = t, start + i, 1, 1
                b.seq_id[i][0] = 0
            b.n_tokens = len(tokens)
            assert L.llama_decode(m.ctx, b) == 0
            return np.stack([m.logits(i).copy() for i in range(len(tokens))])

        batched = decode(prompt, 0)  # a batched matmul (llama.cpp's GEMM path)
        single = decode([prompt[-1]], len(prompt))  # a one-token step (its dot-product path)
        return batched, single
    finally:
        L.llama_batch_free(b)
        m.close()


def test_a_q5_0_model_and_its_q8_0_rewrite_give_identical_logits(tmp_path: Path) -> None:
    from hearth import bootstrap
    from hearth.engine import weights

    if not weights.applies_here():
        pytest.skip("the rewrite applies on x86-64 only")
    from hearth.config import Settings

    src = build_tiny_gguf(tmp_path / "tiny-q5_0.gguf", quant=gguf.GGMLQuantizationType.Q5_0)
    settings = Settings(data_dir=tmp_path / "data", engine={"weight_layout": "fast"})  # type: ignore[arg-type]
    spec = bootstrap.resolve_spec(settings, str(src))
    fast = bootstrap.loadable_weights(settings, spec, src)
    assert fast.parent == tmp_path / "data" / "derived"
    types = {t.name: t.tensor_type for t in gguf.GGUFReader(fast).tensors}
    assert types["blk.0.ffn_up.weight"] == types["token_embd.weight"] == gguf.GGMLQuantizationType.Q8_0
    assert gguf.GGMLQuantizationType.Q5_0 not in types.values()

    # 45 tokens: two full 16-column tiles of hearth's kernel and a 13-column remainder
    prompt = [int(t) for t in np.random.default_rng(0).integers(200, 40_000, 45)]
    want_batched, want_single = _logits(src, prompt)
    got_batched, got_single = _logits(fast, prompt)
    assert np.isfinite(want_batched).all() and want_batched.std() > 0.1  # real, varied logits
    assert np.array_equal(want_batched, got_batched)
    assert np.array_equal(want_single, got_single)

    original = Settings(data_dir=tmp_path / "data", engine={"weight_layout": "original"})  # type: ignore[arg-type]
    assert bootstrap.loadable_weights(original, spec, src) == src


def test_batched_q8_0_matmuls_run_in_hearths_kernel_where_the_build_and_cpu_have_it() -> None:
    """`make install` builds llama.cpp with hearth's kernel (requirements/llama-cpp-python/), and
    it runs wherever the CPU has the instructions it was compiled for (`-march=native`);
    test_hearths_kernel_gives_llamafiles_floats_bit_for_bit compares its logits with llamafile's."""
    import importlib.metadata

    from hearth.engine.backends.llamacpp_model import q8_kernel

    version = importlib.metadata.version("llama-cpp-python")
    if "+hearth" not in version:
        assert q8_kernel() == "llamafile"
        pytest.skip(f"llama-cpp-python {version} is the stock build")
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
        flags = set(next(ln for ln in cpuinfo if ln.startswith("flags")).split())
    except (OSError, StopIteration):
        pytest.skip("no /proc/cpuinfo")
    if {"avx512f", "avx512vl", "avx512dq", "avx512bw", "avx512_vnni", "f16c"} <= flags:
        assert q8_kernel() == "hearth-512"
    elif {"avx2", "fma", "f16c"} <= flags:
        assert q8_kernel() == "hearth-256"
    else:
        assert q8_kernel() == "llamafile"


def test_the_auto_weight_layout_keeps_q5_0_where_hearths_kernel_multiplies_it(tmp_path: Path) -> None:
    from hearth import bootstrap
    from hearth.config import Settings
    from hearth.engine import weights
    from hearth.engine.backends.llamacpp_model import q8_kernel

    src = build_tiny_gguf(tmp_path / "tiny-q5_0.gguf", quant=gguf.GGMLQuantizationType.Q5_0)
    settings = Settings(data_dir=tmp_path / "data")  # type: ignore[call-arg]
    assert settings.engine.weight_layout == "auto"
    spec = bootstrap.resolve_spec(settings, str(src))
    loaded = bootstrap.loadable_weights(settings, spec, src)
    if weights.applies_here() and q8_kernel() == "llamafile":
        assert bootstrap.weight_layout(settings) == "fast"
        assert loaded.parent == tmp_path / "data" / "derived"
    else:
        assert bootstrap.weight_layout(settings) == "original"
        assert loaded == src
        assert not (tmp_path / "data" / "derived").exists()


def test_hearths_kernel_gives_llamafiles_floats_bit_for_bit(tmp_path: Path) -> None:
    """The same build, once with hearth's kernel and once (HEARTH_MATMUL=llamafile, read once per
    process, hence the subprocess) with llamafile's: batched logits of a Q5_0 model and of its
    Q8_0 rewrite, with a prompt that leaves a remainder tile, must be the same floats."""
    import subprocess
    import sys

    from hearth.engine import weights
    from hearth.engine.backends.llamacpp_model import q8_kernel

    if q8_kernel() == "llamafile":
        pytest.skip("hearth's kernel is not in this build or does not run on this CPU")
    q5 = build_tiny_gguf(tmp_path / "tiny-q5_0.gguf", quant=gguf.GGMLQuantizationType.Q5_0)
    q8 = tmp_path / "tiny-q8_0.gguf"
    weights.transcode(q5, q8)
    models = [q5, q8]
    prompt = [int(t) for t in np.random.default_rng(1).integers(200, 40_000, 37)]
    script = (
        "import sys, numpy as np\n"
        "from pathlib import Path\n"
        "from test_weights_llamacpp import _logits\n"
        "from hearth.engine.backends.llamacpp_model import q8_kernel\n"
        "assert q8_kernel() == 'llamafile', q8_kernel()\n"
        "for i, m in enumerate(sys.argv[2:]):\n"
        "    np.save(Path(sys.argv[1]) / f'{i}.npy', _logits(Path(m), [int(t) for t in "
        f"{prompt!r}])[0])\n"
    )
    path = [str(Path(__file__).parent), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = {**os.environ, "HEARTH_MATMUL": "llamafile", "PYTHONPATH": os.pathsep.join(path)}
    subprocess.run([sys.executable, "-c", script, str(tmp_path), *map(str, models)], env=env, check=True,
                   timeout=300)
    for i, m in enumerate(models):
        ours = _logits(m, prompt)[0]
        theirs = np.load(tmp_path / f"{i}.npy")
        assert ours.shape == theirs.shape == (len(prompt), ours.shape[1])
        assert np.array_equal(ours, theirs), f"{m.name}: max diff {np.abs(ours - theirs).max()}"
