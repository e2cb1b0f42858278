"""The store layer on both backends: migrations, transactions, wake-ups, claims."""

from __future__ import annotations

import asyncio
import sqlite3
import time
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from flovyn_server.store import Store, open_store
from flovyn_server.store import sqlite as sqlite_store
from flovyn_server.store.base import migrations
from flovyn_server.store.sqlite import translate
from tests.integration.helpers import eventually

INSERT_TENANT = (
    "INSERT INTO tenants (id, name, slug, tier, region, created_at) VALUES ($1, $2, $3, $4, $5, $6)"
)


def tenant_row(slug: str, tier: str = "free") -> tuple[Any, ...]:
    return (str(uuid.uuid4()), slug.title(), slug, tier, None, 1_700_000_000_000)


async def insert_tenant(store: Store, slug: str, tier: str = "free") -> str:
    row = tenant_row(slug, tier)
    async with store.transaction() as tx:
        assert await tx.execute(INSERT_TENANT, *row) == 1
    return str(row[0])


async def tenant_slugs(store: Store) -> list[str]:
    async with store.read() as tx:
        return [r["slug"] for r in await tx.fetch("SELECT slug FROM tenants ORDER BY slug")]


class Recorder:
    """An `on_commit_notify` hook that keeps every call's keys."""

    def __init__(self) -> None:
        self.calls: list[set[str]] = []

    def __call__(self, keys: Iterable[str]) -> None:
        self.calls.append(set(keys))

    def count(self, key: str) -> int:
        return sum(key in keys for keys in self.calls)


# --- migrations ----------------------------------------------------------------------------


async def test_migrations_apply_once_and_reopen_is_idempotent(database_url: str) -> None:
    versions = [version for version, _ in migrations()]
    assert versions[0] == "0001_init"

    first = await open_store(database_url)
    try:
        async with first.read() as tx:
            rows = await tx.fetch("SELECT version FROM schema_migrations ORDER BY version")
        assert [r["version"] for r in rows] == versions
        assert await first.migrate() == []  # nothing left to apply
        await insert_tenant(first, "kept")
    finally:
        await first.close()

    second = await open_store(database_url)
    try:
        async with second.read() as tx:
            count = await tx.fetchval(
                "SELECT COUNT(*) FROM schema_migrations WHERE version = $1", "0001_init"
            )
        assert count == 1
        assert await second.migrate() == []
        assert await tenant_slugs(second) == ["kept"]  # reopening kept the data
    finally:
        await second.close()


async def test_concurrent_opens_migrate_exactly_once(database_url: str) -> None:
    # Four at once: on SQLite this also races the switch of a new file to WAL.
    stores = await asyncio.gather(*(open_store(database_url) for _ in range(4)))
    try:
        async with stores[0].read() as tx:
            rows = await tx.fetch("SELECT version FROM schema_migrations")
        assert sorted(r["version"] for r in rows) == [v for v, _ in migrations()]
    finally:
        for s in stores:
            await s.close()


async def test_sqlite_stores_opened_together_on_a_new_file(tmp_path: Path) -> None:
    # Racing the switch of a new file to WAL used to fail now and then with "database is
    # locked" (SQLite skips the busy handler there); many rounds make a regression show.
    for round_ in range(20):
        url = f"sqlite://{tmp_path / f'race-{round_}.db'}"
        stores = await asyncio.gather(*(open_store(url) for _ in range(6)))
        try:
            async with stores[-1].read() as tx:
                assert await tx.fetchval("PRAGMA journal_mode") == "wal"
                assert await tx.fetchval("SELECT COUNT(*) FROM schema_migrations") == len(
                    migrations()
                )
        finally:
            for s in stores:
                await s.close()


async def test_migrate_on_a_fresh_store_reports_what_it_applied(database_url: str) -> None:
    if database_url.startswith("sqlite:"):
        from flovyn_server.store.sqlite import SqliteStore

        raw: Store = await SqliteStore.open(database_url.removeprefix("sqlite://"))
    else:
        from flovyn_server.store.postgres import PostgresStore

        raw = await PostgresStore.open(database_url)
    try:
        assert await raw.migrate() == [v for v, _ in migrations()]
        assert await raw.migrate() == []
    finally:
        await raw.close()


# --- transactions -----------------------------------------------------------------------------


async def test_transaction_commits(store: Store, database_url: str) -> None:
    tenant_id = await insert_tenant(store, "acme", tier="pro")
    async with store.read() as tx:
        row = await tx.fetchrow(
            "SELECT id, slug, tier, region FROM tenants WHERE id = $1", tenant_id
        )
    assert row == {"id": tenant_id, "slug": "acme", "tier": "pro", "region": None}

    # Visible to another connection/process, not only to the writer.
    other = await open_store(database_url)
    try:
        assert await tenant_slugs(other) == ["acme"]
    finally:
        await other.close()


async def test_exception_rolls_back(store: Store) -> None:
    await insert_tenant(store, "before")

    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        async with store.transaction() as tx:
            await tx.execute(INSERT_TENANT, *tenant_row("doomed"))
            await tx.execute("UPDATE tenants SET tier = $1 WHERE slug = $2", "pro", "before")
            assert await tx.fetchval("SELECT COUNT(*) FROM tenants") == 2  # seen inside
            raise Boom

    async with store.read() as tx:
        rows = await tx.fetch("SELECT slug, tier FROM tenants ORDER BY slug")
    assert rows == [{"slug": "before", "tier": "free"}]
    # The store is still usable: the lock/connection was released.
    await insert_tenant(store, "after")
    assert await tenant_slugs(store) == ["after", "before"]


async def test_failing_statement_rolls_back_the_whole_transaction(store: Store) -> None:
    with pytest.raises(Exception, match=r"(?i)unique|duplicate"):
        async with store.transaction() as tx:
            await tx.execute(INSERT_TENANT, *tenant_row("one"))
            await tx.execute(INSERT_TENANT, *tenant_row("one"))  # slug is UNIQUE
    assert await tenant_slugs(store) == []


async def test_fetch_helpers_and_rowcounts(store: Store) -> None:
    async with store.transaction() as tx:
        await tx.executemany(INSERT_TENANT, [tenant_row(f"t{i:02d}") for i in range(10)])
        assert await tx.execute("UPDATE tenants SET tier = $1 WHERE slug < $2", "pro", "t04") == 4
        assert await tx.execute("DELETE FROM tenants WHERE slug = $1", "missing") == 0
        assert await tx.fetchrow("SELECT id FROM tenants WHERE slug = $1", "missing") is None
        assert await tx.fetchval("SELECT id FROM tenants WHERE slug = $1", "missing") is None
        assert await tx.fetchval("SELECT COUNT(*) FROM tenants WHERE tier = $1", "pro") == 4


async def test_update_returning(store: Store) -> None:
    a = await insert_tenant(store, "a")
    b = await insert_tenant(store, "b")
    await insert_tenant(store, "c", tier="pro")
    async with store.transaction() as tx:
        rows = await tx.fetch(
            "UPDATE tenants SET tier = $1, region = $2 WHERE tier = $3 RETURNING id, tier, region",
            "team",
            "eu",
            "free",
        )
    assert sorted(rows, key=lambda r: r["id"]) == sorted(
        [{"id": a, "tier": "team", "region": "eu"}, {"id": b, "tier": "team", "region": "eu"}],
        key=lambda r: r["id"],
    )
    async with store.transaction() as tx:
        assert await tx.fetch("UPDATE tenants SET tier = $1 WHERE 1 = 0 RETURNING id", "x") == []


# --- wake-ups ---------------------------------------------------------------------------------


async def test_notify_reaches_hooks_after_commit_only(store: Store) -> None:
    hook = Recorder()
    store.on_commit_notify(hook)

    async with store.transaction() as tx:
        await tx.execute(INSERT_TENANT, *tenant_row("n1"))
        tx.notify("queue:acme:default")
        tx.notify("workflow:1")
        tx.notify("workflow:1")
        assert hook.calls == []  # not before the commit
    assert hook.calls == [{"queue:acme:default", "workflow:1"}]

    with pytest.raises(RuntimeError):
        async with store.transaction() as tx:
            tx.notify("rolled-back")
            raise RuntimeError("abort")
    async with store.transaction() as tx:  # a commit without wake-ups calls no hook
        await tx.execute(INSERT_TENANT, *tenant_row("n2"))
    assert hook.calls == [{"queue:acme:default", "workflow:1"}]


async def test_wakeups_cross_stores_via_listen_notify(postgres_url: str) -> None:
    a = await open_store(postgres_url)
    b = await open_store(postgres_url)
    heard_a, heard_b = Recorder(), Recorder()
    a.on_commit_notify(heard_a)
    b.on_commit_notify(heard_b)
    try:
        async with a.transaction() as tx:
            tx.notify("task:1")
            tx.notify("queue:q")
        assert heard_a.calls == [{"task:1", "queue:q"}]  # local, synchronous on commit
        await eventually(lambda: heard_b.count("task:1") == 1)
        assert heard_b.calls == [{"task:1", "queue:q"}]

        with pytest.raises(RuntimeError):
            async with a.transaction() as tx:
                tx.notify("never")
                raise RuntimeError("abort")

        # Barrier: NOTIFYs reach each listener in commit order, so once `a` hears b's
        # marker it has already been sent everything committed before it.
        async with b.transaction() as tx:
            tx.notify("marker")
        await eventually(lambda: heard_a.count("marker") == 1)
        await eventually(lambda: heard_b.count("marker") == 1)
        assert heard_a.count("task:1") == 1  # its own NOTIFY was not delivered twice
        assert heard_b.count("marker") == 1
        assert heard_a.count("never") == heard_b.count("never") == 0
        assert heard_a.calls == [{"task:1", "queue:q"}, {"marker"}]
        assert heard_b.calls == [{"task:1", "queue:q"}, {"marker"}]
    finally:
        await a.close()
        await b.close()


# --- claims -------------------------------------------------------------------------------------

CLAIM = (
    "UPDATE tenants SET tier = $1 WHERE id IN ("
    "SELECT id FROM tenants WHERE tier = 'free' ORDER BY slug LIMIT $2 "
    "FOR UPDATE SKIP LOCKED) RETURNING id"
)


async def claim(store: Store, owner: str, limit: int = 5, hold_s: float = 0.0) -> list[str]:
    async with store.transaction() as tx:
        rows = await tx.fetch(CLAIM, owner, limit)
        if hold_s:
            await asyncio.sleep(hold_s)  # keep the rows locked while others claim
    return [r["id"] for r in rows]


async def test_claims_are_exclusive_under_concurrency(database_url: str) -> None:
    # PostgreSQL: two stores, as two server processes would have. SQLite serves one
    # process: one store, whose claimers contend on its write lock.
    count = 2 if database_url.startswith("postgres") else 1
    stores = [await open_store(database_url) for _ in range(count)]
    try:
        async with stores[0].transaction() as tx:
            await tx.executemany(INSERT_TENANT, [tenant_row(f"r{i:03d}") for i in range(50)])

        claimed: dict[str, list[str]] = {}

        async def claimer(store: Store, owner: str) -> None:
            mine = claimed.setdefault(owner, [])
            while batch := await claim(store, owner, hold_s=0.005):
                mine.extend(batch)

        await asyncio.wait_for(
            asyncio.gather(
                *(claimer(s, f"owner-{n}-{k}") for n, s in enumerate(stores) for k in range(3))
            ),
            timeout=30,
        )
        everything = [i for ids in claimed.values() for i in ids]
        assert len(everything) == 50
        assert len(set(everything)) == 50  # no row claimed twice

        async with stores[-1].read() as tx:
            rows = await tx.fetch("SELECT id, tier FROM tenants")
        owner_of = {r["id"]: r["tier"] for r in rows}
        for owner, ids in claimed.items():
            assert all(owner_of[i] == owner for i in ids)  # the UPDATE matches what RETURNING said
    finally:
        for s in stores:
            await s.close()


async def test_skip_locked_skips_rows_another_store_holds(postgres_url: str) -> None:
    a = await open_store(postgres_url)
    b = await open_store(postgres_url)
    try:
        async with a.transaction() as tx:
            await tx.executemany(INSERT_TENANT, [tenant_row(f"s{i:02d}") for i in range(12)])

        locked = asyncio.Event()
        release = asyncio.Event()

        async def hold_five() -> list[str]:
            async with a.transaction() as tx:
                rows = await tx.fetch(CLAIM, "a", 5)
                locked.set()
                await release.wait()
            return [r["id"] for r in rows]

        holder = asyncio.create_task(hold_five())
        await asyncio.wait_for(locked.wait(), timeout=5)
        # `a` still holds its rows: `b` must skip them at once instead of waiting.
        got_b = await asyncio.wait_for(claim(b, "b"), timeout=5)
        release.set()
        got_a = await holder

        assert len(got_a) == 5 and len(got_b) == 5
        assert not set(got_a) & set(got_b)
        async with b.read() as tx:
            by_slug = {
                r["slug"]: r["tier"]
                for r in await tx.fetch("SELECT slug, tier FROM tenants ORDER BY slug")
            }
        assert [s for s, t in by_slug.items() if t == "a"] == [f"s{i:02d}" for i in range(5)]
        assert [s for s, t in by_slug.items() if t == "b"] == [f"s{i:02d}" for i in range(5, 10)]
    finally:
        await a.close()
        await b.close()


# --- SQL translation for SQLite -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("SELECT a FROM t WHERE b = $1 AND c = $12", "SELECT a FROM t WHERE b = ?1 AND c = ?12"),
        ("SELECT id FROM t LIMIT $1 FOR UPDATE SKIP LOCKED", "SELECT id FROM t LIMIT ?1"),
        ("SELECT id FROM t WHERE id = $1 FOR UPDATE", "SELECT id FROM t WHERE id = ?1"),
        (
            "UPDATE t SET x = 1 WHERE id IN (SELECT id FROM t\n  FOR UPDATE\n  SKIP LOCKED) "
            "RETURNING id",
            "UPDATE t SET x = 1 WHERE id IN (SELECT id FROM t) RETURNING id",
        ),
        ("SELECT updated_at, for_update FROM t", "SELECT updated_at, for_update FROM t"),
    ],
)
def test_sqlite_translate(sql: str, expected: str) -> None:
    assert translate(sql) == expected


async def test_row_lock_clauses_run_on_both_backends(store: Store) -> None:
    tenant_id = await insert_tenant(store, "locked")
    async with store.transaction() as tx:
        row = await tx.fetchrow("SELECT id, tier FROM tenants WHERE id = $1 FOR UPDATE", tenant_id)
        assert row == {"id": tenant_id, "tier": "free"}
        skipped = await tx.fetch(
            "SELECT id FROM tenants WHERE id = $1 FOR UPDATE SKIP LOCKED", tenant_id
        )
        assert skipped == [{"id": tenant_id}]  # our own lock does not hide the row from us


# --- group commit: concurrent writes share a transaction, each keeps its own outcome ----


async def test_group_commit_shares_a_transaction_and_isolates_a_failure(store: Store) -> None:
    from flovyn_server.domain import Conflict
    from flovyn_server.engine.group_commit import GroupCommit
    from flovyn_server.store.base import Tx

    group = GroupCommit(store, lanes=1)
    committed: list[str] = []
    wakes = Recorder()
    store.on_commit_notify(wakes)

    def writer(slug: str, fail: bool = False) -> Any:
        async def operation(tx: Tx) -> str:
            await tx.execute(INSERT_TENANT, *tenant_row(slug))
            tx.notify(f"key:{slug}")
            tx.on_commit(lambda: committed.append(slug))
            if fail:  # after its write: the group must not keep it
                raise Conflict(f"{slug} refused")
            return slug

        return operation

    slugs = [f"g{i}" for i in range(8)]
    outcomes = await asyncio.gather(
        *(group.run("one-lane", writer(s, fail=(s == "g3"))) for s in slugs),
        return_exceptions=True,
    )
    assert [o if isinstance(o, str) else type(o).__name__ for o in outcomes] == [
        s if s != "g3" else "Conflict" for s in slugs
    ]
    assert await tenant_slugs(store) == [s for s in slugs if s != "g3"]
    assert sorted(committed) == [s for s in slugs if s != "g3"]  # once each, never g3
    assert all(wakes.count(f"key:{s}") == (0 if s == "g3" else 1) for s in slugs)

    # Without a failure, the requests of one turn of the loop commit together.
    await asyncio.gather(*(group.run("one-lane", writer(f"h{i}")) for i in range(6)))
    assert [keys for keys in wakes.calls if any(k.startswith("key:h") for k in keys)] == [
        {f"key:h{i}" for i in range(6)}
    ]


async def test_deferred_writes_are_sent_before_a_read_of_their_table(store: Store) -> None:
    async with store.transaction() as tx:
        tx.write(INSERT_TENANT, *tenant_row("w1"))
        tx.write(INSERT_TENANT, *tenant_row("w2"))
        # A statement on another table does not send them ...
        assert await tx.fetchval("SELECT count(*) FROM workers") == 0
        # ... one naming their table does, in order.
        rows = await tx.fetch("SELECT slug FROM tenants ORDER BY slug")
        assert [r["slug"] for r in rows] == ["w1", "w2"]
        tx.write(INSERT_TENANT, *tenant_row("w3"))  # sent at the commit
    assert await tenant_slugs(store) == ["w1", "w2", "w3"]

    with pytest.raises(RuntimeError):
        async with store.transaction() as tx:
            tx.write(INSERT_TENANT, *tenant_row("w4"))
            raise RuntimeError("roll back")
    assert await tenant_slugs(store) == ["w1", "w2", "w3"]

    # A deferred write that fails fails the commit, and the transaction rolls back whole.
    with pytest.raises(Exception):  # noqa: B017 - each backend has its own error type
        async with store.transaction() as tx:
            await tx.execute(INSERT_TENANT, *tenant_row("w5"))
            tx.write(INSERT_TENANT, *tenant_row("w1"))  # the slug is taken
    assert await tenant_slugs(store) == ["w1", "w2", "w3"]
    with pytest.raises(ValueError):
        async with store.transaction() as tx:
            tx.write("SELECT 1")


async def test_group_commit_runs_a_deadlock_victim_again(store: Store) -> None:
    from flovyn_server.engine.group_commit import GroupCommit
    from flovyn_server.store.base import Tx

    if store.backend != "postgres":
        pytest.skip("SQLite has one writer: no deadlocks to break")
    import asyncpg

    group = GroupCommit(store, lanes=1)
    tries: list[int] = []

    async def operation(tx: Tx) -> str:
        tries.append(1)
        await tx.execute(INSERT_TENANT, *tenant_row(f"d{len(tries)}"))
        if len(tries) < 3:  # what PostgreSQL raises when it breaks a deadlock
            raise asyncpg.DeadlockDetectedError("deadlock detected")
        return "done"

    assert await group.run("lane", operation) == "done"
    assert len(tries) == 3 and await tenant_slugs(store) == ["d3"]  # the victims rolled back


async def test_sqlite_closes_after_its_background_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The store's statistics and checkpoints run in a thread on their own connection;
    closing the store meanwhile waits for them: closing that connection under a running
    statement crashed the process."""
    finished: list[bool] = []

    def slow_statistics(conn: sqlite3.Connection) -> None:
        time.sleep(0.3)  # still at work when the store closes
        conn.execute("SELECT count(*) FROM workflow_executions").fetchone()
        finished.append(True)

    monkeypatch.setattr(sqlite_store, "_analyse", slow_statistics)
    store = await open_store(f"sqlite:///{tmp_path / 'closing.db'}")
    await asyncio.sleep(0.1)  # the first pass has begun
    await store.close()
    assert finished == [True]
