"""The store interface: transactions over SQL written once for both backends.

Queries use PostgreSQL's `$1` placeholders; the SQLite store rewrites them to `?1`
and drops `FOR UPDATE [SKIP LOCKED]` (SQLite has one writer, so claims are already
exclusive). Rules live in the engine; the store only runs SQL and reports wake-ups.
"""

from __future__ import annotations

import abc
import re
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from importlib import resources
from typing import Any

from flovyn_server.domain import now_ms
from flovyn_server.jsonio import dumps

Row = dict[str, Any]

# Stream positions order what the streams deliver, across tables and server processes
# (see api/streams.py). A transaction takes them with `Tx.next_pos` and writes them with
# `Tx.pos_sql`. On PostgreSQL a position is the transaction's id times POS_SCALE plus an
# ordinal within it: ids are handed out in order, so a position below the oldest running
# transaction's id (times POS_SCALE) is final, and `Tx.horizon` says where that is.
# Each `next_pos` leaves POS_GAP spare positions behind its block, the room an
# execution's later events take when the transaction appending them began earlier than
# the one before (see engine/history.py). On SQLite the one writer commits in order: a
# position is a counter, and whatever is committed is final.
POS_SCALE = 1 << 30
POS_GAP = 1 << 10
POS_FINAL = 1 << 62  # above any position: the horizon when everything committed is final
_WRITTEN_TABLE = re.compile(r"\s*(?:INSERT\s+INTO|UPDATE|DELETE\s+FROM)\s+(\w+)", re.IGNORECASE)
NotifyHook = Callable[[Iterable[str]], None]
ResyncHook = Callable[[], None]


class Tx(abc.ABC):
    """One transaction. `notify(key)` wakes listeners of `key` once it commits.

    `write()` defers a statement whose result nobody needs: the deferred statements are
    sent at the commit, each kind of statement with all its rows in one pipelined
    round trip (asyncpg's executemany), or earlier, when a later statement names a
    table they write to (so that it reads them). A shared transaction of many requests
    (see `engine/group_commit.py`) thus sends their event inserts in one go.
    """

    def __init__(self) -> None:
        self.wakeups: set[str] = set()
        self.after_commit: list[Callable[[], object]] = []
        self._writes: dict[str, list[tuple[Any, ...]]] = {}
        self._written: set[str] = set()
        self._feed: dict[str, set[str]] = {}  # tenant -> executions whose status changed

    def write(self, sql: str, *args: Any) -> None:
        """Run an INSERT, UPDATE or DELETE later, in this transaction (see the class)."""
        match = _WRITTEN_TABLE.match(sql)
        if match is None:
            raise ValueError(f"not a deferrable write: {sql[:60]!r}")
        self._written.add(match[1])
        self._writes.setdefault(sql, []).append(args)

    def feed(self, tenant_id: str, execution_id: str) -> None:
        """Show the execution on the tenant feed: its status changed (or may have).
        The transaction writes one `feed_changes` row per tenant at the end."""
        self._feed.setdefault(tenant_id, set()).add(execution_id)

    async def flush(self, *, final: bool = False) -> None:
        """Send the deferred writes, in the order their kinds first came; the `final`
        flush, before the commit, also writes the feed's rows."""
        if final and self._feed:
            feed, self._feed = self._feed, {}
            now = now_ms()
            for tenant_id, ids in feed.items():
                self.write(
                    "INSERT INTO feed_changes (tenant_id, pos, workflow_execution_ids, "
                    f"created_at) VALUES ($1, {self.pos_sql(2)}, $3, $4)",
                    tenant_id,
                    self.next_pos(),
                    dumps(sorted(ids)),
                    now,
                )
        writes, self._writes, self._written = self._writes, {}, set()
        for sql, rows in writes.items():
            await self._executemany(sql, rows)

    async def _before(self, sql: str) -> None:
        if self._written and any(table in sql for table in self._written):
            await self.flush()

    async def execute(self, sql: str, *args: Any) -> int:
        """Run a statement; return the number of rows it changed."""
        await self._before(sql)
        return await self._execute(sql, *args)

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        await self._before(sql)
        await self._executemany(sql, rows)

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        await self._before(sql)
        return await self._fetch(sql, *args)

    @abc.abstractmethod
    async def _execute(self, sql: str, *args: Any) -> int: ...

    @abc.abstractmethod
    async def _executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None: ...

    @abc.abstractmethod
    async def _fetch(self, sql: str, *args: Any) -> list[Row]: ...

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        rows = await self.fetch(sql, *args)
        return rows[0] if rows else None

    async def fetchval(self, sql: str, *args: Any) -> Any:
        row = await self.fetchrow(sql, *args)
        return None if row is None else next(iter(row.values()))

    def notify(self, key: str) -> None:
        self.wakeups.add(key)

    @abc.abstractmethod
    def next_pos(self, n: int = 1) -> int:
        """Reserve `n` consecutive stream positions; the value to bind for `pos_sql`."""

    @abc.abstractmethod
    def pos_sql(self, param: int) -> str:
        """SQL for the first reserved position, given the placeholder `$param` bound to
        what `next_pos` returned (add 0..n-1 for the others)."""

    @abc.abstractmethod
    async def horizon(self) -> tuple[int, bool]:
        """A position below which every committed row is final (no transaction can
        commit a lower one later), and whether transactions were running then (rows
        they wait behind may be committed above it). Read it BEFORE the rows it bounds."""

    def on_commit(self, callback: Callable[[], object]) -> None:
        """Call `callback` once this transaction has committed (not if it rolls back)."""
        self.after_commit.append(callback)


class Store(abc.ABC):
    """A database holding every tenant's state."""

    backend: str

    def __init__(self) -> None:
        self._hooks: list[NotifyHook] = []
        self._resync_hooks: list[ResyncHook] = []

    def on_commit_notify(self, hook: NotifyHook) -> None:
        """Call `hook(keys)` after each commit that asked for wake-ups (in this process)."""
        self._hooks.append(hook)

    def on_resync(self, hook: ResyncHook) -> None:
        """Call `hook()` when wake-ups from other processes may have been missed (on
        PostgreSQL: the LISTEN connection was lost and is back), so whatever waits for a
        key should read again instead of waiting for its timeout."""
        self._resync_hooks.append(hook)

    def _fire(self, keys: set[str]) -> None:
        if keys:
            for hook in self._hooks:
                hook(keys)

    def _resync(self) -> None:
        for hook in self._resync_hooks:
            hook()

    def _committed(self, tx: Tx) -> None:
        self._fire(tx.wakeups)
        for callback in tx.after_commit:
            callback()

    @abc.abstractmethod
    def transaction(self) -> AbstractAsyncContextManager[Tx]:
        """`async with store.transaction() as tx:` a read-write transaction."""

    @abc.abstractmethod
    def read(self) -> AbstractAsyncContextManager[Tx]:
        """`async with store.read() as tx:` a read-only view (may run beside writers)."""

    @abc.abstractmethod
    async def migrate(self) -> list[str]:
        """Apply pending migrations; return the versions applied."""

    def is_transient(self, exc: BaseException) -> bool:
        """Whether a transaction that raised `exc` may succeed if run again (a deadlock
        or serialization failure the database broke)."""
        return False

    @abc.abstractmethod
    async def ping(self) -> bool: ...

    @abc.abstractmethod
    async def close(self) -> None: ...


def migrations() -> list[tuple[str, str]]:
    """(version, sql) for every migration file, in order."""
    folder = resources.files("flovyn_server.store") / "migrations"
    files = sorted((p for p in folder.iterdir() if p.name.endswith(".sql")), key=lambda p: p.name)
    return [(p.name.removesuffix(".sql"), p.read_text()) for p in files]


def split_statements(sql: str) -> list[str]:
    """Split a migration into statements.

    Our DDL has no `--` or `;` inside string literals, so comments can be cut at `--`
    and statements at `;` without a SQL parser.
    """
    lines = [ln.split("--", 1)[0] for ln in sql.splitlines()]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]


async def open_store(url: str, *, pool_size: int = 10) -> Store:
    """Open (and migrate) the store named by a `sqlite:///` or `postgresql://` URL."""
    if url.startswith("sqlite:"):
        from flovyn_server.store.sqlite import SqliteStore

        store: Store = await SqliteStore.open(url.removeprefix("sqlite:///"))
    elif url.startswith(("postgresql:", "postgres:")):
        from flovyn_server.store.postgres import PostgresStore

        store = await PostgresStore.open(url, pool_size=pool_size)
    else:
        raise ValueError(f"unsupported database URL {url!r}: use sqlite:///path or postgresql://")
    await store.migrate()
    return store
