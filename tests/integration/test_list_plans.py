"""Every shape of workflow-execution list, and the counts, reads an index that fits it.

A list that loses its index still answers right, only slower as a tenant grows: no
functional test notices. So this runs the engine's own list and counts on a seeded
store, records each statement they send, and asks the planner (EXPLAIN, or EXPLAIN
QUERY PLAN on SQLite): no full scan of workflow_executions, no sort of every match
(only of a part's LIMIT, or of rows sharing a created_at: no index holds the `id`
tie-break), a cursor's page bounded in the index, and the shape's expected index.

On a table this small PostgreSQL would rightly scan it, or sort a dozen rows, anyway:
so its session disables sequential and bitmap scans and explicit sorts. The planner
then avoids them whenever an index can serve, and one left in the plan means none can;
among the indexes it still picks by cost, so the expected index must be the one that fits.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from flovyn_server.engine.group_commit import GroupCommit
from flovyn_server.engine.tenants import Tenant
from flovyn_server.engine.workflows import Workflows
from flovyn_server.models.workflows import CountWorkflows, ListWorkflows
from flovyn_server.store.base import Store, Tx

TABLE = "workflow_executions"
ROWS = 1500  # per tenant: past COUNT_CAP, so counts take their estimate path too
START_MS = 1_700_000_000_000  # rows are a second apart from here
PARENT = str(uuid.UUID(int=1))
STATUSES = ["COMPLETED"] * 88 + ["FAILED"] * 4 + ["RUNNING"] * 3 + ["WAITING"] * 2
STATUSES += ["PENDING", "CANCELLED", "CANCELLED"]
KINDS = ["order", "import", "approval", "report", "sync"]
QUEUES = ["default", "bulk", "priority"]
WINDOW = {"createdAfter": "2023-11-14T22:20:00Z", "createdBefore": "2023-11-14T22:30:00Z"}

# name: (the request's query, the indexes its statements may read); "counts": its counts
SHAPES: dict[str, tuple[dict[str, Any], str]] = {
    "all": ({}, "wf_list"),
    "all, page 2": ({"cursor": ...}, "wf_list"),
    "status": ({"status": "FAILED"}, "wf_list_status"),
    "statuses": ({"status": "RUNNING,WAITING"}, "wf_list_status"),
    "statuses, page 2": ({"status": "RUNNING,WAITING", "cursor": ...}, "wf_list_status"),
    # Its count may read either index of the few rows being cancelled.
    "cancelling": ({"status": "CANCELLING"}, "wf_cancelling wf_cancelling_kind"),
    "kind": ({"kind": "order"}, "wf_list_kind"),
    "kind+status": ({"kind": "order", "status": "FAILED"}, "wf_list_kind_status"),
    "kind+statuses": (
        {"kind": "order", "status": "RUNNING,CANCELLING"},
        "wf_list_kind_status wf_cancelling_kind wf_cancelling",
    ),
    "queue": ({"queue": "bulk"}, "wf_list_queue"),
    "parentId": ({"parentId": PARENT}, "wf_parent"),
    "created window": (WINDOW, "wf_list"),
    # Counts have no order: wf_claim (PENDING only) serves PENDING's as well, and the
    # tenant's wf_list COMPLETED's (most rows: the first 1,001 are near the start).
    "counts": ({}, "wf_list_status wf_cancelling wf_cancelling_kind wf_claim wf_list"),
    "counts, kind": (
        {"kind": "order"},
        "wf_list_kind_status wf_cancelling_kind wf_cancelling wf_claim",
    ),
    # No index holds queue and status together: one of them serves the capped count.
    "counts, queue": (
        {"queue": "bulk"},
        "wf_list_status wf_list_queue wf_cancelling wf_cancelling_kind wf_claim",
    ),
}


async def seed(store: Store) -> None:
    """Two tenants alike (so `tenant_id` is selective), statuses as an old install has
    them, every third open execution being cancelled, a parent with 50 children."""
    rows: list[tuple[Any, ...]] = []
    for tenant in ("main", "other"):
        for i in range(ROWS):
            status = STATUSES[(i * 7 + i // 5) % len(STATUSES)]
            cancelling = int(status in ("RUNNING", "WAITING", "PENDING") and i % 3 == 0)
            row_id = PARENT if (tenant, i) == ("main", 0) else str(uuid.uuid4())
            parent = PARENT if tenant == "main" and i % 30 == 1 else None
            at = START_MS + i * 1000
            rows.append(
                (row_id, tenant, KINDS[i % 5], QUEUES[i % 3], status, cancelling, parent, at)
            )
    async with store.transaction() as tx:
        for tenant in ("main", "other"):
            await tx.execute(
                "INSERT INTO tenants (id, name, slug, tier, created_at) VALUES ($1, $1, $1, 'free', 0)",
                tenant,
            )
        await tx.executemany(
            f"INSERT INTO {TABLE} (id, tenant_id, kind, queue, status, cancel_requested, "
            "parent_id, input, available_at, created_at, updated_at) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7, 'null', $8, $8, $8)",
            rows,
        )
    async with store.transaction() as tx:  # statistics, as the server keeps them
        if store.backend == "sqlite":
            await tx.execute("PRAGMA analysis_limit=1000")
        await tx.execute("ANALYZE")


async def recorded(
    store: Store, monkeypatch: pytest.MonkeyPatch, shape: str, query: dict[str, Any]
) -> list[tuple[str, tuple[Any, ...]]]:
    """The statements (and args) the engine's list (or counts) sends for `query`."""
    workflows, tenant = Workflows(store, GroupCommit(store)), Tenant("main", "main")
    if query.get("cursor") is ...:  # the second page: after the first page's cursor
        first = await workflows.list(tenant, ListWorkflows.model_validate(query | {"cursor": None}))
        query = query | {"cursor": first["nextCursor"]}
        assert query["cursor"], "the seed should give more than one page"
    seen: list[tuple[str, tuple[Any, ...]]] = []
    read = store.read
    with monkeypatch.context() as patch:

        @asynccontextmanager
        async def recording_read() -> AsyncIterator[Tx]:
            async with read() as tx:
                fetch = tx.fetch

                async def recording_fetch(sql: str, *args: Any) -> list[dict[str, Any]]:
                    seen.append((sql, args))
                    return await fetch(sql, *args)

                patch.setattr(tx, "fetch", recording_fetch)
                yield tx

        patch.setattr(store, "read", recording_read)
        if shape.startswith("counts"):
            await workflows.counts(tenant, CountWorkflows.model_validate(query))
        else:
            await workflows.list(tenant, ListWorkflows.model_validate(query))
    return seen


Scan = tuple[str, str]  # (index name, its condition) of one read of the table


async def sqlite_plan(tx: Tx, sql: str, args: tuple[Any, ...]) -> tuple[list[Scan], list[str], str]:
    """(the table's index reads, problems, the plan as text) from EXPLAIN QUERY PLAN."""
    rows = await tx.fetch("EXPLAIN QUERY PLAN " + sql, *args)
    depth: dict[int, int] = {0: -1}
    text, scans, problems = [], [], []
    for row in rows:
        depth[row["id"]] = depth.get(row["parent"], 0) + 1
        text.append("  " * depth[row["id"]] + row["detail"])
        found = re.match(rf"SEARCH {TABLE} USING (?:COVERING )?INDEX (\w+) \((.*)\)", row["detail"])
        if found:
            scans.append((found[1], found[2]))
        elif re.match(rf"(SCAN|SEARCH) {TABLE}\b", row["detail"]):
            problems.append(f"not a search of one index's range: {row['detail']}")
    for row in rows:  # a sort beside the table's read sorts every row the read finds
        siblings = [r["detail"] for r in rows if r["parent"] == row["parent"]]
        if row["detail"] == "USE TEMP B-TREE FOR ORDER BY" and any(TABLE in s for s in siblings):
            problems.append("sorts every match (USE TEMP B-TREE FOR ORDER BY)")
    return scans, problems, "\n".join(text)


async def postgres_plan(
    tx: Tx, sql: str, args: tuple[Any, ...]
) -> tuple[list[Scan], list[str], str]:
    """(the table's index reads, problems, the plan as text) from EXPLAIN (FORMAT JSON)."""
    rows = await tx.fetch("EXPLAIN (FORMAT JSON) " + sql, *args)
    text: list[str] = []
    scans: list[Scan] = []
    problems: list[str] = []

    def reads_table(node: dict[str, Any]) -> bool:  # below it, with no LIMIT between
        if node["Node Type"] == "Limit":
            return False
        return node.get("Relation Name") == TABLE or any(map(reads_table, node.get("Plans", [])))

    def walk(node: dict[str, Any], depth: int) -> None:
        kind, index, cond = node["Node Type"], node.get("Index Name"), node.get("Index Cond", "")
        way = " Backward" if node.get("Scan Direction") == "Backward" else ""
        on = f" on {node['Relation Name']}" if "Relation Name" in node else ""
        text.append("  " * depth + kind + way + on + (f" using {index} {cond}" if index else ""))
        if index is not None:
            scans.append((index, cond))
        if kind == "Seq Scan" and node.get("Relation Name") == TABLE:
            problems.append(f"a Seq Scan on {TABLE}")
        if kind == "Sort" and any(map(reads_table, node.get("Plans", []))):
            problems.append("a Sort of every match, not of a part's LIMIT")
        for child in node.get("Plans", []):
            walk(child, depth + 1)

    walk(json.loads(rows[0]["QUERY PLAN"])[0]["Plan"], 0)
    return scans, problems, "\n".join(text)


@pytest.mark.parametrize("shape", list(SHAPES))
async def test_each_list_reads_its_index(
    store: Store, monkeypatch: pytest.MonkeyPatch, shape: str
) -> None:
    query, names = SHAPES[shape]
    indexes = set(names.split())
    await seed(store)
    statements = await recorded(store, monkeypatch, shape, query)
    assert statements, f"{shape}: no statement recorded"
    plan = sqlite_plan if store.backend == "sqlite" else postgres_plan
    async with store.transaction() as tx:
        for off in ("seqscan", "bitmapscan", "sort") if store.backend == "postgres" else ():
            await tx.execute(f"SET LOCAL enable_{off} = off")  # until this transaction ends
        for sql, args in statements:
            scans, problems, text = await plan(tx, sql, args)
            where = f"{shape} on {store.backend}:\n{sql}\nargs {args}\nplan:\n{text}"
            assert not problems, f"{problems}: {where}"
            assert scans, f"no index read: {where}"
            assert {name for name, _ in scans} <= indexes, f"expected {sorted(indexes)}: {where}"
            if "(created_at, id) <" in sql:  # a page after a cursor starts at it in the index
                assert all("created_at" in cond for _, cond in scans), f"cursor unbounded: {where}"
