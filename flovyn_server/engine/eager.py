"""Eager dispatch: work handed straight back to the worker whose request created it.

A submit that schedules tasks, and a task completion that makes its workflow runnable,
would otherwise commit work that the same worker then polls for: one more request and
one more claim transaction for each. Instead the worker offers free slots in the request
(`eagerTasks` on a submit, `eagerActivation` on a task completion) and the server hands
over, claimed in the same transaction, whatever matches the offer; the rest is queued
for polls as usual.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from flovyn_server.domain import InvalidInput
from flovyn_server.models.worker import EagerOffer


@dataclass
class Offer:
    """Free slots a worker offers for work of these kinds on this queue."""

    worker_id: str
    queue: str
    kinds: frozenset[str]
    slots: int
    online: bool = False  # from `claims.worker_online`, read with the held work

    def fresh(self) -> Offer:
        """An unused copy: a transaction that runs again starts from the whole offer."""
        return replace(self, online=False)

    def wants(self, kind: str, queue: str) -> bool:
        return self.online and self.slots > 0 and kind in self.kinds and queue == self.queue


def offer(worker_id: str | None, raw: EagerOffer | None, *, max_slots: int = 100) -> Offer | None:
    """The offer a request carries, if any (an empty one is none)."""
    if raw is not None and raw.slots > max_slots:
        raise InvalidInput(f"an offer here has at most {max_slots} slot(s)", {"field": "slots"})
    if raw is None or not raw.kinds or raw.slots == 0:
        return None
    if worker_id is None:
        raise InvalidInput("an eager offer needs the workerId", {"field": "workerId"})
    return Offer(
        worker_id=worker_id,
        queue=raw.queue,
        kinds=frozenset(raw.kinds),
        slots=raw.slots,
    )
