"""Child workflows: results and failures reach the parent, nesting, the children list."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flovyn_worker import ChildWorkflowFailed, WorkflowContext, workflow
from tests.integration.conftest import Flovyn
from tests.integration.helpers import (
    assert_gapless,
    children,
    event_types,
    execution,
    of_type,
    wait_first_child,
)


@workflow(name="children-square")
async def square(ctx: WorkflowContext, n: int) -> int:
    return n * n


@workflow(name="children-explode")
async def explode(ctx: WorkflowContext, message: str) -> None:
    raise ValueError(message)


@workflow(name="children-parent")
async def parent(ctx: WorkflowContext, n: int) -> dict[str, Any]:
    value = await ctx.schedule_workflow(square, n, name="square-it")
    return {"square": value}


@workflow(name="children-catcher")
async def catcher(ctx: WorkflowContext, message: str) -> dict[str, Any]:
    try:
        await ctx.schedule_workflow(explode, message, name="doomed")
    except ChildWorkflowFailed as exc:
        return {
            "caught": exc.error,
            "child": exc.child_workflow_execution_id,
            "name": exc.name,
            "cancelled": exc.cancelled,
        }
    return {"caught": None}


@workflow(name="children-nested")
async def nested(ctx: WorkflowContext, depth: int) -> list[int]:
    if depth == 0:
        return [0]
    below = await ctx.schedule_workflow(nested, depth - 1, name=f"level-{depth - 1}")
    return [depth, *below]


@workflow(name="children-fanout")
async def fanout(ctx: WorkflowContext) -> dict[str, Any]:
    first = await ctx.schedule_workflow(square, 3, name="first")
    try:
        await ctx.schedule_workflow(explode, "second fails", name="second")
    except ChildWorkflowFailed:
        pass
    return {"first": first}


async def test_child_result_returns_to_the_parent(flovyn: Flovyn) -> None:
    async with flovyn.worker([parent, square]), flovyn.client() as client:
        handle = await client.start_workflow(parent, 7)
        assert await handle.result(timeout=15) == {"square": 49}
    events = await flovyn.events(handle.id)
    assert event_types(events) == [
        "WORKFLOW_STARTED",
        "CHILD_WORKFLOW_INITIATED",
        "CHILD_WORKFLOW_COMPLETED",
        "WORKFLOW_COMPLETED",
    ]
    assert_gapless(events)
    initiated, completed = events[1]["data"], events[2]["data"]
    child_id = initiated["childWorkflowExecutionId"]
    assert initiated["childExecutionName"] == "square-it"
    assert initiated["childWorkflowKind"] == "children-square"
    assert completed["childWorkflowExecutionId"] == child_id
    assert completed["output"] == 49
    child = await execution(flovyn, child_id)
    assert child["parentWorkflowExecutionId"] == handle.id
    assert child["status"] == "COMPLETED"
    assert child["input"] == 7 and child["output"] == 49


async def test_failing_child_is_caught_as_child_workflow_failed(flovyn: Flovyn) -> None:
    async with flovyn.worker([catcher, explode]), flovyn.client() as client:
        handle = await client.start_workflow(catcher, "kaboom")
        result = await handle.result(timeout=15)
    assert "ValueError: kaboom" in result["caught"]
    assert result["name"] == "doomed"
    assert result["cancelled"] is False
    child = await execution(flovyn, result["child"])
    assert child["status"] == "FAILED"
    assert "kaboom" in child["error"]
    assert child["parentWorkflowExecutionId"] == handle.id
    events = await flovyn.events(handle.id)
    (failed,) = of_type(events, "CHILD_WORKFLOW_FAILED")
    assert failed["data"]["childWorkflowExecutionId"] == result["child"]
    assert "kaboom" in failed["data"]["error"]


async def test_three_nested_levels_complete(flovyn: Flovyn) -> None:
    async with flovyn.worker([nested]), flovyn.client() as client:
        handle = await client.start_workflow(nested, 3)
        assert await handle.result(timeout=20) == [3, 2, 1, 0]
    chain = [handle.id]
    for depth in (2, 1, 0):
        (child,) = await children(flovyn, chain[-1])
        assert child["childExecutionName"] == f"level-{depth}"
        assert child["status"] == "COMPLETED"
        row = await execution(flovyn, child["childWorkflowExecutionId"])
        assert row["parentWorkflowExecutionId"] == chain[-1]
        assert row["input"] == depth
        chain.append(child["childWorkflowExecutionId"])
    leaf = await flovyn.ok("GET", f"P/workflow-executions/{chain[-1]}/children")
    assert leaf == {"children": []}
    assert len(set(chain)) == 4


async def test_children_endpoint_lists_them(flovyn: Flovyn) -> None:
    async with flovyn.worker([fanout, square, explode]), flovyn.client() as client:
        handle = await client.start_workflow(fanout)
        assert await handle.result(timeout=15) == {"first": 9}
    listed = await flovyn.ok("GET", f"P/workflow-executions/{handle.id}/children")
    kids = listed["children"]
    assert [set(c) for c in kids] == [
        {
            "childWorkflowExecutionId",
            "childExecutionName",
            "kind",
            "status",
            "createdAt",
            "completedAt",
        }
    ] * 2
    assert [(c["childExecutionName"], c["kind"], c["status"]) for c in kids] == [
        ("first", "children-square", "COMPLETED"),
        ("second", "children-explode", "FAILED"),
    ]
    initiated = of_type(await flovyn.events(handle.id), "CHILD_WORKFLOW_INITIATED")
    assert [c["childWorkflowExecutionId"] for c in kids] == [
        e["data"]["childWorkflowExecutionId"] for e in initiated
    ]
    for child in kids:
        created = _time(child["createdAt"])
        completed = _time(child["completedAt"])
        assert created <= completed
    # also through the list filter
    by_parent = await flovyn.ok("GET", "P/workflow-executions", params={"parentId": handle.id})
    assert by_parent["total"] == 2
    # unknown parent: 404; the children of a childless execution: empty
    status, _ = await flovyn.call(
        "GET", "P/workflow-executions/00000000-0000-4000-8000-000000000000/children"
    )
    assert status == 404


def _time(text: str) -> datetime:
    assert text.endswith("Z") or text.endswith("+00:00"), text
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@workflow(name="children-sleepy")
async def sleepy(ctx: WorkflowContext) -> str:
    await ctx.sleep(30)
    return "rested"


@workflow(name="children-watcher")
async def watcher(ctx: WorkflowContext) -> dict[str, Any]:
    try:
        await ctx.schedule_workflow(sleepy, name="sleepy")
    except ChildWorkflowFailed as exc:
        return {"cancelled": exc.cancelled, "child": exc.child_workflow_execution_id}
    return {"cancelled": False}


async def test_cancelling_a_child_alone_is_seen_by_the_parent(flovyn: Flovyn) -> None:
    async with flovyn.worker([watcher, sleepy]), flovyn.client() as client:
        handle = await client.start_workflow(watcher)
        child_id = await wait_first_child(flovyn, handle.id, "WAITING")
        assert await client.get_handle(child_id).cancel() == {
            "status": "CANCELLING",
            "cancelledChildren": [],
        }
        assert await handle.result(timeout=15) == {"cancelled": True, "child": child_id}
    assert (await execution(flovyn, child_id))["status"] == "CANCELLED"
    events = await flovyn.events(handle.id)
    assert "CHILD_WORKFLOW_CANCELLED" in event_types(events)
