"""Shared fixtures: a database URL for each store backend, and a free TCP port.

PostgreSQL tests need an admin connection URL in FLOVYN_TEST_POSTGRES_URL (for example
postgresql://postgres@127.0.0.1:5432/postgres); every test gets a fresh database created
through it and dropped afterwards. Without the URL those tests are skipped with one reason,
unless FLOVYN_REQUIRE_POSTGRES=1 (CI), which turns the skip into a failure. A URL that is
set but does not answer always fails: a silent skip would hide a broken setup.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import threading
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

POSTGRES_URL_ENV = "FLOVYN_TEST_POSTGRES_URL"
REQUIRE_POSTGRES_ENV = "FLOVYN_REQUIRE_POSTGRES"
SKIP_REASON = (
    f"PostgreSQL tests skipped: set {POSTGRES_URL_ENV}=postgresql://user@host:port/db to run them"
)
CONNECT_TIMEOUT_S = 5.0

T = TypeVar("T")


def _admin_url() -> str | None:
    return os.environ.get(POSTGRES_URL_ENV) or None


def _postgres_required() -> bool:
    return os.environ.get(REQUIRE_POSTGRES_ENV, "").strip().lower() in {"1", "true", "yes"}


def _redact(url: str) -> str:
    """The URL without its password, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def with_database(url: str, name: str) -> str:
    """`url` pointing at database `name` instead of its own."""
    return urlunsplit(urlsplit(url)._replace(path="/" + name))


def run_async(make: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine to completion from sync code, even inside a running event loop.

    Setup and teardown of sync fixtures may run while a test's loop is active (async
    fixtures, pytest-aiohttp); a private loop in a helper thread never collides with it.
    """

    async def main() -> T:
        return await make()

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(main())
    result: list[T] = []
    error: list[BaseException] = []

    def target() -> None:
        try:
            result.append(asyncio.run(main()))
        except BaseException as exc:
            error.append(exc)

    thread = threading.Thread(target=target, name="flovyn-test-run-async")
    thread.start()
    thread.join()
    if error:
        raise error[0]
    return result[0]


# --- is PostgreSQL usable? (checked once, only if a PostgreSQL test runs) ---------------

_status: list[str | None] = []  # [None] when usable, [message] when not; empty: unchecked


async def _ping(url: str) -> None:
    conn = await asyncpg.connect(url, timeout=CONNECT_TIMEOUT_S)
    try:
        await conn.fetchval("SELECT 1")
    finally:
        await conn.close()


def _postgres_problem() -> str | None:
    """None when PostgreSQL tests can run, else why not (cached for the session)."""
    if not _status:
        url = _admin_url()
        if url is None:
            _status.append(
                f"PostgreSQL tests are required ({REQUIRE_POSTGRES_ENV}=1) but "
                f"{POSTGRES_URL_ENV} is unset: set it to postgresql://user@host:port/db"
            )
        else:
            try:
                run_async(lambda: _ping(url))
                _status.append(None)
            except Exception as exc:
                _status.append(
                    f"PostgreSQL at {POSTGRES_URL_ENV}={_redact(url)} cannot be used: "
                    f"{type(exc).__name__}: {exc}"
                )
    return _status[0]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if _admin_url() is not None or _postgres_required():
        return
    skip = pytest.mark.skip(reason=SKIP_REASON)
    for item in items:
        if item.get_closest_marker("postgres") is not None:
            item.add_marker(skip)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    # Before any fixture: a PostgreSQL test that cannot reach its server fails here.
    if item.get_closest_marker("postgres") is None:
        return
    if item.get_closest_marker("skip") is not None:
        return
    problem = _postgres_problem()
    if problem is not None:
        pytest.fail(problem, pytrace=False)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    skipped = 0
    for report in terminalreporter.stats.get("skipped", []):
        longrepr = getattr(report, "longrepr", None)
        if isinstance(longrepr, tuple) and SKIP_REASON in str(longrepr[-1]):
            skipped += 1
    if skipped:
        terminalreporter.write_line(f"{skipped} {SKIP_REASON}", yellow=True, bold=True)
    problem = _status[0] if _status else None
    if problem is not None:
        failed = sum(
            problem in getattr(report, "longreprtext", "")
            for report in terminalreporter.stats.get("error", [])
        )
        terminalreporter.write_line(
            f"{failed} PostgreSQL tests failed: {problem}", red=True, bold=True
        )


# --- fixtures ----------------------------------------------------------------------------


async def _create_database(admin_url: str, name: str) -> None:
    conn = await asyncpg.connect(admin_url, timeout=CONNECT_TIMEOUT_S)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


async def _drop_database(admin_url: str, name: str) -> None:
    conn = await asyncpg.connect(admin_url, timeout=CONNECT_TIMEOUT_S)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def _fresh_postgres_database() -> Iterator[str]:
    admin_url = _admin_url()
    if admin_url is None:  # only reachable when the hooks above were bypassed
        pytest.skip(SKIP_REASON)
    name = f"flovyn_test_{secrets.token_hex(6)}"
    run_async(lambda: _create_database(admin_url, name))
    try:
        yield with_database(admin_url, name)
    finally:
        run_async(lambda: _drop_database(admin_url, name))


POSTGRES_PARAM = pytest.param("postgres", id="postgres", marks=pytest.mark.postgres)


@pytest.fixture(params=[pytest.param("sqlite", id="sqlite"), POSTGRES_PARAM])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A store URL with an empty database, once per backend (test ids `sqlite`, `postgres`)."""
    if request.param == "sqlite":
        # sqlite:// + absolute path: open_store strips "sqlite://" and keeps the path.
        yield f"sqlite://{tmp_path / 'flovyn.db'}"
    else:
        yield from _fresh_postgres_database()


@pytest.fixture(params=[POSTGRES_PARAM])
def postgres_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh PostgreSQL database, for tests of PostgreSQL-only behaviour."""
    yield from _fresh_postgres_database()


def find_free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def free_port() -> int:
    return find_free_port()
