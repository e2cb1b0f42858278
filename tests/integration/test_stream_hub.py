"""The stream hub on a real store (both backends): one read per wake-up for all the
subscriptions of a tenant, coalesced wake-ups, and slow subscribers dropped."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Iterator
from typing import Any

from flovyn_server import metrics
from flovyn_server.domain import EventType, now_ms
from flovyn_server.engine.history import append_events
from flovyn_server.engine.wake import stream_key
from flovyn_server.engine.workflows import create_execution
from flovyn_server.store.base import Store
from flovyn_server.streams.hub import StreamHub, Subscription, Update


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


async def _next(sub: Subscription) -> Update:
    update = await asyncio.wait_for(sub.queue.get(), 5)
    assert update is not None
    return update


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


async def test_backlog_then_live(store: Store) -> None:
    hub = StreamHub(store)
    store.on_commit_notify(hub.wake)
    tenant_id = await _tenant(store)
    execution_id = await _execution(store, tenant_id)
    sub = hub.subscribe(tenant_id, execution_id, 0)
    hub.refresh(tenant_id)
    first = await _next(sub)
    assert [e["eventType"] for e in first.events] == ["WORKFLOW_STARTED"]
    assert first.status == "PENDING" and not first.terminal
    await _append(store, execution_id, 3)
    live = await _next(sub)
    assert [e["sequence"] for e in live.events] == [2, 3, 4]
    hub.unsubscribe(sub)


async def test_one_read_per_wake_for_every_subscription_of_a_tenant(store: Store) -> None:
    hub = StreamHub(store)
    tenant_id = await _tenant(store)
    executions = [await _execution(store, tenant_id) for _ in range(50)]
    subs = [hub.subscribe(tenant_id, e, 1) for e in executions]
    for e in executions:
        await _append(store, e, 1)
    with counting_reads(hub) as reads:
        hub.wake([stream_key(tenant_id)])
        updates = [await _next(s) for s in subs]
    assert reads == [1]
    assert all([e["sequence"] for e in u.events] == [2] for u in updates)
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
    slow = hub.subscribe(tenant_id, slow_id, 1)
    fast = hub.subscribe(tenant_id, fast_id, 1)
    dropped = metrics.SSE_DROPPED._value.get()
    for i in range(4):  # the slow one never reads
        await _append(store, slow_id, 1)
        await _append(store, fast_id, 1)
        hub.refresh(tenant_id)
        update = await _next(fast)
        assert [e["sequence"] for e in update.events] == [i + 2]
    assert slow.dropped
    assert metrics.SSE_DROPPED._value.get() == dropped + 1
    queued = [slow.queue.get_nowait() for _ in range(slow.queue.qsize())]
    assert queued[-1] is None  # its stream ends; the client resumes with Last-Event-ID
    assert open_streams._value.get() == before + 2
    hub.unsubscribe(slow)
    hub.unsubscribe(fast)
    hub.unsubscribe(fast)  # twice: counted once
    assert open_streams._value.get() == before
