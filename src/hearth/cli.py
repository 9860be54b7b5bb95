"""hearth command line: serve, models."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TaskID, TransferSpeedColumn
from rich.table import Table

from hearth.config import ConfigError, Settings, load_settings

app = typer.Typer(help="hearth: a self-hosted, OpenAI-compatible LLM API platform.", no_args_is_help=True)
models_app = typer.Typer(help="Embedded and configured models.", no_args_is_help=True)
app.add_typer(models_app, name="models")


def _platform_commands() -> None:
    from hearth.cli_platform import keys_app, migrate, projects_app, usage

    app.add_typer(keys_app, name="keys")
    app.add_typer(projects_app, name="projects")
    app.command()(migrate)
    app.command()(usage)


_platform_commands()


def _moderation_commands() -> None:
    from hearth.cli_moderation import moderation_app

    app.add_typer(moderation_app, name="moderation")


_moderation_commands()
err = Console(stderr=True)

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="TOML or YAML settings file")]


def _settings(config: Path | None, **overrides: object) -> Settings:
    try:
        return load_settings(config, **overrides)
    except ConfigError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        try:
            return all(ipaddress.ip_address(a[4][0]).is_loopback for a in socket.getaddrinfo(host, None))
        except OSError:
            return False


def _progress_prepare(settings: Settings, names: list[str]) -> None:
    from hearth import bootstrap
    from hearth.engine import assets

    if settings.engine.backend == "fake":
        return  # the fake engine (tests, gateway benchmarks) needs no weights
    with Progress("[progress.description]{task.description}", BarColumn(), DownloadColumn(),
                  TransferSpeedColumn(), console=err, transient=False) as bar:
        for name in names:
            spec = bootstrap.resolve_spec(settings, name)
            asset = bootstrap.asset_for(spec)
            if not assets.is_prepared(asset, bootstrap.models_dir(settings)):
                task = bar.add_task(f"assembling {spec.id}", total=spec.size)
                assets.prepare(asset, bootstrap.models_dir(settings),
                               lambda done, total, t=task: bar.update(t, completed=done, total=total))
            if spec.kind == "embedding":
                continue
            path = assets.target_path(asset, bootstrap.models_dir(settings))
            if path.is_file():
                bootstrap.loadable_weights(settings, spec, path, _lazy_bar(bar, f"fast layout {spec.id}"))


def _lazy_bar(bar: Progress, label: str) -> Callable[[int, int], None]:
    """A progress callback whose bar appears at its first call: none when there is nothing to do."""
    task: list[TaskID] = []

    def update(done: int, total: int) -> None:
        if not task:
            task.append(bar.add_task(label, total=total))
        bar.update(task[0], completed=done, total=total)

    return update


def _setup_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")


@app.command()
def serve(
    config: ConfigOpt = None,
    host: Annotated[str | None, typer.Option(help="Bind address (default 127.0.0.1)")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default 8000)")] = None,
    model: Annotated[list[str] | None, typer.Option("--model", "-m", help="Model id, alias or GGUF path; repeatable")] = None,
    log_level: Annotated[str | None, typer.Option(help="debug, info, warning or error")] = None,
) -> None:
    """Start the OpenAI-compatible API server."""
    overrides: dict[str, object] = {"host": host, "port": port, "log_level": log_level}
    if model:
        overrides["serve"] = model
    settings = _settings(config, **overrides)
    _setup_logging(settings.log_level)
    if not settings.auth and not is_loopback(settings.host):
        err.print(f"[red]refusing to bind to {settings.host}[/red]: auth is switched off (HEARTH_AUTH=false), "
                  "so anyone who can reach this address could use the server. Switch auth on, or bind to "
                  "127.0.0.1.")
        raise typer.Exit(2)
    from hearth import bootstrap
    from hearth.engine.assets import AssetError
    from hearth.engine.memory import InsufficientMemory

    bootstrap.configure_threads(settings)
    try:
        _progress_prepare(settings, settings.models_to_serve())
        runtime = bootstrap.build_runtime(settings)
    except (AssetError, InsufficientMemory) as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    if runtime.admin_key is not None:
        # First start: the only time the admin key is shown (it is also in a 0600 file).
        err.print(f"[bold]admin key[/bold] (shown once; also saved to {runtime.admin_key_file}, mode 0600):\n"
                  f"  {runtime.admin_key}\n"
                  "Create a project key with: hearth keys create --name my-app")
    _run_loop(_serve(settings, runtime))


def _run_loop(main: Coroutine[Any, Any, None]) -> None:
    """uvloop when it is installed (it is, with uvicorn[standard]): measured ~2x less CPU per request
    than asyncio's default loop in bench/gateway.py."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        asyncio.run(main)
        return
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main)


async def _serve(settings: Settings, runtime: object) -> None:
    import uvicorn

    from hearth.api.app import create_app
    from hearth.bootstrap import Runtime

    assert isinstance(runtime, Runtime)
    await runtime.registry.start()
    runtime.container.moderations.warm()
    app_ = create_app(runtime.container, max_body_bytes=settings.max_body_bytes)
    cfg = uvicorn.Config(app_, host=settings.host, port=settings.port, log_config=None, access_log=False,
                         lifespan="off", loop="none", http="httptools", timeout_graceful_shutdown=5)
    server = uvicorn.Server(cfg)
    served = ", ".join([e.info.id for e in runtime.registry.engines()] + runtime.container.embeddings.models())
    logging.getLogger("hearth").info("serving %s on http://%s:%d/v1", served, settings.host, settings.port)
    tasks = [asyncio.create_task(c) for c in [_flush_key_usage(runtime), *runtime.background()]]
    try:
        await server.serve()
    finally:
        for t in tasks:
            t.cancel()
        await runtime.container.auth.flush_used()
        await runtime.close()
        await runtime.registry.stop()


async def _flush_key_usage(runtime: object, every_s: float = 15.0) -> None:
    """last_used_at is written in batches, not once per request."""
    from hearth.bootstrap import Runtime

    assert isinstance(runtime, Runtime)
    while True:
        await asyncio.sleep(every_s)
        await runtime.container.auth.flush_used()


@models_app.command("list")
def models_list(config: ConfigOpt = None) -> None:
    """List the model catalog and whether each model is ready to serve."""
    from hearth import bootstrap
    from hearth.engine import assets

    settings = _settings(config)
    table = Table("id", "ready", "source", "description")
    for spec in settings.catalog().values():
        ready = assets.is_prepared(bootstrap.asset_for(spec), bootstrap.models_dir(settings))
        table.add_row(spec.id, "yes" if ready else "no", spec.source, spec.description)
    Console().print(table)


@models_app.command("prepare")
def models_prepare(
    names: Annotated[list[str] | None, typer.Argument(help="Model ids (default: the served models)")] = None,
    config: ConfigOpt = None,
    verify: Annotated[bool, typer.Option(help="Re-hash prepared files against the pinned sha256")] = False,
) -> None:
    """Assemble embedded models into the data dir (once) and verify them."""
    from hearth import bootstrap
    from hearth.engine import assets

    settings = _settings(config)
    targets = names or settings.models_to_serve()
    try:
        _progress_prepare(settings, targets)
        for name in targets:
            spec = bootstrap.resolve_spec(settings, name)
            if verify:
                digest = assets.verify(bootstrap.asset_for(spec), bootstrap.models_dir(settings))
                err.print(f"{spec.id}: sha256 {digest} ok")
            path = assets.target_path(bootstrap.asset_for(spec), bootstrap.models_dir(settings))
            err.print(f"{spec.id}: ready at {path}")
            loaded = bootstrap.loadable_weights(settings, spec, path) if spec.kind != "embedding" else path
            if loaded != path:
                err.print(f"{spec.id}: served from {loaded} (its Q5_0 matmul weights as Q8_0: same values, faster)")
    except assets.AssetError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None


@models_app.command("path")
def models_path(name: str, config: ConfigOpt = None) -> None:
    """Print the GGUF path of a model (assembling it first if needed)."""
    from hearth import bootstrap
    from hearth.engine import assets

    settings = _settings(config)
    try:
        spec = bootstrap.resolve_spec(settings, name)
        _progress_prepare(settings, [name])
        print(assets.target_path(bootstrap.asset_for(spec), bootstrap.models_dir(settings)))
    except assets.AssetError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None


if __name__ == "__main__":
    app()
