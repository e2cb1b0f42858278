"""The stream hub on a real store (both backends): one read per wake-up for all the
subscriptions of a tenant, coalesced wake-ups, and slow subscribers dropped; and stream
positions under interleaved commits (PostgreSQL)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Iterator
from typing import Any

from flovyn_server import metrics
from flovyn_server.domain import EventType, now_ms
from flovyn_server.engine.history import append_events
from flovyn_server.engine.scheduler import Scheduler
from flovyn_server.engine.stream_reads import history
from flovyn_server.engine.wake import WakeHub, stream_key
from flovyn_server.engine.workflows import create_execution
from flovyn_server.store.base import Store
from flovyn_server.store.postgres import PostgresStore
from flovyn_server.streams.hub import Batch, Kind, StreamHub, Subscription


async def _tenant(store: Store) -> str:
    tenant_id = str(uuid.uuid4())
    async with store.transaction() as tx:
        await tx.execute(
            "INSERT INTO tenants (id, name, slug, tier, region, created_at) "
            "VALUES ($1, $2, $3, 'FREE', NULL, $4)",
            tenant_id,
            "t",
            f"t-{tenant_id[:8]}",
            now_ms(),
        )
    return tenant_id


async def _execution(store: Store, tenant_id: str) -> str:
    execution_id = str(uuid.uuid4())
    async with store.transaction() as tx:
        await create_execution(
            tx, tenant_id, execution_id=execution_id, kind="k", queue="q", input=None,
            now=now_ms(),
        )  # fmt: skip
    return execution_id


async def _append(store: Store, execution_id: str, n: int) -> None:
    async with store.transaction() as tx:
        events = [(EventType.OPERATION_COMPLETED, {"operationName": f"op{i}"}) for i in range(n)]
        await append_events(tx, execution_id, events)


async def _next(sub: Subscription, *, empty: bool = False) -> Batch:
    """The next batch (skipping empty ones unless `empty`)."""
    while True:
        batch = await asyncio.wait_for(sub.queue.get(), 5)
        assert batch is not None
        if batch.items or empty:
            return batch


def sequences(batch: Batch) -> list[int]:
    return [item.payload["sequence"] for item in batch.items]  # type: ignore[typeddict-item]


@contextlib.contextmanager
def counting_reads(hub: StreamHub) -> Iterator[list[int]]:
    calls = [0]
    real = hub.store.read

    def read() -> Any:
        calls[0] += 1
        return real()

    hub.store.read = read  # type: ignore[method-assign]
    try:
        yield calls
    finally:
        hub.store.read = real  # type: ignore[method-assign]


async def test_live_batches(store: Store) -> None:
    hub = StreamHub(store)
    store.on_commit_notify(hub.wake)
    tenant_id = await _tenant(store)
    execution_id = await _execution(store, tenant_id)
    sub = hub.subscribe(tenant_id, Kind.WORKFLOW, execution_id)
    first = await _next(sub, empty=True)  # where the hub's reads begin: the stream reads before
    assert first.items == [] and first.lo == first.hi
    await _append(store, execution_id, 3)
    live = await _next(sub)
    assert sequences(live) == [2, 3, 4]
    assert first.hi <= live.lo < live.hi
    assert [i.key for i in live.items] == sorted(i.key for i in live.items)
    assert live.states[execution_id].status == "PENDING"
    hub.unsubscribe(sub)


async def test_one_read_per_wake_for_every_subscription_of_a_tenant(store: Store) -> None:
    hub = StreamHub(store)
    tenant_id = await _tenant(store)
    executions = [await _execution(store, tenant_id) for _ in range(50)]
    subs = [hub.subscribe(tenant_id, Kind.WORKFLOW, e) for e in executions]
    await asyncio.gather(*(_next(s, empty=True) for s in subs))
    for e in executions:
        await _append(store, e, 1)
    with counting_reads(hub) as reads:
        hub.wake([stream_key(tenant_id)])
        updates = [await _next(s) for s in subs]
    assert reads == [1]
    assert all(sequences(u) == [2] for u in updates)
    # Wake-ups during a read coalesce: one more read after it, not one per wake-up.
    await _append(store, executions[0], 1)
    with counting_reads(hub) as reads:
        for _ in range(20):
            hub.wake([stream_key(tenant_id)])
        await _next(subs[0])
        await asyncio.sleep(0.2)
    assert reads[0] in (1, 2)
    # Another tenant's wake-up reads nothing for this one.
    with counting_reads(hub) as reads:
        hub.wake([stream_key(str(uuid.uuid4()))])
        await asyncio.sleep(0.1)
    assert reads == [0]


async def test_a_slow_subscriber_is_dropped_not_waited_for(store: Store) -> None:
    hub = StreamHub(store, buffer=2)
    open_streams = metrics.labelled(metrics.SSE_SUBSCRIBERS, "workflow")
    before = open_streams._value.get()
    tenant_id = await _tenant(store)
    slow_id, fast_id = await _execution(store, tenant_id), await _execution(store, tenant_id)
    slow = hub.subscribe(tenant_id, Kind.WORKFLOW, slow_id)
    fast = hub.subscribe(tenant_id, Kind.WORKFLOW, fast_id)
    await _next(fast, empty=True)
    dropped = metrics.SSE_DROPPED._value.get()
    for i in range(4):  # the slow one never reads
        await _append(store, slow_id, 1)
        await _append(store, fast_id, 1)
        hub.refresh(tenant_id)
        update = await _next(fast)
        assert sequences(update) == [i + 2]
    assert slow.dropped
    assert metrics.SSE_DROPPED._value.get() == dropped + 1
    queued = [slow.queue.get_nowait() for _ in range(slow.queue.qsize())]
    assert queued[-1] is None  # its stream ends; the client resumes with Last-Event-ID
    assert open_streams._value.get() == before + 2
    hub.unsubscribe(slow)
    hub.unsubscribe(fast)
    hub.unsubscribe(fast)  # twice: counted once
    assert open_streams._value.get() == before


# --- positions under interleaved commits (PostgreSQL: commit order is not id order) ------


async def test_a_late_commit_is_never_skipped(postgres_url: str) -> None:
    """A transaction that began first but commits last holds lower positions than rows
    already committed: they stay below the horizon until it ends, so a reader that went
    up to the horizon and goes on from there never skips them."""
    store = await PostgresStore.open(postgres_url)
    await store.migrate()
    try:
        tenant_id = await _tenant(store)
        early, late = await _execution(store, tenant_id), await _execution(store, tenant_id)
        async with store.read() as tx:
            start, _ = await tx.horizon()
        first_open = asyncio.Event()
        release = asyncio.Event()

        async def slow() -> None:  # begins first, takes its transaction id, commits last
            async with store.transaction() as tx:
                await tx.fetchval("SELECT txid_current()")
                first_open.set()
                await release.wait()
                await append_events(tx, early, [(EventType.OPERATION_COMPLETED, {})])

        task = asyncio.create_task(slow())
        await first_open.wait()
        await _append(store, late, 1)  # commits while the slow one is open
        async with store.read() as tx:
            middle, busy = await tx.horizon()
            seen = await history(tx, [early, late], start, middle)
        assert busy
        assert [i.payload["sequence"] for i in seen if i.scope == late] == []  # held back
        release.set()
        await task
        async with store.read() as tx:
            end, _ = await tx.horizon()
            rest = await history(tx, [early, late], middle, end)
        got = sorted((i.key, i.scope) for i in seen + rest)  # each once, in order
        assert [scope for _, scope in got] == [early, late]  # each once, in position order
        # The early-begun transaction's event sits below the late one's: a reader that
        # had taken `late` at its position would have skipped it forever.
        assert got[0][0] < got[1][0]
    finally:
        await store.close()


async def test_an_execution_keeps_sequence_order_in_positions(postgres_url: str) -> None:
    """A transaction that began first but waited for the execution's row lock appends
    after the one that held it: its events take the positions after that one's."""
    store = await PostgresStore.open(postgres_url)
    await store.migrate()
    try:
        tenant_id = await _tenant(store)
        execution_id = await _execution(store, tenant_id)
        older_open = asyncio.Event()
        go = asyncio.Event()

        async def older() -> None:
            async with store.transaction() as tx:
                await tx.fetchval("SELECT txid_current()")  # the lower transaction id
                older_open.set()
                await go.wait()
                await append_events(tx, execution_id, [(EventType.OPERATION_COMPLETED, {})])

        task = asyncio.create_task(older())
        await older_open.wait()
        async with store.transaction() as tx:  # the younger one appends first
            await append_events(tx, execution_id, [(EventType.OPERATION_COMPLETED, {})] * 2)
            go.set()
            await asyncio.sleep(0.2)  # the older one now waits on the row lock
        await task
        async with store.read() as tx:
            rows = await tx.fetch(
                "SELECT sequence, pos FROM workflow_events WHERE workflow_execution_id = $1 "
                "ORDER BY sequence",
                execution_id,
            )
        assert [r["sequence"] for r in rows] == [1, 2, 3, 4]
        positions = [r["pos"] for r in rows]
        assert positions == sorted(positions) and len(set(positions)) == 4
    finally:
        await store.close()


async def test_stream_rows_past_their_retention_are_pruned(store: Store) -> None:
    tenant_id = await _tenant(store)
    now = now_ms()
    async with store.transaction() as tx:
        for age, event in ((3_600_000, "old"), (0, "new")):
            await tx.execute(
                "INSERT INTO stream_events (pos, tenant_id, workflow_execution_id, "
                "task_execution_id, event, data, created_at) "
                f"VALUES ({tx.pos_sql(1)}, $2, NULL, $3, 'task_progress', $4, $5)",
                tx.next_pos(),
                tenant_id,
                str(uuid.uuid4()),
                f'{{"note": "{event}"}}',
                now - age,
            )
            tx.feed(tenant_id, str(uuid.uuid4()))
            await tx.flush(final=True)
            await tx.execute("UPDATE feed_changes SET created_at = $1 WHERE created_at > $1 "
                             "AND tenant_id = $2", now - age, tenant_id)  # fmt: skip
    scheduler = Scheduler(store, WakeHub(), None, None, stream_retention_ms=60_000)  # type: ignore[arg-type]
    assert await scheduler.prune_streams(now - 60_000) == 2
    async with store.read() as tx:
        kept = await tx.fetch("SELECT data FROM stream_events WHERE tenant_id = $1", tenant_id)
        feed = await tx.fetchval(
            "SELECT count(*) FROM feed_changes WHERE tenant_id = $1", tenant_id
        )
    assert [r["data"] for r in kept] == ['{"note": "new"}'] and feed == 1
