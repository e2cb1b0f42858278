"""Claims: work taken for a worker, only while that worker is ONLINE.

A long poll can outlive its worker (a crashed process does not close the request at
once), and work claimed for a worker already marked OFFLINE would never be released.
So every claim, polled or handed over eagerly (see `eager.py`), checks the worker is
ONLINE and locks its row FOR KEY SHARE until the commit. The liveness reaper and
unregister lock the row FOR UPDATE before they mark it OFFLINE, so they cannot do so
before the claim commits (the reaper skips locked rows and catches the worker, with
what it just claimed, on its next pass). It is the weakest lock that does this: claims
do not queue behind each other nor behind the heartbeat's UPDATE of the same row.
"""

from __future__ import annotations

from typing import Any

from flovyn_server.store.base import Row, Tx


def worker_online(worker: str, tenant: str) -> str:
    """A scalar subquery, 1 if the worker (`worker`, `tenant`: placeholders) is ONLINE,
    that locks its row as a claim must."""
    return (
        f"(SELECT 1 FROM workers WHERE id = {worker} AND tenant_id = {tenant} "
        "AND status = 'ONLINE' FOR KEY SHARE)"
    )


async def claim(
    tx: Tx,
    table: str,
    *,
    assign: str,
    due: str,
    order: str,
    returning: str,
    worker_id: str,
    tenant_id: str,
    queue: str,
    kinds: list[str],
    limit: int,
    now: int,
) -> list[Row]:
    """Make up to `limit` PENDING rows of `table` on `queue` RUNNING for the worker.

    `assign` adds to the SET list and `due` to the pick's WHERE; in both, `$1` is the
    worker, `$2` now. The picked ids are joined (`UPDATE ... FROM (...) AS picked`):
    with `id IN (...)` the planner may hash-join against a scan of the whole table on
    every claim. A claim is not a change the tenant feed reports: it is the hottest
    transaction there is, a feed row in it cost a few percent of throughput, and the
    RUNNING it makes lasts one activation (the submit that ends it is reported).
    """
    marks = ", ".join(f"${i + 6}" for i in range(len(kinds)))
    args: list[Any] = [worker_id, now, tenant_id, queue, limit, *kinds]
    return await tx.fetch(
        f"UPDATE {table} SET status = 'RUNNING', worker_id = $1, updated_at = $2, {assign} "
        f"FROM (SELECT id AS picked_id FROM {table} WHERE tenant_id = $3 AND queue = $4 "
        f"AND status = 'PENDING' AND kind IN ({marks}){due} ORDER BY {order} LIMIT $5 "
        "FOR UPDATE SKIP LOCKED) AS picked "
        f"WHERE EXISTS {worker_online('$1', '$3')} AND id = picked_id RETURNING {returning}",
        *args,
    )
