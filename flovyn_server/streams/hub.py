"""Live fan-out of stream events to subscribers, one read per tenant.

A commit that changes what a stream shows wakes `ev:<tenant>` (in this process, and in
the others through NOTIFY). The hub then makes ONE read for all the subscriptions of
that tenant: the rows between the position it read up to last time and the current
horizon (below which every committed row is final, see "Stream positions" in
store/base.py), and hands each subscription a `Batch` with its part. Reads of one
tenant never overlap: a wake-up during a read makes one more read after it.

A subscription knows nothing of the client's position: the stream (see `relay`) reads
what lies before the first batch it gets, and skips what it sent already. A
subscription whose client reads too slowly (its queue is full) is dropped: its stream
ends and the client resumes with Last-Event-ID.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum

from flovyn_server import metrics
from flovyn_server.engine import stream_reads as reads
from flovyn_server.engine.stream_reads import Item, State
from flovyn_server.store.base import Store, Tx

log = logging.getLogger(__name__)

KEY_PREFIX = "ev:"
FOLLOW_UP_S = 0.05  # read again when transactions were running at the horizon


class Kind(StrEnum):
    WORKFLOW = "workflow"  # one execution's history and what its tasks stream
    CONSOLIDATED = "consolidated"  # the same over an execution and its descendants
    TASKS = "tasks"  # the task events of an execution
    TASK = "task"  # the task events of one standalone task
    FEED = "feed"  # the tenant's executions as they change


@dataclass(frozen=True)
class Batch:
    """The events of one subscription in `[lo, hi)`, and its executions' states."""

    lo: int
    hi: int
    items: list[Item]
    states: dict[str, State]


@dataclass(eq=False)
class Subscription:
    tenant_id: str
    kind: Kind
    scope: str  # the execution or task id; the tenant id for the feed
    queue: asyncio.Queue[Batch | None] = field(default_factory=asyncio.Queue)
    dropped: bool = False
    # Where the reads not handed over (nothing in them for this subscription) began;
    # None once handed a batch. A new subscription gets the next batch, even empty.
    since: int | None = None
    synced: bool = False


async def read_range(
    tx: Tx,
    tenant_id: str,
    kind: Kind,
    scopes: Iterable[str],
    lo: int,
    hi: int,
    changed: set[str] | None = None,
) -> tuple[dict[str, list[Item]], dict[str, State]]:
    """The events of `kind` in `[lo, hi)` for each scope, in key order, and the states
    of the executions (standalone tasks, for `Kind.TASK`) whose end ends the stream:
    all, or those with events in the range or among `changed` (whose status may have
    changed)."""
    scopes = set(scopes)
    found: dict[str, list[Item]]
    if kind is Kind.FEED:
        items, _ = await reads.feed(tx, tenant_id, (lo, ""), hi)
        return {tenant_id: items}, {}
    if kind is Kind.TASK:
        found = reads.by_scope(await reads.tasks(tx, "id", scopes, lo, hi))
    elif kind is Kind.TASKS:
        found = reads.by_scope(await reads.tasks(tx, "workflow_execution_id", scopes, lo, hi))
    elif kind is Kind.WORKFLOW:
        found = reads.by_scope(await reads.history(tx, scopes, lo, hi))
    else:
        tree = await reads.trees(tx, scopes)
        members = reads.by_scope(await reads.history(tx, set().union(*tree.values()), lo, hi))
        found = {root: [i for m in ids for i in members.get(m, ())] for root, ids in tree.items()}
    for items in found.values():
        items.sort(key=lambda i: i.key)
    if changed is not None:  # a task's end is one of its events; an execution's may not be
        scopes &= (set() if kind is Kind.TASK else changed) | {s for s, i in found.items() if i}
    if not scopes:
        return found, {}
    read_states = reads.task_states if kind is Kind.TASK else reads.states
    return found, await read_states(tx, scopes)


class StreamHub:
    def __init__(self, store: Store, *, buffer: int = 256) -> None:
        self.store = store
        self.buffer = buffer
        self._subs: dict[str, dict[Subscription, None]] = {}  # tenant -> subscriptions
        self._read_to: dict[str, int] = {}  # tenant -> the horizon of its last read
        self._pending: set[str] = set()  # tenants to read again after the current read
        self._readers: dict[str, asyncio.Task[None]] = {}
        self._follow_ups: dict[str, asyncio.TimerHandle] = {}
        self.closed = False

    # -- subscriptions --

    def subscribe(self, tenant_id: str, kind: Kind, scope: str) -> Subscription:
        """Register before reading the backlog, so no commit in between is missed."""
        sub = Subscription(tenant_id, kind, scope, asyncio.Queue(self.buffer))
        self._subs.setdefault(tenant_id, {})[sub] = None
        metrics.labelled(metrics.SSE_SUBSCRIBERS, kind.value).inc()
        self.refresh(tenant_id)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        subs = self._subs.get(sub.tenant_id)
        if subs is None or sub not in subs:
            return
        del subs[sub]
        metrics.labelled(metrics.SSE_SUBSCRIBERS, sub.kind.value).dec()
        if not subs:
            del self._subs[sub.tenant_id]
            self._read_to.pop(sub.tenant_id, None)
            if (timer := self._follow_ups.pop(sub.tenant_id, None)) is not None:
                timer.cancel()

    def end(self, sub: Subscription) -> None:
        """End one subscription's stream (its client went away)."""
        _offer(sub, None)

    def close(self) -> None:
        """Shutting down: every stream ends now (clients resume on another process)."""
        self.closed = True
        for subs in self._subs.values():
            for sub in subs:
                _offer(sub, None)
        for task in self._readers.values():
            task.cancel()
        for timer in self._follow_ups.values():
            timer.cancel()

    # -- wake-ups --

    def wake(self, keys: Iterable[str]) -> None:
        for key in keys:
            if key.startswith(KEY_PREFIX):
                tenant_id = key[len(KEY_PREFIX) :]
                if tenant_id in self._subs:
                    self.refresh(tenant_id)

    def wake_all(self) -> None:
        """Wake-ups may have been missed (a lost LISTEN connection): read every tenant."""
        for tenant_id in list(self._subs):
            self.refresh(tenant_id)

    def refresh(self, tenant_id: str) -> None:
        """Read the tenant's subscriptions soon; a read already running is followed by
        one more."""
        if self.closed:
            return
        if tenant_id in self._readers:
            self._pending.add(tenant_id)
            return
        self._readers[tenant_id] = asyncio.create_task(
            self._read_loop(tenant_id), name=f"flovyn-stream-read-{tenant_id}"
        )

    async def _read_loop(self, tenant_id: str) -> None:
        busy = False
        try:
            while True:
                self._pending.discard(tenant_id)
                try:
                    busy = await self._read(tenant_id)
                except Exception:  # the database is down: the next commit or resync retries
                    log.exception("stream fan-out read failed for tenant %s", tenant_id)
                    busy = False
                if tenant_id not in self._pending:
                    return
        finally:
            self._readers.pop(tenant_id, None)
            if busy and tenant_id in self._subs and tenant_id not in self._follow_ups:
                # Rows committed behind a transaction that was still running wait below
                # the horizon; that transaction may commit without waking anyone.
                self._follow_ups[tenant_id] = asyncio.get_running_loop().call_later(
                    FOLLOW_UP_S, self._follow_up, tenant_id
                )

    def _follow_up(self, tenant_id: str) -> None:
        self._follow_ups.pop(tenant_id, None)
        if tenant_id in self._subs:
            self.refresh(tenant_id)

    async def _read(self, tenant_id: str) -> bool:
        """One read for the tenant's subscriptions; True if transactions were running
        at its horizon (read again soon)."""
        subs = list(self._subs.get(tenant_id, ()))
        if not subs:
            return False
        kinds: dict[Kind, set[str]] = {}
        for sub in subs:
            kinds.setdefault(sub.kind, set()).add(sub.scope)
        found: dict[Kind, tuple[dict[str, list[Item]], dict[str, State]]] = {}
        async with self.store.read() as tx:
            hi, busy = await tx.horizon()
            lo = self._read_to.get(tenant_id)
            if lo is None or hi < lo:  # a first read only marks where the next begins
                lo = hi
            if hi > lo:
                # Whose status changed, for the streams that end with an execution.
                ends = kinds.keys() - {Kind.FEED, Kind.TASK}
                changed = await reads.changed(tx, tenant_id, lo, hi) if ends else set()
                for kind, scopes in kinds.items():
                    found[kind] = await read_range(tx, tenant_id, kind, scopes, lo, hi, changed)
        if tenant_id in self._subs:  # not unsubscribed meanwhile
            self._read_to[tenant_id] = hi
        # A subscription gets a batch when the read found something for it, and a new
        # one its first batch even if empty: it tells the stream where the hub's reads
        # begin, so that it reads what lies before (see relay.py). A batch covers the
        # reads skipped since the last one it got (they had nothing for it).
        for sub in subs:
            items, states = found.get(sub.kind, ({}, {}))
            mine = items.get(sub.scope, [])
            state = states.get(sub.scope)
            if mine or state is not None or not sub.synced:
                first = lo if sub.since is None else sub.since
                sub.since, sub.synced = None, True
                _offer(sub, Batch(first, hi, mine, {} if state is None else {sub.scope: state}))
            elif sub.since is None:
                sub.since = lo
        return busy


def _offer(sub: Subscription, batch: Batch | None) -> None:
    """Hand `batch` to the subscription, or drop it if its client is too slow."""
    if sub.dropped:
        return
    try:
        sub.queue.put_nowait(batch)
    except asyncio.QueueFull:
        sub.dropped = True
        metrics.SSE_DROPPED.inc()
        with contextlib.suppress(asyncio.QueueEmpty):
            sub.queue.get_nowait()  # room for the end marker
        sub.queue.put_nowait(None)
