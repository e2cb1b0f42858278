"""Live fan-out of workflow histories to stream subscribers.

A commit that appends to a history wakes `ev:<tenant>` (in this process, and in the
others through NOTIFY). The hub then makes ONE read for all the subscriptions of that
tenant: the events after each one's position and the execution's status, and hands
each subscription its part. Reads of one tenant never overlap: a wake-up during a read
makes one more read after it, however many commits came meanwhile.

The history is the one source of truth: sequences are gapless and commit in order per
execution (appends hold the execution's row lock), so a subscriber that knows the last
sequence it sent can always fill a gap or skip a repeat from the table (see
`api/streams.py`). A subscription whose client reads too slowly (its queue is full) is
dropped: its stream ends and the client resumes with Last-Event-ID.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

from flovyn_server import metrics
from flovyn_server.domain import TERMINAL_WORKFLOW
from flovyn_server.engine.history import histories_after
from flovyn_server.models.workflows import HistoryEvent
from flovyn_server.store.base import Store

log = logging.getLogger(__name__)

KEY_PREFIX = "ev:"
READ_LIMIT = 10_000  # events in one fan-out read; more are read by the next one


@dataclass(frozen=True)
class Update:
    """What one read found for one execution: new events and its status."""

    events: list[HistoryEvent]
    status: str

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL_WORKFLOW


@dataclass(eq=False)
class Subscription:
    tenant_id: str
    execution_id: str
    seen: int  # the last sequence this subscription was handed (or resumed from)
    queue: asyncio.Queue[Update | None] = field(default_factory=asyncio.Queue)
    dropped: bool = False


class StreamHub:
    def __init__(self, store: Store, *, buffer: int = 256) -> None:
        self.store = store
        self.buffer = buffer
        self._subs: dict[str, dict[Subscription, None]] = {}  # tenant -> subscriptions
        self._pending: set[str] = set()  # tenants to read again after the current read
        self._readers: dict[str, asyncio.Task[None]] = {}
        self.closed = False

    # -- subscriptions --

    def subscribe(self, tenant_id: str, execution_id: str, after: int) -> Subscription:
        """Register before reading the backlog, so no commit in between is missed."""
        sub = Subscription(tenant_id, execution_id, after, asyncio.Queue(self.buffer))
        self._subs.setdefault(tenant_id, {})[sub] = None
        metrics.labelled(metrics.SSE_SUBSCRIBERS, "workflow").inc()
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        subs = self._subs.get(sub.tenant_id)
        if subs is None or sub not in subs:
            return
        del subs[sub]
        metrics.labelled(metrics.SSE_SUBSCRIBERS, "workflow").dec()
        if not subs:
            del self._subs[sub.tenant_id]

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
        """Read the tenant's subscriptions soon (after a commit, or for a new one's
        backlog); a read already running is followed by one more."""
        if self.closed:
            return
        if tenant_id in self._readers:
            self._pending.add(tenant_id)
            return
        self._readers[tenant_id] = asyncio.create_task(
            self._read_loop(tenant_id), name=f"flovyn-stream-read-{tenant_id}"
        )

    async def _read_loop(self, tenant_id: str) -> None:
        try:
            while True:
                self._pending.discard(tenant_id)
                try:
                    more = await self._read(tenant_id)
                except Exception:  # the database is down: the next commit or resync retries
                    log.exception("stream fan-out read failed for tenant %s", tenant_id)
                    more = False
                if not more and tenant_id not in self._pending:
                    return
        finally:
            self._readers.pop(tenant_id, None)

    async def _read(self, tenant_id: str) -> bool:
        """One read for the tenant's subscriptions; True if it hit its limit."""
        subs = list(self._subs.get(tenant_id, ()))
        if not subs:
            return False
        after: dict[str, int] = {}
        for sub in subs:
            after[sub.execution_id] = min(after.get(sub.execution_id, sub.seen), sub.seen)
        async with self.store.read() as tx:
            found, full = await histories_after(tx, after, READ_LIMIT)
        for sub in subs:
            if (read := found.get(sub.execution_id)) is None:
                continue
            status, history = read
            events = [e for e in history if e["sequence"] > sub.seen]
            if events:
                sub.seen = events[-1]["sequence"]
            if events or status in TERMINAL_WORKFLOW:
                _offer(sub, Update(events, status))
        return full


def _offer(sub: Subscription, update: Update | None) -> None:
    """Hand `update` to the subscription, or drop it if its client is too slow."""
    if sub.dropped:
        return
    try:
        sub.queue.put_nowait(update)
    except asyncio.QueueFull:
        sub.dropped = True
        metrics.SSE_DROPPED.inc()
        with contextlib.suppress(asyncio.QueueEmpty):
            sub.queue.get_nowait()  # room for the end marker
        sub.queue.put_nowait(None)
