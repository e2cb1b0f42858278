"""SQLite store: WAL, one writer with immediate transactions, statements run inline.

Statements run on the event loop's thread with the stdlib `sqlite3` module. Each one
takes microseconds against a local WAL file (commits do not fsync with
synchronous=NORMAL), which is far cheaper than handing every statement to a helper
thread and back: measured, that hand-off was most of the server's time. The one slow
operation, the WAL checkpoint (it fsyncs), is taken off the loop: automatic
checkpoints are off and a background thread checkpoints on its own connection.

Transaction bodies must not suspend between statements (the engine's do not: every
`await` inside them is a store call that completes inline); the write lock still
serialises bodies that would.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any

from flovyn_server.domain import now_ms
from flovyn_server.store.base import POS_FINAL, Row, Store, Tx, migrations, split_statements

log = logging.getLogger(__name__)

_PLACEHOLDER = re.compile(r"\$(\d+)")
# SQLite has no row locks (and rejects the clause): with one writer they are implicit.
_ROW_LOCK = re.compile(r"\s+FOR\s+(?:UPDATE|SHARE|KEY\s+SHARE)(?:\s+SKIP\s+LOCKED)?\b")
_GREATEST = re.compile(r"\bGREATEST\(")  # SQLite's two-argument max() is the same
_BUSY_TIMEOUT_MS = 5000
# A checkpoint beside the writer every second; one that empties the WAL (holding the
# write lock) once it holds CHECKPOINT_WAL_BYTES.
CHECKPOINT_EVERY_S = 1.0
CHECKPOINT_POLL_S = 0.05
CHECKPOINT_WAL_BYTES = 40 * 1024 * 1024
CHECKPOINT_BUSY_MS = 100  # a checkpoint waits this long at most for readers to move on
ANALYSE_EVERY_S = 3600.0


def _analyse(conn: sqlite3.Connection) -> None:
    """Refresh the planner's statistics from a sample of each index (milliseconds on a
    million rows): without them SQLite picks the index of a list's first column rather
    than the one that serves its filter and order. (`PRAGMA optimize` of this SQLite
    version skips tables a connection has not queried.)"""
    try:
        conn.execute("PRAGMA analysis_limit=1000")
        conn.execute("ANALYZE")
    except sqlite3.Error as exc:  # busy now; the next round does it
        log.debug("SQLite statistics skipped: %s", exc)


async def _finishing(fn: Callable[..., object], *args: object) -> None:
    """Run `fn(*args)` in a thread. Cancelled (the store closes), wait for the thread
    all the same: the connection it uses is closed next, and closing it under a running
    statement crashes the process."""
    work = asyncio.ensure_future(asyncio.to_thread(fn, *args))
    try:
        await asyncio.shield(work)
    except asyncio.CancelledError:
        await asyncio.wait([work])
        raise


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


@lru_cache(maxsize=1024)
def translate(sql: str) -> str:
    """PostgreSQL-flavoured SQL to SQLite: `$n` -> `?n`; row locks (`FOR UPDATE`,
    `FOR [KEY] SHARE`) dropped; `GREATEST(a, b)` -> `MAX(a, b)`."""
    return _GREATEST.sub("MAX(", _ROW_LOCK.sub("", _PLACEHOLDER.sub(r"?\1", sql)))


def _connect(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        conn.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")
        _enable_wal(conn)
        # NORMAL sync survives a process crash (not a power loss), keeps commits cheap.
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA temp_store=MEMORY")
        conn.execute("PRAGMA foreign_keys=ON")  # as PostgreSQL enforces them
        conn.execute("PRAGMA wal_autocheckpoint=0")  # the checkpointer thread does it
    except BaseException:
        conn.close()
        raise
    return conn


def _enable_wal(conn: sqlite3.Connection) -> None:
    """Switch the file to WAL, retrying while another connection holds it.

    When two connections open a new file at once, the switch can fail with "database is
    locked" at once: SQLite skips the busy handler there to avoid a deadlock.
    """
    deadline = time.monotonic() + _BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
        time.sleep(0.01)


POS_BLOCK = 1 << 20  # positions handed out per write of stream_clock


class _Clock:
    """Stream positions on SQLite: a counter, its block's end kept in `stream_clock`.

    Transactions run one at a time, so positions are taken in commit order. The block's
    end is written in the transaction that first needs it and counts only once that
    commits: a rolled-back one leaves it to the next, so a restart never hands out a
    position that a committed row holds.
    """

    def __init__(self, conn: sqlite3.Connection) -> None:
        row = conn.execute("SELECT pos FROM stream_clock WHERE id = 1").fetchone()
        self.next = self.end = int(row[0])
        self.committed = self.next  # every position below is committed or abandoned

    def take(self, tx: SqliteTx, conn: sqlite3.Connection, n: int) -> int:
        first = self.next
        self.next += n
        tx.pos_end = self.next
        if self.next > self.end:
            end = self.next + POS_BLOCK
            conn.execute("UPDATE stream_clock SET pos = ? WHERE id = 1", (end,))
            tx.on_commit(lambda: setattr(self, "end", max(self.end, end)))
        return first


class SqliteTx(Tx):
    def __init__(
        self, conn: sqlite3.Connection, clock: _Clock | None = None, *, reader: bool = False
    ) -> None:
        super().__init__()
        self._conn = conn
        self._clock = clock
        self.pos_end = 0  # past the last position this transaction took
        self._reader = reader

    def next_pos(self, n: int = 1) -> int:
        if self._clock is None or self._reader:
            raise RuntimeError("stream positions are taken in write transactions only")
        return self._clock.take(self, self._conn, n)

    def pos_sql(self, param: int) -> str:
        return f"${param}"

    async def horizon(self) -> tuple[int, bool]:
        # Writes are serialised: below the end of the last committed transaction's
        # positions, every row is committed (or never will be).
        clock = self._clock
        return (POS_FINAL if clock is None else clock.committed), False

    async def _execute(self, sql: str, *args: Any) -> int:
        return self._conn.execute(translate(sql), args).rowcount

    async def _executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        self._conn.executemany(translate(sql), rows)

    async def _fetch(self, sql: str, *args: Any) -> list[Row]:
        cursor = self._conn.execute(translate(sql), args)
        rows = cursor.fetchall()
        if not rows:
            return []
        columns = [d[0] for d in cursor.description]
        return [dict(zip(columns, row, strict=True)) for row in rows]


class SqliteStore(Store):
    """One writer connection serialised by a lock, one reader connection beside it."""

    backend = "sqlite"

    def __init__(self, path: str, writer: sqlite3.Connection, reader: sqlite3.Connection) -> None:
        super().__init__()
        self._path = path
        self._writer = writer
        self._reader = reader
        self._write_lock = asyncio.Lock()
        self._read_lock = asyncio.Lock()
        self._checkpointer: asyncio.Task[None] | None = None
        self._clock: _Clock | None = None  # after the migrations

    @classmethod
    async def open(cls, path: str) -> SqliteStore:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        writer = _connect(path)
        try:
            reader = _connect(path)
        except BaseException:
            writer.close()
            raise
        store = cls(path, writer, reader)
        store._checkpointer = asyncio.create_task(store._checkpoint_loop(), name="sqlite-wal")
        return store

    async def _checkpoint_loop(self) -> None:
        """Fold the WAL back into the database file and empty it, off the event loop.

        A checkpoint that runs beside the writer never catches up with it under steady
        load, and the WAL only starts over once one has copied every frame: it grew by
        about 60 KB a workflow, without end. So every second a checkpoint copies what it
        can beside the writer, and once the WAL reaches CHECKPOINT_WAL_BYTES one also
        holds the write lock (this process's writes wait, the event loop does not) to
        copy the frames left and truncate the file. Readers of an older snapshot make it
        wait at most CHECKPOINT_BUSY_MS (then it copies what it can; the next round
        finishes).
        """
        conn = await asyncio.to_thread(_connect, self._path)
        conn.execute(f"PRAGMA busy_timeout={CHECKPOINT_BUSY_MS}")
        wal = Path(self._path + "-wal")
        last = time.monotonic()
        # At once, then hourly: the planner's statistics, for lists (see `_analyse`).
        # (Not "0.0 = long ago": the monotonic clock starts at boot, often < 1 h ago.)
        analysed: float | None = None
        try:
            while True:
                await asyncio.sleep(CHECKPOINT_POLL_S)
                if analysed is None or time.monotonic() - analysed >= ANALYSE_EVERY_S:
                    analysed = time.monotonic()
                    async with self._write_lock:
                        await _finishing(_analyse, conn)
                full = _size(wal) >= CHECKPOINT_WAL_BYTES
                if not full and time.monotonic() - last < CHECKPOINT_EVERY_S:
                    continue
                last = time.monotonic()
                try:
                    # Most frames are copied beside the writer; once the WAL is big, the
                    # rest too, holding the write lock, and the WAL is emptied.
                    await _finishing(conn.execute, "PRAGMA wal_checkpoint(PASSIVE)")
                    if full:
                        async with self._write_lock:
                            await _finishing(conn.execute, "PRAGMA wal_checkpoint(TRUNCATE)")
                except sqlite3.Error as exc:  # busy now; the next round catches up
                    log.debug("WAL checkpoint skipped: %s", exc)
        finally:
            await asyncio.to_thread(conn.close)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Tx]:
        async with self._write_lock:
            tx = SqliteTx(self._writer, self._clock)
            self._writer.execute("BEGIN IMMEDIATE")
            try:
                yield tx
                await tx.flush(final=True)  # the deferred writes, before the commit
            except BaseException:
                self._writer.execute("ROLLBACK")
                raise
            self._writer.execute("COMMIT")
            if self._clock is not None and tx.pos_end:
                self._clock.committed = max(self._clock.committed, tx.pos_end)
        self._committed(tx)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[Tx]:
        async with self._read_lock:
            self._reader.execute("BEGIN")
            try:
                yield SqliteTx(self._reader, self._clock, reader=True)
            finally:
                self._reader.execute("COMMIT")

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
        self._clock = _Clock(self._writer)
        return applied

    async def ping(self) -> bool:
        try:
            async with self.read() as tx:
                await tx.fetchval("SELECT 1")
            return True
        except (sqlite3.Error, ValueError):
            return False

    async def close(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._checkpointer
        async with self._write_lock:
            with contextlib.suppress(sqlite3.Error):
                self._writer.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._writer.close()
        async with self._read_lock:
            self._reader.close()
