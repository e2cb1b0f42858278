"""PostgreSQL store (asyncpg): pooled connections, SKIP LOCKED claims, LISTEN/NOTIFY wake-ups.

One connection per process LISTENs. When it is lost (PostgreSQL restarted, failed over,
or ended the backend) it is opened again, backing off, and the store then resyncs: the
NOTIFYs sent meanwhile are gone, so every waiter reads again (see `Store.on_resync`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

from flovyn_server.domain import now_ms
from flovyn_server.store.base import (
    POS_GAP,
    POS_SCALE,
    Row,
    Store,
    Tx,
    migrations,
    split_statements,
)

log = logging.getLogger(__name__)

CHANNEL = "flovyn_wake"
LISTENER_NAME = "flovyn-listen"  # application_name of the LISTEN connection
NOTIFY_LIMIT = 7900  # bytes in one NOTIFY payload; PostgreSQL refuses 8000 or more
HEALTH_EVERY_S = 10.0  # a lost connection that asyncpg does not notice (no FIN/RST)
HEALTH_TIMEOUT_S = 5.0
RECONNECT_FIRST_S = 0.1  # backoff between reconnect attempts, doubling up to the max
RECONNECT_MAX_S = 5.0
CONNECT_TIMEOUT_S = 10.0
_MIGRATION_LOCK = 0x666C6F76  # advisory lock id: one process migrates at a time


def _literal(text: str) -> str:
    """A SQL string literal (standard_conforming_strings is on: only quotes double)."""
    return "'" + text.replace("'", "''") + "'"


def notify_payloads(origin: str, keys: Iterable[str], limit: int = NOTIFY_LIMIT) -> list[str]:
    """The NOTIFY payloads `<origin>|key,key,...` that carry `keys` (sorted), each at most
    `limit` bytes in UTF-8: one payload, unless a large group commit woke many queues.

    Raises ValueError for a key that does not fit a payload on its own (keys are short:
    `wf:<tenant uuid>:<queue of at most 128 characters>`).
    """
    ordered = sorted(keys)
    payload = origin + "|" + ",".join(ordered)
    if len(payload) <= limit and payload.isascii():  # the common case: one byte a character
        return [payload] if ordered else []
    head = len(origin.encode()) + 1  # "<origin>|"
    payloads: list[str] = []
    batch: list[str] = []
    size = head
    for key in ordered:
        n = len(key.encode())
        if head + n > limit:
            raise ValueError(f"wake-up key of {n} bytes does not fit a NOTIFY: {key[:80]!r}")
        if batch and size + 1 + n > limit:  # 1: the comma
            payloads.append(origin + "|" + ",".join(batch))
            batch, size = [], head
        size += n + 1 if batch else n
        batch.append(key)
    if batch:
        payloads.append(origin + "|" + ",".join(batch))
    return payloads


def notify_and_commit(origin: str, keys: Iterable[str]) -> str:
    """One simple query that sends the NOTIFYs for `keys` and commits (one round trip;
    the notifications are delivered only if the commit succeeds)."""
    payloads = notify_payloads(origin, keys)
    if len(payloads) == 1:
        return f"SELECT pg_notify('{CHANNEL}', {_literal(payloads[0])}); COMMIT"
    calls = ", ".join(f"pg_notify('{CHANNEL}', {_literal(p)})" for p in payloads)
    return f"SELECT {calls}; COMMIT"


async def _reset(conn: asyncpg.Connection) -> None:
    """Ready a released connection for reuse. asyncpg's default reset is a round trip per
    release (RESET ALL, CLOSE ALL, UNLISTEN *, advisory unlocks) for session state we
    never create, about one statement in five here; only an open transaction (a
    cancelled request) needs ending."""
    if conn.is_in_transaction():
        await conn.execute("ROLLBACK")


# The transaction id (with its epoch) as a BIGINT: txid_current() is pg_current_xact_id()
# without the xid8 type, which has no cast to BIGINT.
_XID = "txid_current()"


class PostgresTx(Tx):
    def __init__(self, conn: asyncpg.Connection) -> None:
        super().__init__()
        self._conn = conn
        self._ordinal = 0

    def next_pos(self, n: int = 1) -> int:
        first = self._ordinal
        self._ordinal += n + POS_GAP
        if self._ordinal >= POS_SCALE:
            raise RuntimeError("a transaction took more stream positions than it may")
        return first

    def pos_sql(self, param: int) -> str:
        return f"({_XID} * {POS_SCALE} + ${param})"

    async def horizon(self) -> tuple[int, bool]:
        row = await self._conn.fetchrow(
            "SELECT txid_snapshot_xmin(s) AS xmin, txid_snapshot_xmin(s) <> "
            "txid_snapshot_xmax(s) AS busy FROM (SELECT txid_current_snapshot() AS s) AS now"
        )
        assert row is not None
        return int(row["xmin"]) * POS_SCALE, bool(row["busy"])

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
        self._lost = asyncio.Event()  # the LISTEN connection was closed under us
        self._watcher: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls, url: str, *, pool_size: int = 10) -> PostgresStore:
        pool = await asyncpg.create_pool(url, min_size=1, max_size=pool_size, reset=_reset)
        store = cls(pool, url)
        try:
            await store._listen()
        except BaseException:
            await pool.close()
            raise
        store._watcher = asyncio.create_task(store._keep_listening(), name="flovyn-listen")
        return store

    def _on_notify(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        origin, _, keys = payload.partition("|")
        if origin != self._origin:  # our own commits already woke local listeners
            self._fire(set(keys.split(",")))

    # --- the LISTEN connection ----------------------------------------------------------

    async def _listen(self) -> None:
        """Open the LISTEN connection (in place of a lost one)."""
        conn = await asyncpg.connect(
            self._url,
            timeout=CONNECT_TIMEOUT_S,
            server_settings={"application_name": LISTENER_NAME},
        )
        try:
            await conn.add_listener(CHANNEL, self._on_notify)
        except BaseException:
            conn.terminate()
            raise
        self._lost.clear()
        conn.add_termination_listener(self._on_listener_closed)
        self._listener = conn

    def _on_listener_closed(self, conn: Any) -> None:
        if conn is self._listener:  # not one already replaced
            self._lost.set()

    async def _until_lost(self) -> str:
        """Wait until the LISTEN connection is closed or stops answering; say how."""
        conn = self._listener
        assert conn is not None
        while True:
            try:
                async with asyncio.timeout(HEALTH_EVERY_S):
                    await self._lost.wait()
                return "connection closed"
            except TimeoutError:
                pass
            try:  # asyncpg hears a FIN or RST, but not a peer that went silent
                await conn.fetchval("SELECT 1", timeout=HEALTH_TIMEOUT_S)
            except Exception as exc:
                return f"health check failed: {type(exc).__name__}: {exc}"

    async def _keep_listening(self) -> None:
        """Reconnect a lost LISTEN connection, forever (until close()), then resync."""
        delay = 0.0  # before the next attempt
        while True:
            up_since = time.monotonic()
            reason = await self._until_lost()
            log.warning(
                "LISTEN connection lost (%s): reconnecting; until then commits of other "
                "server processes wake nothing here",
                reason,
            )
            lost = self._listener
            if lost is not None:
                lost.terminate()
            if time.monotonic() - up_since >= RECONNECT_MAX_S:
                delay = 0.0  # it had been up a while: try at once (else it flaps: back off)
            attempts = 0
            while True:
                if delay:
                    await asyncio.sleep(delay)
                delay = min(max(delay * 2, RECONNECT_FIRST_S), RECONNECT_MAX_S)
                attempts += 1
                try:
                    await self._listen()
                    break
                except Exception as exc:
                    log.debug("LISTEN reconnect attempt %d failed: %r", attempts, exc)
            log.info(
                "LISTEN connection back (after %d attempt(s)): resyncing what was maybe missed",
                attempts,
            )
            try:
                self._resync()
            except Exception:
                log.exception("a resync hook failed")

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Tx]:
        async with self._pool.acquire() as conn:
            await conn.execute("BEGIN")
            tx = PostgresTx(conn)
            try:
                yield tx
                await tx.flush(final=True)  # the deferred writes, before the commit
                # NOTIFY and COMMIT in one round trip (a simple query may hold several
                # statements); the notifications are delivered only if the commit succeeds.
                end = notify_and_commit(self._origin, tx.wakeups) if tx.wakeups else "COMMIT"
            except BaseException:
                with contextlib.suppress(Exception):  # a broken connection: the pool drops it
                    await conn.execute("ROLLBACK")
                raise
            await conn.execute(end)
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
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
            self._watcher = None
        if self._listener is not None:
            try:
                await self._listener.close(timeout=HEALTH_TIMEOUT_S)
            except Exception:  # lost, or not answering: just drop it
                self._listener.terminate()
            self._listener = None
        await self._pool.close()
