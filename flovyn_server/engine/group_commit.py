"""Group commit: the hot worker and trigger writes of concurrent requests share one
transaction.

Each trigger, submit and task completion is a handful of statements, and on
PostgreSQL the transaction around them (BEGIN, COMMIT and its WAL flush, a round trip
each) costs as much as the statements: measured here, 20 one-row transactions cost
three times the CPU of one transaction of the same 20 statements, on both sides of the
connection.
So requests queue their operation; a flush runs everything queued in one transaction,
in arrival order, and answers each request once it has committed. A lone request is
flushed at the next turn of the event loop, so an idle server adds no wait; a busy one
commits in bigger groups.

Operations go to one of a few lanes by the workflow they write to, each lane flushing
one group at a time: groups of different lanes run side by side, and two writes to one
workflow never sit in groups that could wait on each other's row locks (a deadlock
between groups is still possible through a parent and its child in different lanes;
PostgreSQL breaks it and the operations run again alone).

An operation that fails (a stale attempt, a bad command, a deadlock) rolls back the
whole group; then every operation of the group runs again in a transaction of its own,
so each request gets exactly its own answer or error, as if it had run alone.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from flovyn_server import metrics
from flovyn_server.store.base import Store, Tx

log = logging.getLogger(__name__)

T = TypeVar("T")
_ATTEMPTS = 3  # of an operation alone, when the database gave up on it (a deadlock)
Operation = Callable[[Tx], Awaitable[Any]]


class GroupCommit:
    def __init__(self, store: Store, *, lanes: int = 2, max_group: int = 64) -> None:
        self.store = store
        self.max_group = max_group
        self._lanes = [_Lane() for _ in range(lanes)]

    async def run(self, key: str, operation: Callable[[Tx], Awaitable[T]]) -> T:
        """Run `operation(tx)` in a transaction, maybe shared; its result once committed.
        `key` names what it writes to (a workflow id): it picks the lane."""
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        lane = self._lanes[hash(key) % len(self._lanes)]
        lane.queue.append((operation, future))
        if lane.flusher is None:
            lane.flusher = asyncio.create_task(self._flush(lane))
        return await future

    async def _flush(self, lane: _Lane) -> None:
        try:
            await asyncio.sleep(0)  # let the requests of this turn of the loop join
            while lane.queue:
                group, lane.queue = lane.queue[: self.max_group], lane.queue[self.max_group :]
                await self._commit(group)
        finally:
            lane.flusher = None

    async def _commit(self, group: list[tuple[Operation, asyncio.Future[Any]]]) -> None:
        results: list[Any] = []
        try:
            async with self.store.transaction() as tx:
                for operation, _ in group:
                    results.append(await operation(tx))
        except Exception as exc:
            if len(group) == 1 and not self.store.is_transient(exc):
                _settle(group[0][1], exc)
                return
            # Each runs again alone and gets its own outcome.
            log.debug("a group of %d rolled back (%r); running each alone", len(group), exc)
            for operation, future in group:
                await self._alone(operation, future)
            return
        metrics.GROUP_COMMIT_SIZE.observe(len(group))
        for (_, future), result in zip(group, results, strict=True):
            _settle(future, result)

    async def _alone(self, operation: Operation, future: asyncio.Future[Any]) -> None:
        for attempt in range(1, _ATTEMPTS + 1):
            try:
                async with self.store.transaction() as tx:
                    result = await operation(tx)
            except Exception as exc:
                # A deadlock victim runs again: a group holds its locks longer than a
                # lone request, so meeting another transaction's locks is more likely.
                if attempt < _ATTEMPTS and self.store.is_transient(exc):
                    log.info("operation retried after %r", exc)
                    continue
                _settle(future, exc)
                return
            metrics.GROUP_COMMIT_SIZE.observe(1)
            _settle(future, result)
            return


def _settle(future: asyncio.Future[Any], outcome: Any) -> None:
    if future.done():  # the request went away
        return
    if isinstance(outcome, Exception):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)


class _Lane:
    def __init__(self) -> None:
        self.queue: list[tuple[Operation, asyncio.Future[Any]]] = []
        self.flusher: asyncio.Task[None] | None = None
