"""Lists on both stores: cursor paging that holds while rows arrive, filters with the
cursor, bad cursors, totals, and the SDK's iterator over the cursor."""

from __future__ import annotations

from typing import Any

from flovyn_worker import TaskContext, WorkflowContext, task, workflow
from tests.integration.conftest import Flovyn
from tests.integration.helpers import assert_error, trigger


async def walk(f: Flovyn, params: dict[str, Any], *, during: Any = None) -> list[dict[str, Any]]:
    """Every page of the workflow list, following nextCursor; `during()` runs between pages."""
    seen: list[dict[str, Any]] = []
    cursor = None
    while True:
        query = dict(params) | ({"cursor": cursor} if cursor else {})
        answer = await f.ok("GET", "P/workflow-executions", params=query)
        assert answer["totalIsEstimate"] is False
        seen += answer["workflows"]
        cursor = answer["nextCursor"]
        if cursor is None:
            return seen
        if during is not None:
            await during()


async def test_cursor_walk_sees_each_row_once_while_rows_arrive(flovyn: Flovyn) -> None:
    f = flovyn
    before = [await trigger(f, f"list-{i % 3}") for i in range(23)]
    arrived: list[str] = []

    async def more() -> None:  # new executions land on the first page, not on later ones
        arrived.append(await trigger(f, "list-0"))

    seen = await walk(f, {"limit": "5"}, during=more)
    ids = [w["id"] for w in seen]
    assert len(ids) == len(set(ids))  # no repeat
    assert set(before) <= set(ids)  # no gap among the rows there at the start
    assert not set(arrived) & set(ids)  # newer than the first page: not in the walk
    created = [(w["createdAt"], w["id"]) for w in seen]
    assert created == sorted(created, reverse=True)  # newest first, ties by id
    # Filters hold across pages.
    kind = await walk(f, {"limit": "2", "kind": "list-1"})
    assert {w["kind"] for w in kind} == {"list-1"}
    assert {w["id"] for w in kind} == {b for i, b in enumerate(before) if i % 3 == 1}
    status = await walk(f, {"limit": "4", "status": "PENDING", "kind": "list-2"})
    assert {w["id"] for w in status} == {b for i, b in enumerate(before) if i % 3 == 2}
    # Several statuses: each read in its own order, merged; their counts add up.
    await f.ok("POST", f"P/workflow-executions/{before[2]}/cancel", {})
    both = await walk(f, {"limit": "3", "status": "PENDING,CANCELLED", "kind": "list-2"})
    assert [w["id"] for w in both] == [w["id"] for w in status]  # the same rows, in order
    assert {w["status"] for w in both} == {"PENDING", "CANCELLED"}
    answer = await f.ok(
        "GET", "P/workflow-executions", params={"status": "CANCELLED,PENDING", "kind": "list-2"}
    )
    assert answer["total"] == len(both)
    # total counts the rows the filter matches.
    answer = await f.ok("GET", "P/workflow-executions", params={"kind": "list-1", "limit": "1"})
    assert answer["total"] == len(kind) and answer["nextCursor"] is not None


async def test_bad_cursors(flovyn: Flovyn) -> None:
    f = flovyn
    for _ in range(3):
        await trigger(f, "list-bad")
    first = await f.ok("GET", "P/workflow-executions", params={"limit": "1"})
    cursor = first["nextCursor"]
    for bad in ("nonsense", "AAAA", cursor[:-3], "x" * 401, "a+b/c=="):
        status, body = await f.call("GET", "P/workflow-executions", params={"cursor": bad})
        assert_error(status, body, 400)
        assert "cursor" in body["error"]
    status, body = await f.call(
        "GET", "P/workflow-executions", params={"cursor": cursor, "offset": "5"}
    )
    assert_error(status, body, 400)
    # A cursor of another list (workers) is refused by this one.
    workers = await f.ok("GET", "P/workers", params={"limit": "1"})
    assert workers["nextCursor"] is None  # no worker registered: one page
    status, body = await f.call(
        "GET", "P/workers", params={"cursor": cursor}
    )  # a workflow cursor on the workers list
    assert_error(status, body, 400)


async def test_client_iterates_over_the_cursor(flovyn: Flovyn) -> None:
    f = flovyn
    made = {await trigger(f, "list-sdk") for _ in range(12)}
    async with f.client() as client:
        got = [w async for w in client.list_workflows(kind="list-sdk", page_size=5)]
        assert {w["id"] for w in got} == made and len(got) == 12
        pending = [w async for w in client.list_workflows(status=["PENDING"], kind="list-sdk")]
        assert len(pending) == 12


@task(name="list-chatty")
async def chatty(ctx: TaskContext, n: int) -> int:
    for i in range(n):
        ctx.logger.info("line %03d", i)
    return n


@workflow(name="list-chatty-flow")
async def chatty_flow(ctx: WorkflowContext, n: int) -> int:
    return await ctx.schedule(chatty, n)


async def test_log_pages_follow_the_cursor(flovyn: Flovyn) -> None:
    f = flovyn
    async with f.worker([chatty_flow], [chatty]), f.client() as client:
        handle = await client.start_workflow(chatty_flow, 30)
        assert await handle.result(timeout=20) == 30
    task_id = (await f.tasks(handle.id))[0]["id"]
    path = f"P/workflow-executions/{handle.id}/tasks/{task_id}/logs"
    lines: list[str] = []
    cursor = None
    while True:
        params = {"limit": "7"} | ({"cursor": cursor} if cursor else {})
        answer = await f.ok("GET", path, params=params)
        assert answer["total"] == 30 and answer["totalIsEstimate"] is False
        lines += [line["message"] for line in answer["logs"]]
        cursor = answer["nextCursor"]
        if cursor is None:
            break
    assert lines == [f"line {i:03d}" for i in range(30)]
    status, body = await f.call("GET", path, params={"cursor": "bm9wZQ"})
    assert_error(status, body, 400)


async def test_counts_per_status(flovyn: Flovyn) -> None:
    f = flovyn
    pending = [await trigger(f, "count-a") for _ in range(3)] + [await trigger(f, "count-b")]
    await f.ok("POST", f"P/workflow-executions/{pending[0]}/cancel", {})  # never started
    answer = await f.ok("GET", "P/workflow-executions/counts")
    assert answer["counts"]["PENDING"] == 3 and answer["counts"]["CANCELLED"] == 1
    assert answer["total"] == 4 and answer["estimated"] == []
    assert set(answer["counts"]) == {
        "PENDING", "RUNNING", "WAITING", "CANCELLING", "COMPLETED", "FAILED", "CANCELLED",
    }  # fmt: skip
    narrowed = await f.ok("GET", "P/workflow-executions/counts", params={"kind": "count-b"})
    assert narrowed["counts"]["PENDING"] == 1 and narrowed["total"] == 1
    # The counts are what the list's filters find.
    for status, n in answer["counts"].items():
        listed = await f.ok("GET", "P/workflow-executions", params={"status": status})
        assert listed["total"] == n, status
    status, body = await f.call("GET", "P/workflow-executions/counts", params={"kind": "k" * 300})
    assert_error(status, body, 400)
