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
from typing import Any

from flovyn_server.domain import bad_request
from flovyn_server.engine import validate


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


def offer(body: dict[str, Any], field: str, *, max_slots: int = 100) -> Offer | None:
    """The offer in `body[field]` (`{"queue", "kinds", "slots"}`), if any."""
    raw = body.get(field)
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise bad_request(f"{field} must be an object", {"field": field})
    kinds = validate.string_list(raw, "kinds", [])
    slots = validate.integer(raw, "slots", 1, lo=0, hi=max_slots)
    if not kinds or slots == 0:
        return None
    return Offer(
        worker_id=validate.string(body, "workerId"),
        queue=validate.queue(raw),
        kinds=frozenset(kinds),
        slots=slots,
    )
