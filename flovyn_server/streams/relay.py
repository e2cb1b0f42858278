"""One stream's delivery: what it missed, then the hub's batches, with no gap and no
repeat.

The stream keeps `last`, the key of the last event it sent (or the client's
Last-Event-ID), and `covered`: every position below it has been read. It reads from
`last` to the horizon first; then, for each batch from the hub, reads whatever lies
between `covered` and the batch (a subscription that joined after the hub's last read,
or a batch dropped for a slow client) and sends what is past `last`. Replay and live
delivery are the same reads (`read_range`), over the same committed rows.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from flovyn_server.domain import TERMINAL_WORKFLOW
from flovyn_server.engine import stream_reads as reads
from flovyn_server.engine.stream_reads import Item, State
from flovyn_server.store.base import Store
from flovyn_server.streams.hub import Batch, Kind, Subscription, read_range

FEED_PAGE = 200  # feed changes (transactions) per read when a feed client catches up


class Relay:
    def __init__(
        self,
        store: Store,
        sub: Subscription,
        send: Callable[[Item], Awaitable[None]],
        *,
        ends_with: str | None,
        mark: Callable[[str], Awaitable[None]] | None = None,
    ) -> None:
        """`send` writes one event to the client; the stream ends once the execution
        `ends_with` has ended and all it wrote was sent (None: it never ends). `mark`
        tells the client where a feed that starts now starts (an `id:` with no event),
        so that a reconnection before its first event misses nothing."""
        self.store, self.sub, self.send = store, sub, send
        self.mark = mark
        self.ends_with = ends_with
        self.last: tuple[int, str] = (-1, "")
        self.covered = 0
        self._seen_to = 0  # the feed: every position up to this one was sent before
        self.states: dict[str, State] = {}

    @property
    def last_id(self) -> str:
        """The id to resume after what was sent: the last event's, or (none sent) a
        position just below what was read."""
        pos, tie = self.last
        if pos < 0 or tie == reads.LAST_TIE:
            return str(max(self.covered - 1, pos, 0))
        return reads.event_id(self.last)

    async def run(self, after: tuple[int, str] | None) -> str | None:
        """Relay until the end; the execution's final status, or None when the stream
        was cut (shutdown, or a client too slow)."""
        async with self.store.read() as tx:
            hi, _ = await tx.horizon()
        if after is None and self.sub.kind is Kind.FEED:  # the feed starts now
            self.last, self.covered = (hi - 1, reads.LAST_TIE), hi
            if self.mark is not None:
                await self.mark(self.last_id)
        else:
            self.last = after or (-1, "")
            self.covered = max(self.last[0], 0)
            await self._catch_up(hi)
        while (ended := self._ended()) is None:
            batch = await self.sub.queue.get()
            if batch is None:
                return None
            await self._take(batch)
        return ended

    async def _take(self, batch: Batch) -> None:
        if batch.lo > self.covered:
            await self._catch_up(batch.lo)
        await self._send(batch.items)
        if batch.hi > self.covered:
            self.covered = batch.hi
            self.states.update(batch.states)

    async def _catch_up(self, hi: int) -> None:
        """Read and send what lies between `covered` and `hi`."""
        sub = self.sub
        if sub.kind is Kind.FEED:
            after: tuple[int, str] | None = max(self.last, (self.covered, ""))
            while after is not None:
                async with self.store.read() as tx:
                    items, after = await reads.feed(tx, sub.tenant_id, after, hi, FEED_PAGE)
                await self._send(items)
        else:
            async with self.store.read() as tx:
                found, states = await read_range(
                    tx, sub.tenant_id, sub.kind, {sub.scope}, self.covered, hi
                )
            await self._send(found.get(sub.scope, []))
            self.states.update(states)
        self.covered = max(self.covered, hi)

    async def _send(self, items: list[Item]) -> None:
        for item in items:
            if item.key > self.last:
                if item.key[0] > self.last[0]:
                    # The client has seen all of the positions up to here. (One feed
                    # position may carry many executions: a transaction's.)
                    self._seen_to = self.last[0]
                if item.created_pos and item.created_pos > self._seen_to:
                    item = reads.created(item)  # the client has not seen it yet
                await self.send(item)
                self.last = item.key

    def _ended(self) -> str | None:
        if self.ends_with is None or (state := self.states.get(self.ends_with)) is None:
            return None
        if state.status in TERMINAL_WORKFLOW and reads.settled(state.stream_pos, self.covered):
            return state.status
        return None
