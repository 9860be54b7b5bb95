"""`hearth keys ...`, `hearth projects ...`, `hearth migrate`: the admin API's use cases from a shell.

They open the same database as the server (settings.database / HEARTH_DATABASE_URL) and go
through the same AdminService, so the CLI and the API can never disagree.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from hearth.config import ConfigError, Settings, load_settings
from hearth.protocol import admin as wire

T = TypeVar("T")
keys_app = typer.Typer(help="Project and admin API keys.", no_args_is_help=True)
projects_app = typer.Typer(help="Projects of the organization.", no_args_is_help=True)
out = Console(width=200)  # ids must never be cut short in tables (they are copied into commands)
err = Console(stderr=True)
ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="TOML or YAML settings file")]


def _settings(config: Path | None) -> Settings:
    try:
        return load_settings(config)
    except ConfigError as exc:
        err.print(f"[red]invalid configuration:[/red] {exc}")
        raise typer.Exit(2) from None


def _run(config: Path | None, job: Callable[[Any], Awaitable[T]]) -> T:
    from hearth import bootstrap
    from hearth.protocol.errors import InvalidRequest
    from hearth.services.admin import AdminService, NotFoundError

    settings = _settings(config)
    store = bootstrap.open_platform(settings)
    store.bootstrap(bootstrap.admin_key_path(settings))
    try:
        return asyncio.run(job(AdminService(store)))
    except (NotFoundError, InvalidRequest) as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None


def migrate(config: ConfigOpt = None) -> None:
    """Create or upgrade the database schema (hearth serve also does this at start); data is kept."""
    from hearth import bootstrap

    settings = _settings(config)
    bootstrap.open_platform(settings)
    out.print(f"database at the latest schema: {settings.database().split('@')[-1]}")


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Option(help="A name to recognise the key by")] = "cli key",
    project: Annotated[str | None, typer.Option(help="Project id (default: the default project)")] = None,
    read_only: Annotated[bool, typer.Option("--read-only", help="Only read endpoints (model list)")] = False,
    scope: Annotated[list[str] | None, typer.Option(help="Restrict to endpoint families; repeatable")] = None,
    admin: Annotated[bool, typer.Option("--admin", help="An admin key for /v1/organization instead")] = False,
    config: ConfigOpt = None,
) -> None:
    """Create a key and print its secret (shown this once)."""

    async def job(svc: Any) -> str:
        if admin:
            return str((await svc.create_admin_key(wire.AdminKeyCreate(name=name))).value)
        pid = project or await svc.default_project_id()
        perms: Any = "read_only" if read_only else (scope or "all")
        return str((await svc.create_project_key(pid, wire.ProjectKeyCreate(name=name, permissions=perms))).value)

    secret = _run(config, job)
    err.print("[bold]new key[/bold] (shown once; store it now):")
    out.print(secret, soft_wrap=True)


@keys_app.command("list")
def keys_list(
    project: Annotated[str | None, typer.Option(help="Project id (default: the default project)")] = None,
    admin: Annotated[bool, typer.Option("--admin", help="List admin keys")] = False,
    config: ConfigOpt = None,
) -> None:
    """List keys (redacted; secrets are never shown again)."""

    async def job(svc: Any) -> list[Any]:
        items: list[Any] = []
        after = None
        while True:
            page = (await svc.list_admin_keys(after, 100) if admin
                    else await svc.list_project_keys(project or await svc.default_project_id(), after, 100))
            items += page.data
            if not page.has_more:
                return items
            after = page.last_id

    table = Table("id", "name", "key", "permissions", "created", "last used")
    for k in _run(config, job):
        table.add_row(k.id, k.name, k.redacted_value, str(getattr(k, "permissions", "admin")),
                      str(k.created_at), str(k.last_used_at or "-"))
    out.print(table)


@keys_app.command("revoke")
def keys_revoke(key_id: str, config: ConfigOpt = None) -> None:
    """Revoke a key: refused from the next request on, on every replica."""
    _run(config, lambda svc: svc.revoke_key(key_id))
    out.print(f"revoked {key_id}")


@keys_app.command("rotate")
def keys_rotate(
    key_id: str,
    overlap: Annotated[int, typer.Option(help="Seconds the old secret keeps working")] = 0,
    config: ConfigOpt = None,
) -> None:
    """Give a key a new secret (same id, same permissions); print it once."""
    secret = _run(config, lambda svc: svc.rotate_key(key_id, overlap))
    err.print(f"[bold]new secret for {key_id}[/bold] (shown once; the old one works {overlap} s more):")
    out.print(secret, soft_wrap=True)


@projects_app.command("list")
def projects_list(all_: Annotated[bool, typer.Option("--all", help="Include archived")] = False,
                  config: ConfigOpt = None) -> None:
    async def job(svc: Any) -> list[Any]:
        return list((await svc.list_projects(None, 100, all_)).data)

    table = Table("id", "name", "status", "created")
    for p in _run(config, job):
        table.add_row(p.id, p.name, p.status, str(p.created_at))
    out.print(table)


@projects_app.command("create")
def projects_create(name: str, config: ConfigOpt = None) -> None:
    p = _run(config, lambda svc: svc.create_project(wire.ProjectCreate(name=name)))
    out.print(p.id)


@projects_app.command("archive")
def projects_archive(project_id: str, config: ConfigOpt = None) -> None:
    """Archive a project: its keys stop working."""
    p = _run(config, lambda svc: svc.archive_project(project_id))
    out.print(f"archived {p.id}")


def usage(
    days: Annotated[int, typer.Option(help="How many days back, today included", min=1, max=366)] = 7,
    project: Annotated[list[str] | None, typer.Option(help="Only these project ids; repeatable")] = None,
    config: ConfigOpt = None,
) -> None:
    """Usage and cost by day x model x project, from the usage ledger (UTC days)."""
    import calendar
    import time

    from hearth import bootstrap
    from hearth.platform.pricing import usd
    from hearth.platform.usage import UsageLedger
    from hearth.platform.usage_queries import UsageQuery, aggregate

    settings = _settings(config)
    store = bootstrap.open_platform(settings)
    # Records a stopped (or crashed) server left in its write-ahead log count too.
    ledger = UsageLedger(store.sessions, settings.data_dir / "usage-wal")
    ledger.open()
    ledger.close()
    t = time.gmtime()
    today = calendar.timegm((t.tm_year, t.tm_mon, t.tm_mday, 0, 0, 0))
    start = today - (days - 1) * 86400
    q = UsageQuery(start=start, end=today + 86400, width=86400, group_by=("model", "project_id"),
                   project_ids=tuple(project or ()))
    rows = aggregate(store.sessions, q)
    table = Table("day (UTC)", "model", "project", "requests", "input tokens", "cached", "output tokens", "cost (USD)")
    totals = [0, 0, 0, 0, 0]
    for g in rows:
        table.add_row(time.strftime("%Y-%m-%d", time.gmtime(g.bucket_start)), str(g.keys["model"]),
                      str(g.keys["project_id"] or "-"), f"{g.requests:,}", f"{g.input_tokens:,}",
                      f"{g.cached_tokens:,}", f"{g.output_tokens:,}", f"{usd(g.cost_nanousd):.6f}")
        for i, v in enumerate((g.requests, g.input_tokens, g.cached_tokens, g.output_tokens, g.cost_nanousd)):
            totals[i] += v
    table.add_section()
    table.add_row("total", "", "", f"{totals[0]:,}", f"{totals[1]:,}", f"{totals[2]:,}", f"{totals[3]:,}",
                  f"{usd(totals[4]):.6f}")
    out.print(table)
