"""The processes, temporary directories and PostgreSQL database of a run.

Everything is recorded in ``Resources`` as it is made, so that ``acleanup()`` (after each
store) or ``cleanup()`` (the last resort after Ctrl-C) stops and removes it all.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit, urlunsplit

from .worker_child import FLAG, TOKEN_ENV, worker_child


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    log_file: IO[bytes]

    def log_text(self) -> str:
        if not self.log_file.closed:
            self.log_file.flush()
        return self.log_path.read_text(errors="replace")

    def log_tail(self, n: int = 30) -> str:
        return "\n".join(self.log_text().splitlines()[-n:])


@dataclass
class Resources:
    """What one run created; `cleanup()` undoes it and may be called more than once."""

    children: list[Child] = field(default_factory=list)
    dirs: list[Path] = field(default_factory=list)
    databases: list[tuple[str, str]] = field(default_factory=list)  # (admin url, name)

    def temp_dir(self, prefix: str) -> Path:
        path = Path(tempfile.mkdtemp(prefix=prefix))
        self.dirs.append(path)
        return path

    def spawn(self, name: str, argv: list[str], log_dir: Path, env: dict[str, str]) -> Child:
        log_path = log_dir / f"{name}.log"
        log_file = log_path.open("wb")
        proc = subprocess.Popen(
            argv,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **env},
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches only us; we stop them in order
        )
        child = Child(name, proc, log_path, log_file)
        self.children.append(child)
        return child

    def stop(self, child: Child, timeout: float = 15.0) -> None:
        if child.proc.poll() is None:
            child.proc.send_signal(signal.SIGTERM)
            try:
                child.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                child.proc.kill()
                child.proc.wait()
        child.log_file.close()
        if child in self.children:
            self.children.remove(child)

    def stop_all(self) -> None:
        # Newest first: workers before the server they talk to.
        for child in reversed(list(self.children)):
            self.stop(child)

    async def drop_databases(self) -> None:
        while self.databases:
            admin_url, name = self.databases[-1]
            try:
                await _admin_execute(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            except Exception as exc:
                print(f"warning: could not drop database {name}: {exc!r}", file=sys.stderr)
            self.databases.pop()

    def remove_dirs(self) -> None:
        while self.dirs:
            shutil.rmtree(self.dirs.pop(), ignore_errors=True)

    async def acleanup(self) -> None:
        self.stop_all()
        await self.drop_databases()
        self.remove_dirs()

    def cleanup(self) -> None:
        """Synchronous last resort (after Ctrl-C interrupted the event loop)."""
        self.stop_all()
        if self.databases:
            asyncio.run(self.drop_databases())
        self.remove_dirs()


# -- the store's database ----------------------------------------------------------------


@dataclass
class Database:
    url: str  # the server's --database
    label: str
    pg_name: str | None  # the PostgreSQL database, None for SQLite


async def _admin_execute(admin_url: str, sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def prepare_database(res: Resources, store: str, tmp: Path, admin_url: str) -> Database:
    """A SQLite file in `tmp`, or a fresh ``flovyn_bench_<hex>`` PostgreSQL database."""
    if store == "sqlite":
        return Database(f"sqlite:///{tmp / 'flovyn.db'}", "sqlite (WAL file in a temp dir)", None)
    name = "flovyn_bench_" + secrets.token_hex(6)
    await _admin_execute(admin_url, f'CREATE DATABASE "{name}"')
    res.databases.append((admin_url, name))
    url = urlunsplit(urlsplit(admin_url)._replace(path="/" + name))
    return Database(url, f"postgres database {name}", name)


# -- the server and the workers ----------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_server(
    res: Resources,
    store: str,
    tmp: Path,
    port: int,
    database_url: str,
    admin_key: str,
    cprofile_out: Path | None,
) -> Child:
    """``flovyn server`` on 127.0.0.1:`port`, under cProfile when `cprofile_out` is set."""
    argv = [sys.executable]
    if cprofile_out is not None:
        argv += ["-m", "cProfile", "-o", str(cprofile_out)]
    argv += [
        "-m", "flovyn_tui.cli", "server", "--host", "127.0.0.1", "--port", str(port),
        "--data-dir", str(tmp / "data"), "--database", database_url, "--log-level", "warning",
    ]  # fmt: skip
    return res.spawn(f"server-{store}", argv, tmp, {"FLOVYN_ADMIN_KEY": admin_key})


def start_workers(
    res: Resources,
    entry: str,
    store: str,
    tmp: Path,
    *,
    count: int,
    server: str,
    tenant: str,
    token: str,
    max_items: int,
    poll_timeout: float,
) -> list[Child]:
    """`count` worker processes: the script `entry` again, in worker-child mode."""
    workers = []
    for i in range(count):
        name = f"worker-{store}-{i + 1}"
        argv = [
            sys.executable, entry, FLAG,
            "--server", server, "--tenant", tenant, "--name", name,
            "--max-items", str(max_items), "--poll-timeout", str(poll_timeout),
            "--parent-pid", str(os.getpid()),
        ]  # fmt: skip
        workers.append(res.spawn(name, argv, tmp, {TOKEN_ENV: token}))
    return workers


async def wait_workers_ready(workers: list[Child], within: float) -> None:
    """Each worker child prints READY once `Worker` has registered with the server."""
    deadline = time.monotonic() + within
    pending = list(workers)
    while pending:
        for w in list(pending):
            if "READY" in w.log_text():
                pending.remove(w)
            elif w.proc.poll() is not None:
                raise RuntimeError(f"{w.name} exited with {w.proc.returncode}:\n{w.log_tail()}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{pending[0].name} not registered:\n{pending[0].log_tail()}")
        await asyncio.sleep(0.05)


# -- one entry point for the per-store benchmarks -------------------------------------------

RunStore = Callable[[str, argparse.Namespace, Resources], Awaitable[list[str]]]


async def each_store(args: argparse.Namespace, res: Resources, run_store: RunStore) -> int:
    """`run_store` for each store `args.store` names; 1 if any reported a problem."""
    stores = ["sqlite", "postgres"] if args.store == "both" else [args.store]
    failed = False
    for store in stores:
        try:
            problems = await run_store(store, args, res)
        except Exception as exc:
            problems = [str(exc)]
        finally:
            await res.acleanup()
        for problem in problems:
            print(f"   PROBLEM: {problem}", file=sys.stderr)
        failed = failed or bool(problems)
    return 1 if failed else 0


def bench_main(
    argv: list[str] | None,
    parse_args: Callable[[list[str]], argparse.Namespace],
    run_store: RunStore,
) -> int:
    """A benchmark script's main: the worker child when started as one (see
    `start_workers`), else `run_store` on each store."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == [FLAG]:
        return worker_child(argv[1:])
    res = Resources()
    try:
        return asyncio.run(each_store(parse_args(argv), res, run_store))
    except KeyboardInterrupt:
        return 130
    finally:
        res.cleanup()
