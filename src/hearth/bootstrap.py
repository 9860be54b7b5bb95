"""Composition root: Settings -> engines, services -> container -> app."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from hearth.api.deps import Container
from hearth.config import ModelSpec, Settings
from hearth.engine import assets, memory
from hearth.engine.interface import Engine
from hearth.engine.registry import EngineRegistry
from hearth.platform.store import PlatformStore
from hearth.rendering.gguf_meta import ArrayInfo, read_gguf_metadata
from hearth.services.admin import AdminService
from hearth.services.auth import AuthService
from hearth.services.chat import ChatService
from hearth.services.limits import LimitsService
from hearth.services.metrics import Metrics
from hearth.services.models import ModelsService

log = logging.getLogger("hearth")


@dataclass(slots=True)
class Runtime:
    registry: EngineRegistry
    container: Container
    # Set on the very first start only: the new admin key, to show once (also in admin_key_file).
    admin_key: str | None = None
    admin_key_file: Path | None = None


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
    """OpenMP reads its environment when llama.cpp's library loads: set it before any import of it."""
    if settings.engine.omp_wait_policy:
        os.environ.setdefault("OMP_WAIT_POLICY", settings.engine.omp_wait_policy)


def build_engine(settings: Settings, spec: ModelSpec, progress: assets.Progress | None = None) -> Engine:
    e = settings.engine
    if e.backend == "fake":
        from hearth.engine.backends.fake import FakeEngine

        return FakeEngine(spec.id, context_length=spec.context_length or e.n_ctx, token_delay_s=e.fake_token_delay_s)
    configure_threads(settings)
    from hearth.engine.backends.llamacpp import LlamaCppConfig, LlamaCppEngine

    path = assets.prepare(asset_for(spec), models_dir(settings), progress)
    return LlamaCppEngine(
        LlamaCppConfig(
            model_id=spec.id,
            path=str(path),
            n_ctx=e.n_ctx,
            n_batch=e.n_batch,
            max_seqs=e.max_seqs,
            max_queue=e.max_queue,
            n_threads=e.n_threads,
            n_threads_batch=e.n_threads_batch,
            flash_attn=e.flash_attn,
            context_length=spec.context_length,
            prefix_cache_entries=e.prefix_cache_entries,
            batch_invariant=e.batch_invariant,
        )
    )


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
        prints.append(memory.footprint(eng.info.id, weights, shape, e.n_ctx, min(e.n_batch, 512)))
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


def build_limits(settings: Settings) -> LimitsService | None:
    """Limits from config; Redis when several replicas must share them (exact across processes)."""
    from hearth.platform.ratelimit import Limits, MemoryLimiter

    table = {model: Limits.openai(rpm=r.rpm, tpm=r.tpm, rpd=r.rpd, tpd=r.tpd)
             for model, r in settings.rate_limits.items()}
    table = {m: lim for m, lim in table.items() if lim}
    if not table:
        return None
    if settings.redis_url is not None:
        from hearth.platform.ratelimit import RedisLimiter

        return LimitsService(RedisLimiter(settings.redis_url.get_secret_value()), table)
    return LimitsService(MemoryLimiter(), table)


def build_runtime(settings: Settings, progress: assets.Progress | None = None,
                  engines: list[Engine] | None = None, *, with_platform: bool = True) -> Runtime:
    if engines is None:
        engines = [build_engine(settings, resolve_spec(settings, m), progress)
                   for m in settings.models_to_serve()]
        check_memory(settings, engines)
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
    container = Container(
        chat=ChatService(registry, metrics, limits=build_limits(settings)),
        models=ModelsService(registry, created=int(time.time())),
        auth=auth,
        admin=AdminService(store) if store is not None else None,
        metrics=metrics,
    )
    return Runtime(registry=registry, container=container, admin_key=admin_key,
                   admin_key_file=admin_key_path(settings) if store is not None else None)
