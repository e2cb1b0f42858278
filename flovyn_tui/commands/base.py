"""What every `flovyn` command shares: the global flags, `-o`, and `run()`.

Every command that talks to a server goes through the SDK's `Client`, and through
`run()`, which turns what can go wrong into the exit status: 0 ok, 1 an API error
(the server's message on stderr), 2 a usage error, 3 no server to talk to.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, NoReturn, TypeVar

import aiohttp
import click

from flovyn_tui import config
from flovyn_tui.output import FORMATS
from flovyn_worker import Client, FlovynApiError

F = TypeVar("F", bound=Callable[..., Any])

EXIT_API, EXIT_USAGE, EXIT_CONNECT = 1, 2, 3
CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@dataclass
class Options:
    """What the global flags said (before or after the noun) and `-o`."""

    server: str | None = None
    tenant: str | None = None
    api_key: str | None = None
    profile: str | None = None
    output: str = "table"


def _store(name: str) -> Callable[[click.Context, click.Parameter, Any], None]:
    def store(ctx: click.Context, _: click.Parameter, value: Any) -> None:
        if value is not None:
            setattr(ctx.ensure_object(Options), name, value)

    return store


def connection_options(f: F) -> F:
    """`--server`, `--tenant`, `--api-key` and `--profile`: on the root command and on
    every command that talks to a server, so that they may come before or after the
    noun (the later one wins)."""
    for flag, short, name, env, text in reversed(
        (
            (
                "--server",
                "-s",
                "server",
                "FLOVYN_SERVER",
                "Server URL (default http://127.0.0.1:8000).",
            ),
            ("--tenant", "-t", "tenant", "FLOVYN_TENANT", "Tenant slug."),
            ("--api-key", None, "api_key", "FLOVYN_API_KEY", "API key (or the admin key)."),
            ("--profile", "-p", "profile", "FLOVYN_PROFILE", "Profile of the config file."),
        )
    ):
        names = [flag, short] if short else [flag]
        f = click.option(
            *names,
            expose_value=False,
            is_eager=True,
            callback=_store(name),
            help=f"{text} [env {env}]",
        )(f)
    return f


def output_option(f: F) -> F:
    """`-o table|json|jsonl`, on every command that reads."""
    return click.option(
        "-o",
        "--output",
        type=click.Choice(FORMATS),
        expose_value=False,
        callback=_store("output"),
        help="table (default), json (the API's JSON) or jsonl (one line per item).",
    )(f)


def options() -> Options:
    return click.get_current_context().ensure_object(Options)


def fail(message: str, code: int) -> NoReturn:
    click.echo(f"flovyn: {message}", err=True)
    raise SystemExit(code)


def run(work: Callable[[Client], Awaitable[int | None]], *, tenant: bool = True) -> NoReturn:
    """Run `work` with a client of the chosen server, and exit with its status."""
    opts = options()
    try:
        conn = config.resolve(
            server=opts.server, tenant=opts.tenant, api_key=opts.api_key, profile=opts.profile
        )
    except config.ConfigError as exc:
        fail(str(exc), EXIT_USAGE)
    if tenant and not conn.tenant:
        fail(
            "no tenant: pass --tenant, set FLOVYN_TENANT, or `flovyn config set tenant SLUG`",
            EXIT_USAGE,
        )

    async def go() -> int | None:
        async with Client(conn.server, tenant=conn.tenant, api_key=conn.api_key) as client:
            return await work(client)

    try:
        code = asyncio.run(go())
    except FlovynApiError as exc:
        hint = ""
        if exc.status == 401 and not conn.api_key:
            hint = " (pass --api-key, set FLOVYN_API_KEY, or `flovyn config set api-key KEY`)"
        fail(
            f"{exc.message}{hint} [HTTP {exc.status}{' ' + exc.code if exc.code else ''}]", EXIT_API
        )
    except BrokenPipeError:
        # The reader went away (`... | head`): what it wanted, it had. Quietly.
        sys.stdout = open(os.devnull, "w")
        raise SystemExit(0) from None
    except aiohttp.ClientConnectorError as exc:
        reason = exc.os_error.strerror or str(exc.os_error)
        fail(f"cannot reach the server at {conn.server}: {reason}", EXIT_CONNECT)
    except aiohttp.InvalidURL:
        fail(f"not a server URL: {conn.server!r} (use e.g. http://127.0.0.1:8000)", EXIT_USAGE)
    except (aiohttp.ClientConnectionError, ConnectionError, TimeoutError) as exc:
        fail(f"cannot reach the server at {conn.server}: {exc or type(exc).__name__}", EXIT_CONNECT)
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    raise SystemExit(code or 0)
