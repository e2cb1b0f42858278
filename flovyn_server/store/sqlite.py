"""SQLite store (aiosqlite): WAL, a busy timeout, one writer with immediate transactions."""

from __future__ import annotations

import asyncio
import re
import sqlite3
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any

import aiosqlite

from flovyn_server.domain import now_ms
from flovyn_server.store.base import Row, Store, Tx, migrations, split_statements

_PLACEHOLDER = re.compile(r"\$(\d+)")
# SQLite has no row locks (and rejects the clause): with one writer they are implicit.
_ROW_LOCK = re.compile(r"\s+FOR\s+UPDATE(?:\s+SKIP\s+LOCKED)?\b")


@lru_cache(maxsize=1024)
def translate(sql: str) -> str:
    """PostgreSQL-flavoured SQL to SQLite: `$n` -> `?n`; `FOR UPDATE [SKIP LOCKED]` dropped."""
    return _ROW_LOCK.sub("", _PLACEHOLDER.sub(r"?\1", sql))


_BUSY_TIMEOUT_MS = 5000


async def _enable_wal(conn: aiosqlite.Connection) -> None:
    """Switch the file to WAL, retrying while another connection holds it.

    When two connections open a new file at once, the switch can fail with "database is
    locked" at once: SQLite skips the busy handler there to avoid a deadlock.
    """
    deadline = time.monotonic() + _BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            await conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
        await asyncio.sleep(0.01)


def _dict_row(cursor: sqlite3.Cursor, row: tuple[Any, ...]) -> Row:
    return {col[0]: value for col, value in zip(cursor.description, row, strict=True)}


class SqliteTx(Tx):
    def __init__(self, conn: aiosqlite.Connection) -> None:
        super().__init__()
        self._conn = conn

    async def execute(self, sql: str, *args: Any) -> int:
        cursor = await self._conn.execute(translate(sql), args)
        return cursor.rowcount

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        await self._conn.executemany(translate(sql), rows)

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        async with self._conn.execute(translate(sql), args) as cursor:
            return list(await cursor.fetchall())  # type: ignore[arg-type]


class SqliteStore(Store):
    """One writer connection serialised by a lock, one reader connection beside it."""

    backend = "sqlite"

    def __init__(self, writer: aiosqlite.Connection, reader: aiosqlite.Connection) -> None:
        super().__init__()
        self._writer = writer
        self._reader = reader
        self._write_lock = asyncio.Lock()
        self._read_lock = asyncio.Lock()

    @classmethod
    async def open(cls, path: str) -> SqliteStore:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        writer = await cls._connect(path)
        try:
            reader = await cls._connect(path)
        except BaseException:
            await writer.close()
            raise
        return cls(writer, reader)

    @staticmethod
    async def _connect(path: str) -> aiosqlite.Connection:
        conn = await aiosqlite.connect(path, isolation_level=None)
        conn.row_factory = _dict_row  # type: ignore[assignment]
        try:
            await conn.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")
            # WAL lets the reader run beside the writer.
            await _enable_wal(conn)
            # NORMAL sync survives a process crash (not a power loss), keeps commits cheap.
            await conn.execute("PRAGMA synchronous=NORMAL")
            await conn.execute("PRAGMA temp_store=MEMORY")
        except BaseException:
            # An unclosed aiosqlite connection's thread would keep the process alive.
            await conn.close()
            raise
        return conn

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Tx]:
        async with self._write_lock:
            tx = SqliteTx(self._writer)
            await self._writer.execute("BEGIN IMMEDIATE")
            try:
                yield tx
            except BaseException:
                await self._writer.execute("ROLLBACK")
                raise
            await self._writer.execute("COMMIT")
        self._fire(tx.wakeups)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[Tx]:
        async with self._read_lock:
            await self._reader.execute("BEGIN")
            try:
                yield SqliteTx(self._reader)
            finally:
                await self._reader.execute("COMMIT")

    async def migrate(self) -> list[str]:
        applied: list[str] = []
        async with self.transaction() as tx:
            await tx.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations "
                "(version TEXT PRIMARY KEY, applied_at BIGINT NOT NULL)"
            )
            done = {r["version"] for r in await tx.fetch("SELECT version FROM schema_migrations")}
            for version, sql in migrations():
                if version in done:
                    continue
                for statement in split_statements(sql):
                    await tx.execute(statement)
                await tx.execute(
                    "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)",
                    version,
                    now_ms(),
                )
                applied.append(version)
        return applied

    async def ping(self) -> bool:
        try:
            async with self.read() as tx:
                await tx.fetchval("SELECT 1")
            return True
        except (sqlite3.Error, ValueError):
            return False

    async def close(self) -> None:
        await self._writer.close()
        await self._reader.close()
