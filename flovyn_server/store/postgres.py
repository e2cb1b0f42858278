"""PostgreSQL store (asyncpg): pooled connections, SKIP LOCKED claims, LISTEN/NOTIFY wake-ups."""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

from flovyn_server.domain import now_ms
from flovyn_server.store.base import Row, Store, Tx, migrations, split_statements

log = logging.getLogger(__name__)

CHANNEL = "flovyn_wake"
_MIGRATION_LOCK = 0x666C6F76  # advisory lock id: one process migrates at a time


def _literal(text: str) -> str:
    """A SQL string literal (standard_conforming_strings is on: only quotes double)."""
    return "'" + text.replace("'", "''") + "'"


async def _reset(conn: asyncpg.Connection) -> None:
    """Ready a released connection for reuse. asyncpg's default reset is a round trip per
    release (RESET ALL, CLOSE ALL, UNLISTEN *, advisory unlocks) for session state we
    never create, about one statement in five here; only an open transaction (a
    cancelled request) needs ending."""
    if conn.is_in_transaction():
        await conn.execute("ROLLBACK")


class PostgresTx(Tx):
    def __init__(self, conn: asyncpg.Connection) -> None:
        super().__init__()
        self._conn = conn

    async def _execute(self, sql: str, *args: Any) -> int:
        status: str = await self._conn.execute(sql, *args)
        tail = status.rsplit(" ", 1)[-1]
        return int(tail) if tail.isdigit() else 0

    async def _executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        await self._conn.executemany(sql, rows)

    async def _fetch(self, sql: str, *args: Any) -> list[Row]:
        return [dict(r) for r in await self._conn.fetch(sql, *args)]


class PostgresStore(Store):
    """Every server process sharing the database sees the others' wake-ups via NOTIFY."""

    backend = "postgres"

    def __init__(self, pool: asyncpg.Pool, url: str) -> None:
        super().__init__()
        self._pool = pool
        self._url = url
        self._origin = uuid.uuid4().hex[:12]
        self._listener: asyncpg.Connection | None = None

    @classmethod
    async def open(cls, url: str, *, pool_size: int = 10) -> PostgresStore:
        pool = await asyncpg.create_pool(url, min_size=1, max_size=pool_size, reset=_reset)
        store = cls(pool, url)
        store._listener = await asyncpg.connect(url)
        await store._listener.add_listener(CHANNEL, store._on_notify)
        return store

    def _on_notify(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        origin, _, keys = payload.partition("|")
        if origin != self._origin:  # our own commits already woke local listeners
            self._fire(set(keys.split(",")))

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Tx]:
        async with self._pool.acquire() as conn:
            await conn.execute("BEGIN")
            tx = PostgresTx(conn)
            try:
                yield tx
                await tx.flush()  # the deferred writes, before the commit
            except BaseException:
                with contextlib.suppress(Exception):  # a broken connection: the pool drops it
                    await conn.execute("ROLLBACK")
                raise
            # NOTIFY and COMMIT in one round trip (a simple query may hold several
            # statements); the notification is delivered only if the commit succeeds.
            if tx.wakeups:
                payload = self._origin + "|" + ",".join(sorted(tx.wakeups))
                await conn.execute(f"SELECT pg_notify('{CHANNEL}', {_literal(payload)}); COMMIT")
            else:
                await conn.execute("COMMIT")
        self._committed(tx)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[Tx]:
        async with self._pool.acquire() as conn:
            yield PostgresTx(conn)

    async def migrate(self) -> list[str]:
        applied: list[str] = []
        async with self.transaction() as tx:
            await tx.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
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

    def is_transient(self, exc: BaseException) -> bool:
        return isinstance(exc, (asyncpg.DeadlockDetectedError, asyncpg.SerializationError))

    async def ping(self) -> bool:
        try:
            async with self._pool.acquire(timeout=2) as conn:
                await conn.fetchval("SELECT 1")
            return True
        except (OSError, asyncpg.PostgresError, TimeoutError):
            return False

    async def close(self) -> None:
        if self._listener is not None:
            await self._listener.close()
        await self._pool.close()
