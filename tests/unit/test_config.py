"""hearth.config.load_settings: file (TOML/YAML) < env HEARTH_* < explicit overrides."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hearth.config import BUILTIN_MODELS, DEFAULT_MODEL, ConfigError, Settings, load_settings

TOML = """
port = 9001
api_key = "sk-from-file"
log_level = "WARNING"
serve = ["smollm2-135m-instruct"]

[aliases]
"gpt-4o-mini" = "smollm2-135m-instruct"

[engine]
backend = "fake"
n_threads = 3
n_ctx = 1024

[[models]]
id = "my-model"
source = "/models/mine.gguf"
aliases = ["mine"]
"""

YAML = """
port: 9002
host: 0.0.0.0
engine:
  backend: fake
  n_threads: 5
  max_seqs: 4
models:
  - id: other
    source: package:pkg/x.gguf
    sha256: abc
aliases:
  small: other
"""


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for k in list(os.environ):
        if k.startswith("HEARTH_"):
            monkeypatch.delenv(k)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))


def write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_defaults(tmp_path: Path) -> None:
    s = load_settings()
    assert s.port == 8000 and s.host == "127.0.0.1"
    assert s.api_key is None
    assert s.engine.backend == "llamacpp" and s.engine.n_threads == "auto" and s.engine.n_threads_batch == 2
    assert s.data_dir == tmp_path / "xdg" / "hearth"
    assert s.models_to_serve() == [DEFAULT_MODEL]
    assert set(s.catalog()) == {m.id for m in BUILTIN_MODELS}


def test_toml_file(tmp_path: Path) -> None:
    s = load_settings(write(tmp_path, "hearth.toml", TOML))
    assert s.port == 9001
    assert s.api_key is not None and s.api_key.get_secret_value() == "sk-from-file"
    assert s.log_level == "warning"
    assert s.serve == ["smollm2-135m-instruct"]
    assert s.aliases == {"gpt-4o-mini": "smollm2-135m-instruct"}
    assert s.engine.backend == "fake" and s.engine.n_threads == 3 and s.engine.n_ctx == 1024
    assert s.engine.n_batch == 512  # untouched nested default
    assert s.models[0].id == "my-model" and s.models[0].aliases == ["mine"]
    assert "my-model" in s.catalog() and DEFAULT_MODEL in s.catalog()


@pytest.mark.parametrize("name", ["hearth.yaml", "hearth.yml"])
def test_yaml_file(tmp_path: Path, name: str) -> None:
    s = load_settings(write(tmp_path, name, YAML))
    assert s.port == 9002 and s.host == "0.0.0.0"
    assert s.engine.backend == "fake" and s.engine.n_threads == 5 and s.engine.max_seqs == 4
    assert s.models[0].source == "package:pkg/x.gguf" and s.models[0].sha256 == "abc"
    assert s.aliases == {"small": "other"}


def test_config_file_from_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEARTH_CONFIG", str(write(tmp_path, "c.toml", TOML)))
    assert load_settings().port == 9001


def test_env_overrides_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEARTH_PORT", "7000")
    monkeypatch.setenv("HEARTH_API_KEY", "sk-from-env")
    monkeypatch.setenv("HEARTH_ENGINE__N_THREADS", "8")
    monkeypatch.setenv("HEARTH_SERVE", '["a", "b"]')
    s = load_settings(write(tmp_path, "hearth.toml", TOML))
    assert s.port == 7000
    assert s.api_key is not None and s.api_key.get_secret_value() == "sk-from-env"
    assert s.serve == ["a", "b"]
    # Nested env var overrides one field of the section; the file's other fields stay.
    assert s.engine.n_threads == 8
    assert s.engine.n_ctx == 1024 and s.engine.backend == "fake"


def test_env_nested_without_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEARTH_ENGINE__N_THREADS", "6")
    monkeypatch.setenv("HEARTH_ENGINE__FLASH_ATTN", "on")
    s = load_settings()
    assert s.engine.n_threads == 6 and s.engine.flash_attn == "on"
    assert s.engine.n_threads_batch == 2


def test_env_overrides_yaml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEARTH_ENGINE__N_THREADS", "9")
    s = load_settings(write(tmp_path, "h.yaml", YAML))
    assert s.engine.n_threads == 9 and s.engine.max_seqs == 4


def test_explicit_overrides_beat_env_and_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEARTH_PORT", "7000")
    monkeypatch.setenv("HEARTH_HOST", "10.0.0.1")
    s = load_settings(write(tmp_path, "hearth.toml", TOML), port=7500, host=None, data_dir=tmp_path / "d")
    assert s.port == 7500
    assert s.host == "10.0.0.1"  # None means "not given": env still applies
    assert s.data_dir == tmp_path / "d"


def test_explicit_nested_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEARTH_ENGINE__N_THREADS", "8")
    s = load_settings(engine={"n_threads": 12, "backend": "fake"})
    assert s.engine.n_threads == 12 and s.engine.backend == "fake"


@pytest.mark.parametrize(
    "name,text",
    [
        ("bad.toml", "port = [unclosed"),
        ("bad.toml", "no_such_setting = 1"),
        ("bad.toml", "port = 99999"),
        ("bad.toml", "[engine]\nn_threads = 0"),
        ("bad.toml", "[engine]\nbackend = \"tpu\""),
        ("bad.yaml", "port: [unclosed"),
        ("bad.yaml", "engine:\n  bogus: 1"),
        ("bad.toml", "[engine]\nn_thread = 4"),
        ("bad.toml", "[[models]]\nid = \"a\"\nsource = \"x\"\nsha = \"y\""),
        ("bad.toml", '[[models]]\nid = "a"\nsource = "x"\n[[models]]\nid = "a"\nsource = "y"'),
    ],
)
def test_bad_file(tmp_path: Path, name: str, text: str) -> None:
    with pytest.raises(ConfigError):
        load_settings(write(tmp_path, name, text))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "nope.toml")


def test_wrong_suffix(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"\.toml"):
        load_settings(write(tmp_path, "c.json", "{}"))


def test_bad_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEARTH_PORT", "not-a-port")
    with pytest.raises(ConfigError):
        load_settings()
    monkeypatch.setenv("HEARTH_PORT", "80")
    monkeypatch.setenv("HEARTH_ENGINE__N_THREADS", "0")
    with pytest.raises(ConfigError):
        load_settings()


def test_secret_not_in_repr(tmp_path: Path) -> None:
    s = load_settings(write(tmp_path, "hearth.toml", TOML))
    assert "sk-from-file" not in repr(s) and "sk-from-file" not in str(s)


def test_settings_direct_construction_ignores_files(tmp_path: Path) -> None:
    s = Settings(data_dir=tmp_path, port=1234)
    assert s.port == 1234 and s.data_dir == tmp_path


def test_unknown_nested_env_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEARTH_ENGINE__N_THREAD", "4")  # typo of N_THREADS
    with pytest.raises(ConfigError):
        load_settings()


def test_the_readme_configuration_example_loads(tmp_path: Path) -> None:
    """The TOML example in the README is valid configuration (extra="forbid" catches a stale key)."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    start = readme.index("# hearth.toml")
    example = tmp_path / "hearth.toml"
    example.write_text(readme[start:readme.index("```", start)])
    s = load_settings(example)
    assert s.rate_limits["*"].rpm == 600 and s.prices["*"].output == 0.6
    assert s.moderation.thresholds == {"violence": 0.6} and s.embedding_models == ["all-minilm-l6-v2"]


def test_openmp_environment_defaults_and_overrides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """OpenMP reads OMP_WAIT_POLICY and GOMP_SPINCOUNT once: configure_threads sets hearth's defaults
    before llama.cpp loads, and never overrides what the environment already says."""
    from hearth.bootstrap import configure_threads

    for k in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT"):
        monkeypatch.delenv(k, raising=False)
    configure_threads(Settings(data_dir=tmp_path))
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE" and os.environ["GOMP_SPINCOUNT"] == "10000"

    monkeypatch.setenv("GOMP_SPINCOUNT", "300")
    configure_threads(Settings(data_dir=tmp_path))
    assert os.environ["GOMP_SPINCOUNT"] == "300"

    monkeypatch.delenv("GOMP_SPINCOUNT")
    s = load_settings(write(tmp_path, "hearth.toml", "[engine]\nomp_spin_count = 2000\n"))
    configure_threads(s)
    assert os.environ["GOMP_SPINCOUNT"] == "2000"

    monkeypatch.delenv("GOMP_SPINCOUNT")
    s = Settings(data_dir=tmp_path, engine={"omp_spin_count": None})  # type: ignore[arg-type]
    configure_threads(s)
    assert "GOMP_SPINCOUNT" not in os.environ


def test_the_matmul_kernel_setting_reaches_llama_cpp_through_the_environment(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """hearth's kernel in llama.cpp reads HEARTH_MATMUL once: configure_threads sets it for
    `matmul_kernel = "llamafile"` and leaves it unset by default."""
    from hearth.bootstrap import configure_threads

    monkeypatch.delenv("HEARTH_MATMUL", raising=False)
    configure_threads(Settings(data_dir=tmp_path))
    assert "HEARTH_MATMUL" not in os.environ
    s = load_settings(write(tmp_path, "hearth.toml", '[engine]\nmatmul_kernel = "llamafile"\n'))
    configure_threads(s)
    assert os.environ["HEARTH_MATMUL"] == "llamafile"
    with pytest.raises(ValueError):
        Settings(data_dir=tmp_path, engine={"matmul_kernel": "mine"})  # type: ignore[arg-type]
