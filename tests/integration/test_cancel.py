"""Cancellation: of a parent waiting on a task, a timer and a child at once; without
cascading to children; of a finished execution; of one no worker touched yet."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from typing import Any

import pytest

from flovyn_worker import TaskContext, WorkflowCancelled, WorkflowContext, task, workflow
from tests.integration.conftest import Flovyn
from tests.integration.helpers import (
    assert_gapless,
    attempts,
    children,
    event_types,
    execution,
    of_type,
    wait_first_child,
    wait_for,
    wait_status,
)

# What the tasks of this module did, per workflow execution id.
CALLS: Counter[tuple[str, str]] = Counter()
SAW_CANCEL: set[str] = set()
CLEANED: list[dict[str, Any]] = []


@pytest.fixture(autouse=True)
def _reset() -> None:
    CALLS.clear()
    SAW_CANCEL.clear()
    CLEANED.clear()


@task(name="cancel-long")
async def long_task(ctx: TaskContext) -> str:
    """Runs until told it is cancelled, heartbeating every 50 ms."""
    CALLS[("long", ctx.workflow_execution_id or "")] += 1
    for _ in range(600):
        await ctx.heartbeat()
        if ctx.is_cancelled:
            SAW_CANCEL.add(ctx.task_execution_id)
            raise RuntimeError("stopped: cancelled")
        await asyncio.sleep(0.05)
    return "finished"


@task(name="cancel-cleanup")
async def cleanup(ctx: TaskContext, info: dict[str, Any]) -> str:
    CALLS[("cleanup", ctx.workflow_execution_id or "")] += 1
    CLEANED.append(info)
    return "clean"


@workflow(name="cancel-child")
async def waiting_child(ctx: WorkflowContext) -> str:
    return str(await ctx.wait_for_signal("go"))


@workflow(name="cancel-parent")
async def cancel_parent(ctx: WorkflowContext) -> str:
    try:
        await asyncio.gather(
            ctx.schedule_async(long_task),
            ctx.sleep_async(60),
            ctx.schedule_workflow_async(waiting_child, name="kid"),
        )
    except asyncio.CancelledError:
        await ctx.schedule(cleanup, {"who": ctx.workflow_execution_id, "saw": "CancelledError"})
        raise
    return "not cancelled"


async def test_cancel_parent_waiting_on_task_timer_and_child(flovyn: Flovyn) -> None:
    async with (
        flovyn.worker([cancel_parent, waiting_child], [long_task, cleanup]),
        flovyn.client() as client,
    ):
        handle = await client.start_workflow(cancel_parent)

        async def everything_in_flight() -> dict[str, Any] | None:
            tasks = await flovyn.tasks(handle.id)
            kids = await children(flovyn, handle.id)
            if (
                len(tasks) == 1
                and tasks[0]["status"] == "RUNNING"
                and len(kids) == 1
                and kids[0]["status"] == "WAITING"
                and (await execution(flovyn, handle.id))["status"] == "WAITING"
            ):
                return {"task": tasks[0], "child": kids[0]}
            return None

        found = await wait_for(everything_in_flight, what="task, timer and child in flight")
        task_id = found["task"]["id"]
        child_id = found["child"]["childWorkflowExecutionId"]

        answer = await handle.cancel(reason="operator said stop")
        assert answer == {"status": "CANCELLING", "cancelledChildren": [child_id]}

        with pytest.raises(WorkflowCancelled):
            await handle.result(timeout=15)
        await wait_status(flovyn, child_id, "CANCELLED", within=10)

        async def task_stopped() -> dict[str, Any] | None:
            row = next(t for t in await flovyn.tasks(handle.id) if t["id"] == task_id)
            return row if row["status"] == "CANCELLED" else None

        await wait_for(task_stopped, within=10, what="the long task to be CANCELLED")

        # the workflow code saw CancelledError and ran its own cleanup task, once
        assert CLEANED == [{"who": handle.id, "saw": "CancelledError"}]
        assert task_id in SAW_CANCEL

        before = await _snapshot(flovyn, handle.id, child_id)
        await asyncio.sleep(1.5)
        after = await _snapshot(flovyn, handle.id, child_id)
        assert after == before, "something ran after the cancellation finished"
    assert CALLS == Counter({("long", handle.id): 1, ("cleanup", handle.id): 1})

    # the long task: its one attempt was stopped by the cancellation
    (stopped,) = await attempts(flovyn, handle.id, task_id)
    assert stopped["status"] == "CANCELLED"
    assert stopped["finishedAt"] is not None

    tasks = await flovyn.tasks(handle.id)
    assert [(t["kind"], t["status"]) for t in tasks] == [
        ("cancel-long", "CANCELLED"),
        ("cancel-cleanup", "COMPLETED"),
    ]

    events = await flovyn.events(handle.id)
    assert_gapless(events)
    types = event_types(events)
    requested = types.index("CANCELLATION_REQUESTED")
    assert types[-1] == "WORKFLOW_CANCELLED"
    assert types.count("WORKFLOW_CANCELLED") == 1
    assert events[requested]["data"]["reason"] == "operator said stop"
    assert events[-1]["data"]["reason"] == "operator said stop"
    # everything issued before the request, every cancellation after it
    assert types[:requested] == [
        "WORKFLOW_STARTED",
        "TASK_SCHEDULED",
        "TIMER_STARTED",
        "CHILD_WORKFLOW_INITIATED",
    ]
    timer_id = of_type(events, "TIMER_STARTED")[0]["data"]["timerId"]
    (timer_cancelled,) = of_type(events, "TIMER_CANCELLED")
    assert timer_cancelled["data"]["timerId"] == timer_id
    assert timer_cancelled["sequence"] > events[requested]["sequence"]
    assert "TIMER_FIRED" not in types
    (child_cancelled,) = of_type(events, "CHILD_WORKFLOW_CANCELLED")
    assert child_cancelled["data"]["childWorkflowExecutionId"] == child_id
    assert child_cancelled["sequence"] > events[requested]["sequence"]
    cleanup_scheduled = [
        e for e in of_type(events, "TASK_SCHEDULED") if e["data"]["kind"] == "cancel-cleanup"
    ]
    assert len(cleanup_scheduled) == 1
    assert requested < events.index(cleanup_scheduled[0])

    child_events = await flovyn.events(child_id)
    child_types = event_types(child_events)
    assert child_types[-1] == "WORKFLOW_CANCELLED"
    assert child_types.index("CANCELLATION_REQUESTED") < child_types.index("WORKFLOW_CANCELLED")
    assert (await execution(flovyn, child_id))["status"] == "CANCELLED"


async def _snapshot(f: Flovyn, workflow_id: str, child_id: str) -> Any:
    tasks = await f.tasks(workflow_id)
    tried = [await attempts(f, workflow_id, t["id"]) for t in tasks]
    return (
        await f.events(workflow_id),
        await f.events(child_id),
        tasks,
        tried,
        (await execution(f, workflow_id))["status"],
        (await execution(f, child_id))["status"],
        dict(CALLS),
    )


@workflow(name="cancel-parent-of-child")
async def parent_of_child(ctx: WorkflowContext) -> str:
    return str(await ctx.schedule_workflow(waiting_child, name="survivor"))


async def test_cancel_without_cascade_leaves_the_child_running(flovyn: Flovyn) -> None:
    async with flovyn.worker([parent_of_child, waiting_child]), flovyn.client() as client:
        handle = await client.start_workflow(parent_of_child)
        child_id = await wait_first_child(flovyn, handle.id, "WAITING")
        await wait_status(flovyn, handle.id, "WAITING")
        answer = await handle.cancel(cascade_to_children=False)
        assert answer == {"status": "CANCELLING", "cancelledChildren": []}
        with pytest.raises(WorkflowCancelled):
            await handle.result(timeout=10)

        child = client.get_handle(child_id)
        assert (await child.describe())["status"] == "WAITING"
        child_events = await flovyn.events(child_id)
        assert "CANCELLATION_REQUESTED" not in event_types(child_events)
        # the child goes on and completes later
        await child.signal("go", "finished anyway")
        assert await child.result(timeout=10) == "finished anyway"

    parent_events = await flovyn.events(handle.id)
    types = event_types(parent_events)
    assert types[-1] == "WORKFLOW_CANCELLED"
    assert "CHILD_WORKFLOW_CANCELLED" not in types
    assert "CHILD_WORKFLOW_COMPLETED" not in types  # the parent's history is closed
    assert (await execution(flovyn, handle.id))["status"] == "CANCELLED"


@workflow(name="cancel-quick")
async def quick(ctx: WorkflowContext) -> str:
    return "done"


async def test_cancel_of_a_finished_execution_is_already_terminal(flovyn: Flovyn) -> None:
    async with flovyn.worker([quick]), flovyn.client() as client:
        handle = await client.start_workflow(quick)
        assert await handle.result(timeout=10) == "done"
        events = await flovyn.events(handle.id)
        assert await handle.cancel() == {"status": "ALREADY_TERMINAL", "cancelledChildren": []}
    assert (await execution(flovyn, handle.id))["status"] == "COMPLETED"
    assert await flovyn.events(handle.id) == events


async def test_cancel_before_any_worker_ran_it_is_immediate(flovyn: Flovyn) -> None:
    async with flovyn.client() as client:
        handle = await client.start_workflow(quick)  # no worker: stays PENDING
        assert await handle.cancel(reason="never mind") == {
            "status": "CANCELLED",
            "cancelledChildren": [],
        }
        with pytest.raises(WorkflowCancelled):
            await handle.result(timeout=5)
        assert await handle.cancel() == {"status": "ALREADY_TERMINAL", "cancelledChildren": []}
    events = await flovyn.events(handle.id)
    assert event_types(events) == [
        "WORKFLOW_STARTED",
        "CANCELLATION_REQUESTED",
        "WORKFLOW_CANCELLED",
    ]
    # a worker arriving later finds nothing to do
    async with flovyn.worker([quick]):
        await asyncio.sleep(0.5)
    assert await flovyn.events(handle.id) == events


@workflow(name="cancel-napper")
async def napper(ctx: WorkflowContext) -> str:
    try:
        await ctx.sleep(30)
    except asyncio.CancelledError:
        await ctx.schedule(cleanup, {"who": ctx.workflow_execution_id, "saw": "nap cut short"})
        raise
    return "rested"


async def test_cancel_while_an_activation_is_in_flight(flovyn: Flovyn) -> None:
    """The request lands while a worker holds the execution: its SUSPENDED submit must
    leave it PENDING so that the next activation sees the cancellation."""
    token = flovyn.worker_token
    async with flovyn.client() as client:
        handle = await client.start_workflow(napper)
        holder = await flovyn.ok(
            "POST",
            "P/worker/register",
            {"name": "holder", "workflows": [{"kind": "cancel-napper"}]},
            key=token,
        )
        polled = await flovyn.ok(
            "POST",
            "P/worker/workflows/poll",
            {"workerId": holder["workerId"], "kinds": ["cancel-napper"], "timeoutMs": 2000},
            key=token,
        )
        (activation,) = polled["activations"]
        assert (await execution(flovyn, handle.id))["status"] == "RUNNING"

        answer = await handle.cancel(reason="mid-activation")
        assert answer == {"status": "CANCELLING", "cancelledChildren": []}

        # the holder finishes the activation it started before the cancel: the timer the
        # SDK would have started (same deterministic id)
        timer_id = str(uuid.uuid5(uuid.UUID(handle.id), "timer-1"))
        submitted = await flovyn.ok(
            "POST",
            f"P/worker/workflows/{handle.id}/submit",
            {
                "workerId": holder["workerId"],
                "activationId": activation["activationId"],
                "status": "SUSPENDED",
                "commands": [{"type": "START_TIMER", "timerId": timer_id, "durationMs": 30000}],
            },
            key=token,
        )
        assert submitted["status"] == "PENDING"
        await flovyn.ok("POST", "P/worker/unregister", {"workerId": holder["workerId"]}, key=token)

        async with flovyn.worker([napper], [cleanup]):
            with pytest.raises(WorkflowCancelled):
                await handle.result(timeout=15)
    assert CLEANED == [{"who": handle.id, "saw": "nap cut short"}]
    events = await flovyn.events(handle.id)
    assert_gapless(events)
    types = event_types(events)
    assert types[:3] == ["WORKFLOW_STARTED", "CANCELLATION_REQUESTED", "TIMER_STARTED"]
    assert types[-1] == "WORKFLOW_CANCELLED"
    assert "TIMER_FIRED" not in types
    (timer_cancelled,) = of_type(events, "TIMER_CANCELLED")
    assert timer_cancelled["data"]["timerId"] == timer_id
