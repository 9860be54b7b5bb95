"""Composition root: Settings -> engines, services -> container -> app."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hearth.api.deps import Container
from hearth.config import ModelSpec, Settings
from hearth.engine import assets, memory, weights
from hearth.engine.embedding import Embedder
from hearth.engine.interface import Engine
from hearth.engine.moderation import Moderator
from hearth.engine.registry import EngineRegistry
from hearth.platform.policies import LimitOverride
from hearth.platform.store import PlatformStore
from hearth.rendering.gguf_meta import ArrayInfo, read_gguf_metadata
from hearth.services.admin import AdminService
from hearth.services.auth import AuthService
from hearth.services.chat import ChatService
from hearth.services.embeddings import EmbeddingsService
from hearth.services.limits import LimitsService
from hearth.services.metering import Metering
from hearth.services.metrics import Metrics
from hearth.services.models import ModelsService
from hearth.services.moderations import ModerationsService
from hearth.services.policy import PolicyCache
from hearth.services.usage import UsageService

log = logging.getLogger("hearth")


@dataclass(slots=True)
class Runtime:
    registry: EngineRegistry
    container: Container
    # Set on the very first start only: the new admin key, to show once (also in admin_key_file).
    admin_key: str | None = None
    admin_key_file: Path | None = None

    def background(self) -> list[Coroutine[Any, Any, None]]:
        """What runs beside the server: the usage ledger's flusher, the policy reloader."""
        m = self.container.metering
        out = []
        if m.ledger is not None:
            out.append(m.ledger.run())
        if m.policy is not None:
            out.append(m.policy.run())
        return out

    async def close(self) -> None:
        """Flush the usage ledger, close the limiter connections and the embedders (at shutdown)."""
        m = self.container.metering
        if m.ledger is not None:
            await asyncio.to_thread(m.ledger.close)
        await m.close()
        self.container.embeddings.close()
        self.container.moderations.close()


def models_dir(settings: Settings) -> Path:
    return settings.data_dir / "models"


def asset_for(spec: ModelSpec) -> assets.Asset:
    return assets.Asset(model_id=spec.id, source=spec.source, sha256=spec.sha256, size=spec.size)


def resolve_spec(settings: Settings, name: str) -> ModelSpec:
    """A catalog id, a configured alias, or a path to a user's GGUF."""
    catalog = settings.catalog()
    if name in catalog:
        return catalog[name]
    target = settings.aliases.get(name)
    if target in catalog:
        return catalog[target]
    for spec in catalog.values():
        if name in spec.aliases:
            return spec
    if name.endswith(".gguf") or os.path.sep in name:
        p = Path(name).expanduser()
        return ModelSpec(id=p.stem, source=str(p.resolve()))
    raise assets.AssetError(
        f"unknown model `{name}`: not in the catalog ({', '.join(sorted(catalog))}) and not a .gguf path"
    )


def configure_threads(settings: Settings) -> None:
    """OpenMP (and hearth's kernel) read their environment when llama.cpp's library loads: set it
    before any import of it."""
    if settings.engine.omp_wait_policy:
        os.environ.setdefault("OMP_WAIT_POLICY", settings.engine.omp_wait_policy)
    if settings.engine.omp_spin_count is not None:
        os.environ.setdefault("GOMP_SPINCOUNT", str(settings.engine.omp_spin_count))
    if settings.engine.matmul_kernel == "llamafile":  # read once by hearth's kernel in llama.cpp
        os.environ.setdefault("HEARTH_MATMUL", "llamafile")


def derived_dir(settings: Settings) -> Path:
    return settings.data_dir / "derived"


def weight_layout(settings: Settings) -> str:
    """"fast" or "original": engine.weight_layout, with "auto" settled by the matmul kernel.

    hearth's kernel (requirements/llama-cpp-python/) unpacks Q5_0 in registers, once per weight
    block for 16 activation columns, so batched steps gain little from the Q8_0 rewrite, and the
    file as it is saves ~90 MB of memory, the derived copy and a lone stream ~19 % of the bytes it
    reads per token (README, Engine). llama.cpp's own kernel unpacks Q5_0 for every product: there
    the rewrite pays.
    """
    layout = settings.engine.weight_layout
    if layout != "auto":
        return layout
    if not weights.applies_here():
        return "original"
    configure_threads(settings)  # before llama.cpp's library loads, as for serving
    from hearth.engine.backends.llamacpp_model import q8_kernel

    return "fast" if q8_kernel() == "llamafile" else "original"


def loadable_weights(settings: Settings, spec: ModelSpec, path: Path,
                     progress: weights.Progress | None = None) -> Path:
    """The GGUF the engine loads for `path`: with the "fast" weight layout, its lossless Q8_0
    rewrite (engine/weights.py), written once into the data dir."""
    if weight_layout(settings) != "fast" or not weights.applies_here():
        return path
    return weights.fast_layout(path, derived_dir(settings), spec.id, progress)


def build_engine(settings: Settings, spec: ModelSpec, progress: assets.Progress | None = None) -> Engine:
    if spec.kind == "embedding":
        raise assets.AssetError(f"`{spec.id}` is an embedding model: list it in `embedding_models` "
                                "(HEARTH_EMBEDDING_MODELS), not among the chat models to serve")
    e = settings.engine
    if e.backend == "fake":
        from hearth.engine.backends.fake import FakeEngine

        return FakeEngine(spec.id, context_length=spec.context_length or e.n_ctx, token_delay_s=e.fake_token_delay_s,
                          reply_tokens=e.fake_reply_tokens)
    configure_threads(settings)
    from hearth.engine.backends.llamacpp import LlamaCppConfig, LlamaCppEngine

    path = loadable_weights(settings, spec, assets.prepare(asset_for(spec), models_dir(settings), progress))
    return LlamaCppEngine(
        LlamaCppConfig(
            model_id=spec.id,
            path=str(path),
            n_ctx=e.n_ctx,
            n_batch=e.n_batch,
            idle_step_tokens=e.idle_step_tokens,
            idle_gather_ms=e.idle_gather_ms,
            pad_small_steps=e.pad_small_steps,
            max_seqs=e.max_seqs,
            max_queue=e.max_queue,
            n_threads=0 if e.n_threads == "auto" else e.n_threads,
            n_threads_batch=e.n_threads_batch,
            flash_attn=e.flash_attn,
            context_length=spec.context_length,
            prefix_cache_entries=e.prefix_cache_entries,
            prefix_cache_host_mb=e.prefix_cache_host_mb,
            batch_invariant=e.batch_invariant,
        )
    )


def resolve_embedding_spec(settings: Settings, name: str) -> ModelSpec:
    """A catalog id of kind "embedding", an alias of one, or a path: a GGUF embedding model or a
    sentence-transformers BERT directory."""
    catalog = settings.catalog()
    spec = catalog.get(name) or catalog.get(settings.aliases.get(name, ""))
    if spec is None:
        spec = next((s for s in catalog.values() if name in s.aliases), None)
    if spec is None and (name.endswith(".gguf") or os.path.sep in name or Path(name).expanduser().is_dir()):
        p = Path(name).expanduser().resolve()
        return ModelSpec(id=p.stem if p.suffix == ".gguf" else p.name, source=str(p), kind="embedding")
    if spec is None:
        embedding = sorted(s.id for s in catalog.values() if s.kind == "embedding")
        raise assets.AssetError(f"unknown embedding model `{name}`: not in the catalog ({', '.join(embedding)}), "
                                "not a .gguf file and not a model directory")
    if spec.kind != "embedding":
        raise assets.AssetError(f"`{spec.id}` is a chat model, not an embedding model; list it in `serve`")
    return spec


def build_embedder(settings: Settings, spec: ModelSpec) -> Embedder:
    """The embedding model of `spec` in llama.cpp; a model directory is converted to a GGUF in the
    data dir once. FakeEmbedder for backend "fake"."""
    from hearth.engine.embedding import EmbedderLoadError, FakeEmbedder, load_embedder

    if settings.engine.backend == "fake":
        return FakeEmbedder(spec.id)
    path = assets.target_path(asset_for(spec), models_dir(settings))
    if not path.exists():
        raise assets.AssetError(f"embedding model `{spec.id}`: not found: {path}")
    try:
        return load_embedder(path, spec.id, cache_dir=models_dir(settings), max_tokens=spec.context_length,
                             threads=settings.engine.embedding_threads)
    except EmbedderLoadError as exc:
        raise assets.AssetError(f"embedding model `{spec.id}`: {exc}") from exc


def _shape(path: str) -> tuple[int, memory.ModelShape]:
    meta = read_gguf_metadata(path, skip_arrays=True)
    arch = meta.architecture or ""

    def num(key: str, default: int = 0) -> int:
        v = meta.kv.get(f"{arch}.{key}")
        return v if isinstance(v, int) and not isinstance(v, bool) else default

    tokens = meta.kv.get("tokenizer.ggml.tokens")
    n_vocab = tokens.length if isinstance(tokens, ArrayInfo) else 0
    n_head = num("attention.head_count", 1)
    shape = memory.ModelShape(
        n_layer=num("block_count"), n_embd=num("embedding_length"), n_head=n_head,
        n_head_kv=num("attention.head_count_kv", n_head), n_vocab=n_vocab,
        key_length=num("attention.key_length"), value_length=num("attention.value_length"),
    )
    return os.path.getsize(path), shape


def check_memory(settings: Settings, engines: list[Engine]) -> None:
    """Refuse to serve models whose weights, KV caches and buffers exceed the memory limit."""
    e = settings.engine
    limit = e.memory_limit_mb * memory.MiB if e.memory_limit_mb else None
    if limit is None:
        total = memory.system_memory_bytes()
        if total is None:
            return
        limit = int(total * 0.9)  # leave room for the OS, the HTTP front end and the page cache
    prints = []
    for eng in engines:
        path = getattr(getattr(eng, "cfg", None), "path", None)
        if not path:
            continue  # fake engines cost nothing
        weights, shape = _shape(path)
        prints.append(memory.footprint(eng.info.id, weights, shape, e.n_ctx, min(e.n_batch, 512),
                                       host_cache=e.prefix_cache_host_mb * memory.MiB))
    for fp in prints:
        log.info("memory estimate %s", fp.describe())
    memory.check_fits(prints, limit)


def open_platform(settings: Settings) -> PlatformStore:
    """Migrate the database (keeping its data) and open the store. The HMAC secret for key hashes
    lives in the data dir, outside the database, so a stolen database cannot verify keys."""
    from hearth.platform.db import make_engine, make_sessionmaker, upgrade
    from hearth.platform.keys import load_or_create_server_secret
    from hearth.platform.store import PlatformStore

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    logging.getLogger("alembic").setLevel(logging.WARNING)  # one line per plugin at INFO: noise
    db = make_engine(settings.database())
    upgrade(db)
    secret = load_or_create_server_secret(settings.data_dir / "server-secret")
    return PlatformStore(make_sessionmaker(db), secret)


def admin_key_path(settings: Settings) -> Path:
    return settings.data_dir / "admin-key.txt"


def build_limits(settings: Settings, policy: PolicyCache | None = None) -> LimitsService | None:
    """Limits from config and per-project overrides; Redis when several replicas must share them
    (exact across processes). None when nothing can ever be limited (no config, no database)."""
    from hearth.platform.ratelimit import MemoryLimiter

    defaults = {model: LimitOverride(r.rpm, r.tpm, r.rpd, r.tpd, r.batch_tpd)
                for model, r in settings.rate_limits.items()}
    defaults = {m: v for m, v in defaults.items() if any(x is not None for x in (v.rpm, v.tpm, v.rpd, v.tpd))}
    if not defaults and policy is None:
        return None
    if settings.redis_url is not None:
        from hearth.platform.ratelimit import RedisLimiter

        return LimitsService(RedisLimiter(settings.redis_url.get_secret_value()), defaults, policy)
    return LimitsService(MemoryLimiter(), defaults, policy)


def build_metering(settings: Settings, store: PlatformStore | None) -> Metering:
    """Rate limits, prices, spend limits and the usage ledger (the last two need the database)."""
    from hearth.platform.pricing import RateCard

    prices = {m: RateCard.of(p.input, p.output, p.cached_input) for m, p in settings.prices.items()}
    if store is None:
        return Metering(limits=build_limits(settings), prices=prices)
    from hearth.platform.policies import PolicyStore
    from hearth.platform.quotas import MemorySpendMeter, RedisSpendMeter, SpendMeter
    from hearth.platform.usage import UsageLedger

    policy = PolicyCache(PolicyStore(store.sessions))
    policy.load()
    ledger = UsageLedger(store.sessions, settings.data_dir / "usage-wal",
                         flush_interval_s=settings.usage.flush_interval_s, fsync=settings.usage.fsync)
    ledger.open()  # replays what a crashed process left, before this one serves
    meter: SpendMeter = (RedisSpendMeter(settings.redis_url.get_secret_value()) if settings.redis_url is not None
                         else MemorySpendMeter())
    return Metering(limits=build_limits(settings, policy), ledger=ledger, prices=prices, meter=meter,
                    policy=policy)


def build_usage(metering: Metering, registry: EngineRegistry, embedding_models: list[str],
                org_id: str) -> UsageService | None:
    policy = metering.policy
    if policy is None or policy.store is None:
        return None
    return UsageService(metering, policy.store, lambda: [e.info.id for e in registry.engines()] + embedding_models,
                        org_id)


def build_moderator(settings: Settings) -> Moderator | None:
    """The /v1/moderations classifier; it loads its models on the first request, not here."""
    m = settings.moderation
    if not m.enabled:
        return None
    if m.backend == "fake":
        from hearth.engine.moderation import FakeModerator

        return FakeModerator()
    from hearth.engine.embedding import load_default_embedder
    from hearth.engine.moderation import NetworkModerator
    from hearth.engine.moderation.features import Featurizer

    cache, threads = models_dir(settings), settings.engine.embedding_threads
    featurizer = Featurizer(lambda: load_default_embedder(cache_dir=cache, threads=threads))
    return NetworkModerator(m.weights, thresholds=m.thresholds, featurizer=featurizer)


def build_runtime(settings: Settings, progress: assets.Progress | None = None,
                  engines: list[Engine] | None = None, *, with_platform: bool = True,
                  embedders: list[Embedder] | None = None) -> Runtime:
    """The runtime of `settings`. A caller that hands in its own `engines` composes by hand: its
    embedding models are `embedders` (none unless given); otherwise both are built from settings."""
    if engines is None:
        engines = [build_engine(settings, resolve_spec(settings, m), progress)
                   for m in settings.models_to_serve()]
        check_memory(settings, engines)
        if embedders is None:
            embedders = [build_embedder(settings, resolve_embedding_spec(settings, m))
                         for m in settings.embedding_models]
    embedders = embedders or []
    aliases: dict[str, str] = {}
    for spec in settings.catalog().values():
        for a in spec.aliases:
            aliases[a] = spec.id
    aliases.update(settings.aliases)
    registry = EngineRegistry(engines, aliases)
    metrics = Metrics(registry)
    static = settings.api_key.get_secret_value() if settings.api_key else None
    store = open_platform(settings) if with_platform and settings.auth else None
    admin_key = store.bootstrap(admin_key_path(settings)) if store is not None else None
    org = store.organization() if store is not None else None
    auth = AuthService(keys=store if settings.auth else None, static_key=static if settings.auth else None,
                       org_id=org.id if org is not None else "org-local")
    metering = build_metering(settings, store)
    embeddings = EmbeddingsService(embedders, settings.aliases, metrics, metering=metering)
    moderations = ModerationsService(build_moderator(settings), metrics, metering=metering)
    container = Container(
        chat=ChatService(registry, metrics, metering=metering),
        models=ModelsService(registry, created=int(time.time()),
                             embedding_models=embeddings.models() + moderations.models(),
                             embedding_aliases={**embeddings.aliases(), **moderations.aliases()}),
        auth=auth,
        admin=AdminService(store, on_change=auth.invalidate) if store is not None else None,
        metrics=metrics,
        metering=metering,
        usage=build_usage(metering, registry, embeddings.models() + moderations.models(), org.id)
        if org is not None else None,
        embeddings=embeddings,
        moderations=moderations,
    )
    return Runtime(registry=registry, container=container, admin_key=admin_key,
                   admin_key_file=admin_key_path(settings) if store is not None else None)
