"""Long-poll wake-ups: pollers wait on a key until a commit touching it lands.

Keys name a kind of work on a queue (`wf:{tenantId}:{queue}`, `task:{tenantId}:{queue}`).
The store calls `WakeHub.wake` after each commit (and, on PostgreSQL, when another
process's NOTIFY arrives), so a waiting poll is answered without sleeping. When
NOTIFYs may have been missed (the LISTEN connection was lost), it calls `wake_all`.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterable

from flovyn_server.store.base import Tx


def workflow_key(tenant_id: str, queue: str) -> str:
    return f"wf:{tenant_id}:{queue}"


def task_key(tenant_id: str, queue: str) -> str:
    return f"task:{tenant_id}:{queue}"


def stream_key(tenant_id: str) -> str:
    """Something a stream shows changed in this tenant (streams re-read)."""
    return f"ev:{tenant_id}"


def status_changed(tx: Tx, tenant_id: str, execution_id: str) -> None:
    """The execution's status changed (or may have): the tenant feed shows it (a
    `feed_changes` row of the transaction) and its streams read again."""
    tx.feed(tenant_id, execution_id)
    tx.notify(stream_key(tenant_id))


DUE_KEY = "due"  # the scheduler loop: a timer or deadline earlier than it knew of


class Waiter:
    """Registered before the claim query runs, so a wake-up in between is not lost."""

    def __init__(self, hub: WakeHub, key: str) -> None:
        self._hub = hub
        self.key = key
        self.event = asyncio.Event()

    async def wait(self, seconds: float) -> bool:
        try:
            async with asyncio.timeout(max(seconds, 0.0)):
                await self.event.wait()
            return True
        except TimeoutError:
            return False

    def __enter__(self) -> Waiter:
        self._hub._waiters[self.key][self] = None
        return self

    def __exit__(self, *_exc: object) -> None:
        waiters = self._hub._waiters.get(self.key)
        if waiters is not None:
            waiters.pop(self, None)
            if not waiters:
                del self._hub._waiters[self.key]


class WakeHub:
    def __init__(self) -> None:
        # Insertion-ordered, so the longest-waiting poll is woken first.
        self._waiters: defaultdict[str, dict[Waiter, None]] = defaultdict(dict)
        self.closed = False

    def close(self) -> None:
        """Shutting down: answer every held poll now and hold no new ones."""
        self.closed = True
        self.wake_all()

    def wake_all(self) -> None:
        """Wake every waiter, each to run its claim (or due-time) query again: the store
        calls this when wake-ups may have been missed, and those queries re-read them."""
        for waiters in list(self._waiters.values()):
            for waiter in waiters:
                waiter.event.set()

    def waiter(self, key: str) -> Waiter:
        return Waiter(self, key)

    def wake(self, keys: Iterable[str]) -> None:
        """Wake one idle waiter per key.

        Waking all of them would send every poll of a queue to the database for one new
        item, all but one to come back empty. The woken poll claims a batch; if the batch
        came back full (more may be waiting) or it leaves without claiming, it passes the
        wake-up on with `wake` again.
        """
        for key in keys:
            for waiter in self._waiters.get(key, ()):
                if not waiter.event.is_set():
                    waiter.event.set()
                    break

    def waiting(self) -> int:
        return sum(len(w) for w in self._waiters.values())
