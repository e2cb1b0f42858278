"""Commands that run here rather than ask a server: `server`, `demo`, `config` and
`completion`."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import click

from flovyn_tui import config
from flovyn_tui.commands.base import (
    CONTEXT,
    EXIT_API,
    EXIT_USAGE,
    connection_options,
    fail,
    options,
)
from flovyn_tui.output import console, table


@click.command(context_settings=CONTEXT)
@click.option("--host", help="Address to bind (default 127.0.0.1; FLOVYN_HOST).")
@click.option("--port", type=click.IntRange(0, 65535), help="Port (default 8000; FLOVYN_PORT).")
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False),
    help="Where the SQLite file and the admin key live (default ~/.local/share/flovyn; FLOVYN_DATA_DIR).",
)
@click.option(
    "--database",
    metavar="URL",
    help="sqlite:///path or postgresql://user@host/db (default SQLite in the data dir; FLOVYN_DATABASE).",
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    show_default=True,
)
def server(
    host: str | None, port: int | None, data_dir: str | None, database: str | None, log_level: str
) -> None:
    """Run the Flovyn server: REST API, streams, worker protocol, metrics.

    \b
    Examples:
      flovyn server
      flovyn server --port 9000 --database postgresql://postgres@127.0.0.1/flovyn
    """
    import asyncpg
    from aiohttp import web

    from flovyn_server.app import create_app, load_admin_key
    from flovyn_server.settings import Settings

    try:
        settings = Settings.from_env(host=host, port=port, data_dir=data_dir, database=database)
    except ValueError as exc:  # e.g. FLOVYN_PORT=abc
        fail(f"bad FLOVYN_* setting: {exc}", EXIT_USAGE)
    if not settings.database_url.startswith(("sqlite:///", "postgresql://", "postgres://")):
        fail(
            f"unsupported database URL {settings.database_url!r}: "
            "use sqlite:///path or postgresql://user@host:port/db",
            EXIT_USAGE,
        )
    logging.basicConfig(
        level=getattr(logging, log_level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    base = f"http://{settings.host}:{settings.port}"
    load_admin_key(settings)  # written to the data dir the first time
    key = "$FLOVYN_ADMIN_KEY" if settings.admin_key else f"$(cat {settings.data_dir / 'admin.key'})"
    print(f"flovyn server on {base} (database {settings.database_url})", flush=True)
    print(f"API docs: {base}/api/docs (OpenAPI: {base}/api/docs/openapi.json)", flush=True)
    print(f"CLI: export FLOVYN_SERVER={base} FLOVYN_API_KEY={key}", flush=True)
    _use_uvloop()
    try:
        # run_app turns SIGINT/SIGTERM into a graceful exit: held polls are answered,
        # in-flight requests finish (their transactions commit or roll back), the
        # store closes.
        web.run_app(
            create_app(settings),
            host=settings.host,
            port=settings.port,
            shutdown_timeout=10,
            print=None,
            access_log=None,
        )
    except (OSError, asyncpg.PostgresError) as exc:
        fail(f"cannot start: {exc}", EXIT_API)


def _use_uvloop() -> None:
    """uvloop where available: measured, it cuts the server's CPU per request by a quarter."""
    try:
        import uvloop
    except ImportError:
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


@click.command(context_settings=CONTEXT)
@click.option(
    "--workflows",
    type=click.IntRange(1, 100_000),
    default=20,
    show_default=True,
    help="With --headless: how many orders to run.",
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False),
    help="Keep the demo's data here (default: a temporary directory).",
)
@click.option(
    "--port", type=click.IntRange(0, 65535), default=0, help="Port (default: a free one)."
)
@click.option("--headless", is_flag=True, help="No dashboard: run orders to completion and print.")
def demo(workflows: int, data_dir: str | None, port: int, headless: bool) -> None:
    """An embedded server, a worker of the demo workflows (retries and logs, timers,
    a promise, child workflows, a failure to retry) and a trickle of triggers, with
    the dashboard on top.

    \b
    Examples:
      flovyn demo
      flovyn demo --headless --workflows 50
    """
    from flovyn_tui.demo import run_demo

    raise SystemExit(run_demo(workflows=workflows, data_dir=data_dir, port=port, headless=headless))


@click.command(context_settings=CONTEXT)
@connection_options
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False),
    help="The embedded server's data (default ~/.local/share/flovyn; FLOVYN_DATA_DIR).",
)
def tui(data_dir: str | None) -> None:
    """The dashboard. With no --server (flag, FLOVYN_SERVER or profile) it starts a
    server on SQLite in this process and shows how a worker reaches it.

    \b
    Examples:
      flovyn tui
      flovyn tui --server http://flovyn.internal:8000 --tenant acme
    """
    from pathlib import Path

    from flovyn_server.settings import default_data_dir
    from flovyn_tui.dashboard.app import FlovynApp, Target, log_to
    from flovyn_tui.dashboard.embedded import EmbeddedServer

    opts = options()
    try:
        conn = config.resolve(
            server=opts.server, tenant=opts.tenant, api_key=opts.api_key, profile=opts.profile
        )
    except config.ConfigError as exc:
        fail(str(exc), EXIT_USAGE)
    folder = Path(data_dir) if data_dir else default_data_dir()
    log_to(folder / "flovyn-tui.log")
    if conn.explicit:
        if not conn.tenant:
            fail(
                "no tenant: pass --tenant, set FLOVYN_TENANT, or `flovyn config set tenant SLUG`",
                EXIT_USAGE,
            )
        app = FlovynApp(Target(conn.server, conn.tenant, conn.api_key))
    else:
        embedded = EmbeddedServer(folder)
        app = FlovynApp(Target(None, None, None), embedded=embedded)
    raise SystemExit(app.run() or 0)


@click.group("config", context_settings=CONTEXT)
def config_group() -> None:
    """Profiles of connection settings in ~/.config/flovyn/config.toml."""


@config_group.command("set", context_settings=CONTEXT)
@click.argument("key", type=click.Choice(config.KEYS))
@click.argument("value")
@click.option("--profile", "-p", help="The profile to change (default: the current one).")
def config_set(key: str, value: str, profile: str | None) -> None:
    """Set KEY (server, tenant or api-key) in a profile.

    \b
    Examples:
      flovyn config set server http://127.0.0.1:8000
      flovyn config set tenant acme --profile prod
    """
    data = _load()
    name = config.current_profile(data, profile)
    data.setdefault("profiles", {}).setdefault(name, {})[key] = value
    data.setdefault("current", name)
    path = config.save(data)
    print(f"{key} set in profile {name} ({path})")


@config_group.command("get", context_settings=CONTEXT)
@click.argument("key", type=click.Choice(config.KEYS), required=False)
@click.option("--profile", "-p", help="The profile to read (default: the current one).")
def config_get(key: str | None, profile: str | None) -> None:
    """Print a profile's settings (API keys shortened), or one KEY's value.

    \b
    Example:
      flovyn config get tenant
    """
    data = _load()
    name = config.current_profile(data, profile)
    values = config.profiles(data).get(name, {})
    if key:
        if key not in values:
            fail(f"{key} is not set in profile {name}", EXIT_API)
        print(values[key])
        return
    rows = [(k, _mask(k, str(values[k]))) for k in config.KEYS if k in values]
    console().print(table(("KEY", "VALUE"), rows, title=f"profile {name}"))


@config_group.command("use-profile", context_settings=CONTEXT)
@click.argument("name")
def config_use_profile(name: str) -> None:
    """Make NAME the current profile.

    \b
    Example:
      flovyn config use-profile prod
    """
    data = _load()
    if name not in config.profiles(data):
        known = ", ".join(sorted(config.profiles(data))) or "none yet"
        fail(f"no profile {name!r} (profiles: {known}); `flovyn config set` makes one", EXIT_API)
    data["current"] = name
    config.save(data)
    print(f"current profile: {name}")


@config_group.command("list", context_settings=CONTEXT)
def config_list() -> None:
    """The profiles, the current one marked.

    \b
    Example:
      flovyn config list
    """
    data = _load()
    current = config.current_profile(data, None)
    rows = [
        ("*" if name == current else "", name, values.get("server", "-"), values.get("tenant", "-"))
        for name, values in sorted(config.profiles(data).items())
    ]
    console().print(
        table(("", "PROFILE", "SERVER", "TENANT"), rows, title=str(config.config_path()))
    )


def _load() -> dict[str, Any]:
    try:
        return config.load()
    except config.ConfigError as exc:
        fail(str(exc), EXIT_USAGE)


def _mask(key: str, value: str) -> str:
    return value[:14] + "…" if key == "api-key" and len(value) > 14 else value


@click.command(context_settings=CONTEXT)
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> None:
    """Print the shell completion script for SHELL.

    \b
    Examples:
      eval "$(flovyn completion bash)"          # in ~/.bashrc
      flovyn completion fish > ~/.config/fish/completions/flovyn.fish
    """
    from click.shell_completion import get_completion_class

    root = click.get_current_context().find_root().command
    cls = get_completion_class(shell)
    if cls is None:  # click knows all three
        fail(f"no completion for {shell}", EXIT_USAGE)
    source = cls(root, {}, "flovyn", "_FLOVYN_COMPLETE").source()
    click.echo(source)


COMMANDS = [server, demo, tui, config_group, completion]
