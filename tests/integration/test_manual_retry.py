"""Manual retry of a FAILED execution: completed steps are not re-run, the failed task
runs again as a new task, retries can be repeated, and only FAILED can be retried."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest

from flovyn_worker import RetryPolicy, TaskContext, WorkflowContext, task, workflow
from tests.integration.conftest import Flovyn
from tests.integration.helpers import (
    assert_gapless,
    attempts,
    children,
    event_types,
    execution,
    of_type,
    wait_for,
    wait_status,
)

BROKEN = {"flaky": True}
CALLS: Counter[str] = Counter()  # kind -> invocations
ATTEMPTS_BY_TASK: Counter[str] = Counter()  # task execution id -> invocations


@pytest.fixture(autouse=True)
def _reset() -> None:
    BROKEN["flaky"] = True
    CALLS.clear()
    ATTEMPTS_BY_TASK.clear()


@task(name="retry-first")
async def first_step(ctx: TaskContext, n: int) -> int:
    CALLS["first"] += 1
    ATTEMPTS_BY_TASK[ctx.task_execution_id] += 1
    return n + 1


@task(
    name="retry-flaky",
    retry_policy=RetryPolicy(max_attempts=2, initial_interval=0.05, max_interval=0.1),
)
async def flaky_step(ctx: TaskContext, n: int) -> int:
    CALLS["flaky"] += 1
    ATTEMPTS_BY_TASK[ctx.task_execution_id] += 1
    if BROKEN["flaky"]:
        raise RuntimeError("downstream is down")
    return n * 10


@workflow(name="retry-two-steps")
async def two_steps(ctx: WorkflowContext, n: int) -> int:
    one = await ctx.schedule(first_step, n)
    return int(await ctx.schedule(flaky_step, one))


async def _retry(f: Flovyn, workflow_id: str, note: str) -> dict[str, Any]:
    answer: dict[str, Any] = await f.ok(
        "POST", f"P/workflow-executions/{workflow_id}/retry", {"note": note}
    )
    return answer


async def test_retry_after_the_cause_is_fixed(flovyn: Flovyn) -> None:
    async with flovyn.worker([two_steps], [first_step, flaky_step]), flovyn.client() as client:
        handle = await client.start_workflow(two_steps, 4)
        failed = await wait_status(flovyn, handle.id, "FAILED", within=15)
        assert "downstream is down" in failed["error"]
        assert failed["retryAttempts"] == 0
        tasks = await flovyn.tasks(handle.id)
        assert [(t["kind"], t["status"]) for t in tasks] == [
            ("retry-first", "COMPLETED"),
            ("retry-flaky", "FAILED"),
        ]
        old_flaky_id = tasks[1]["id"]
        assert CALLS == Counter({"first": 1, "flaky": 2})

        BROKEN["flaky"] = False
        answer = await _retry(flovyn, handle.id, "fixed the downstream")
        assert answer["workflowExecutionId"] == handle.id
        assert answer["status"] == "PENDING"
        assert answer["retryAttempt"] == 1
        assert answer["success"] is True
        assert isinstance(answer["message"], str) and answer["message"]
        assert await handle.result(timeout=15) == 50

    assert CALLS == Counter({"first": 1, "flaky": 3})  # the completed step did not run again
    row = await execution(flovyn, handle.id)
    assert row["status"] == "COMPLETED"
    assert row["retryAttempts"] == 1
    assert row["error"] is None
    assert row["output"] == 50

    tasks = await flovyn.tasks(handle.id)
    assert [(t["kind"], t["status"]) for t in tasks] == [
        ("retry-first", "COMPLETED"),
        ("retry-flaky", "FAILED"),
        ("retry-flaky", "COMPLETED"),
    ]
    new_flaky_id = tasks[2]["id"]
    assert new_flaky_id != old_flaky_id
    assert tasks[2]["input"] == 5 and tasks[2]["output"] == 50
    old_attempts = await attempts(flovyn, handle.id, old_flaky_id)
    assert [a["status"] for a in old_attempts] == ["FAILED", "FAILED"]
    assert all("downstream is down" in a["error"] for a in old_attempts)
    new_attempts = await attempts(flovyn, handle.id, new_flaky_id)
    assert [a["status"] for a in new_attempts] == ["COMPLETED"]
    assert new_attempts[0]["output"] == 50
    assert ATTEMPTS_BY_TASK[tasks[0]["id"]] == 1

    events = await flovyn.events(handle.id)
    assert_gapless(events)
    types = event_types(events)
    assert types == [
        "WORKFLOW_STARTED",
        "TASK_SCHEDULED",
        "TASK_COMPLETED",
        "TASK_SCHEDULED",
        "TASK_FAILED",
        "WORKFLOW_EXECUTION_FAILED",
        "RETRY_REQUESTED",
        "TASK_SCHEDULED",
        "TASK_COMPLETED",
        "WORKFLOW_COMPLETED",
    ]
    (retry_event,) = of_type(events, "RETRY_REQUESTED")
    assert retry_event["data"]["note"] == "fixed the downstream"
    assert retry_event["data"]["retryAttempt"] == 1
    assert events[7]["data"]["taskExecutionId"] == new_flaky_id


async def test_retry_twice(flovyn: Flovyn) -> None:
    async with flovyn.worker([two_steps], [first_step, flaky_step]), flovyn.client() as client:
        handle = await client.start_workflow(two_steps, 1)
        await wait_status(flovyn, handle.id, "FAILED", within=15)

        # first retry while still broken: fails again, at the same step
        first = await _retry(flovyn, handle.id, "try again")
        assert first["retryAttempt"] == 1
        failed = await wait_status(flovyn, handle.id, "FAILED", within=15)
        assert failed["retryAttempts"] == 1
        assert "downstream is down" in failed["error"]

        BROKEN["flaky"] = False
        second = await _retry(flovyn, handle.id, "really fixed now")
        assert second == {
            "workflowExecutionId": handle.id,
            "status": "PENDING",
            "retryAttempt": 2,
            "message": second["message"],
            "success": True,
        }
        assert await handle.result(timeout=15) == 20

    assert CALLS == Counter({"first": 1, "flaky": 2 + 2 + 1})
    row = await execution(flovyn, handle.id)
    assert row["retryAttempts"] == 2
    tasks = await flovyn.tasks(handle.id)
    assert [(t["kind"], t["status"]) for t in tasks] == [
        ("retry-first", "COMPLETED"),
        ("retry-flaky", "FAILED"),
        ("retry-flaky", "FAILED"),
        ("retry-flaky", "COMPLETED"),
    ]
    assert len({t["id"] for t in tasks}) == 4
    events = await flovyn.events(handle.id)
    assert_gapless(events)
    assert [e["data"]["retryAttempt"] for e in of_type(events, "RETRY_REQUESTED")] == [1, 2]
    assert [e["data"]["note"] for e in of_type(events, "RETRY_REQUESTED")] == [
        "try again",
        "really fixed now",
    ]
    assert event_types(events)[-1] == "WORKFLOW_COMPLETED"


@workflow(name="retry-waits")
async def waits(ctx: WorkflowContext) -> Any:
    return await ctx.wait_for_signal("go")


async def test_retry_of_a_non_failed_execution_is_409(flovyn: Flovyn) -> None:
    async with flovyn.client() as client:
        # PENDING: nobody picked it up
        pending = await client.start_workflow(waits)
        await _assert_conflict(flovyn, pending.id)

        # RUNNING: claimed through the worker protocol and held
        worker = await flovyn.ok(
            "POST",
            "P/worker/register",
            {"name": "holder", "queues": ["default"], "workflows": [{"kind": "retry-waits"}]},
            key=flovyn.worker_token,
        )
        polled = await flovyn.ok(
            "POST",
            "P/worker/workflows/poll",
            {
                "workerId": worker["workerId"],
                "queue": "default",
                "kinds": ["retry-waits"],
                "maxItems": 1,
                "timeoutMs": 2000,
            },
            key=flovyn.worker_token,
        )
        assert [a["workflowExecutionId"] for a in polled["activations"]] == [pending.id]
        assert (await execution(flovyn, pending.id))["status"] == "RUNNING"
        await _assert_conflict(flovyn, pending.id)
        await flovyn.ok(
            "POST", "P/worker/unregister", {"workerId": worker["workerId"]}, key=flovyn.worker_token
        )

        async with flovyn.worker([waits]):
            # WAITING
            await wait_status(flovyn, pending.id, "WAITING")
            await _assert_conflict(flovyn, pending.id)
            # COMPLETED
            await pending.signal("go", "ok")
            assert await pending.result(timeout=10) == "ok"
            await _assert_conflict(flovyn, pending.id)
    events = await flovyn.events(pending.id)
    assert "RETRY_REQUESTED" not in event_types(events)
    assert (await execution(flovyn, pending.id))["retryAttempts"] == 0


async def _assert_conflict(f: Flovyn, workflow_id: str) -> None:
    status, answer = await f.call(
        "POST", f"P/workflow-executions/{workflow_id}/retry", {"note": "nope"}
    )
    assert status == 409, (status, answer)
    assert answer["code"]


@workflow(name="retry-child")
async def fragile_child(ctx: WorkflowContext, n: int) -> int:
    if BROKEN["flaky"]:
        raise RuntimeError("child cannot cope")
    return n * 100


@workflow(name="retry-parent")
async def parent_of_fragile(ctx: WorkflowContext, n: int) -> int:
    one = await ctx.schedule(first_step, n)
    return int(await ctx.schedule_workflow(fragile_child, one, name="fragile"))


async def test_retry_schedules_a_failed_child_again(flovyn: Flovyn) -> None:
    async with (
        flovyn.worker([parent_of_fragile, fragile_child], [first_step]),
        flovyn.client() as client,
    ):
        handle = await client.start_workflow(parent_of_fragile, 1)
        failed = await wait_status(flovyn, handle.id, "FAILED", within=15)
        assert "child cannot cope" in failed["error"]
        (old_child,) = await children(flovyn, handle.id)
        assert old_child["status"] == "FAILED"

        BROKEN["flaky"] = False
        answer = await _retry(flovyn, handle.id, "child fixed")
        assert answer["retryAttempt"] == 1
        assert await handle.result(timeout=15) == 200

    assert CALLS["first"] == 1
    kids = await children(flovyn, handle.id)
    assert [(c["childExecutionName"], c["status"]) for c in kids] == [
        ("fragile", "FAILED"),
        ("fragile", "COMPLETED"),
    ]
    assert kids[0]["childWorkflowExecutionId"] == old_child["childWorkflowExecutionId"]
    assert kids[1]["childWorkflowExecutionId"] != old_child["childWorkflowExecutionId"]
    # the old child stays as it was: FAILED, not retried itself
    old = await execution(flovyn, old_child["childWorkflowExecutionId"])
    assert old["status"] == "FAILED" and old["retryAttempts"] == 0
    events = await flovyn.events(handle.id)
    assert_gapless(events)
    assert event_types(events) == [
        "WORKFLOW_STARTED",
        "TASK_SCHEDULED",
        "TASK_COMPLETED",
        "CHILD_WORKFLOW_INITIATED",
        "CHILD_WORKFLOW_FAILED",
        "WORKFLOW_EXECUTION_FAILED",
        "RETRY_REQUESTED",
        "CHILD_WORKFLOW_INITIATED",
        "CHILD_WORKFLOW_COMPLETED",
        "WORKFLOW_COMPLETED",
    ]


@workflow(name="retry-operation")
async def fragile_operation(ctx: WorkflowContext, n: int) -> dict[str, Any]:
    one = await ctx.schedule(first_step, n)

    def check() -> str:
        CALLS["operation"] += 1
        if BROKEN["flaky"]:
            raise RuntimeError("operation refused")
        return "checked"

    verdict = await ctx.run("check", check)
    return {"one": one, "verdict": verdict}


async def test_retry_runs_a_failed_operation_again(flovyn: Flovyn) -> None:
    async with flovyn.worker([fragile_operation], [first_step]), flovyn.client() as client:
        handle = await client.start_workflow(fragile_operation, 1)
        failed = await wait_status(flovyn, handle.id, "FAILED", within=15)
        assert "operation refused" in failed["error"]
        BROKEN["flaky"] = False
        await _retry(flovyn, handle.id, "operation fixed")
        assert await handle.result(timeout=15) == {"one": 2, "verdict": "checked"}
    assert CALLS["first"] == 1
    assert CALLS["operation"] == 2
    events = await flovyn.events(handle.id)
    assert event_types(events)[-3:] == [
        "RETRY_REQUESTED",
        "OPERATION_COMPLETED",
        "WORKFLOW_COMPLETED",
    ]


@task(name="retry-flaky-slow", retry_policy=RetryPolicy(max_attempts=1))
async def flaky_slow(ctx: TaskContext, spec: dict[str, Any]) -> str:
    CALLS[spec["name"]] += 1
    await asyncio.sleep(spec["delay"])
    if BROKEN["flaky"]:
        raise RuntimeError(f"{spec['name']} is down")
    return str(spec["name"])


@workflow(name="retry-gather")
async def gather_two(ctx: WorkflowContext, second_delay: float) -> list[str]:
    return list(
        await asyncio.gather(
            ctx.schedule_async(flaky_slow, {"name": "a", "delay": 0.0}),
            ctx.schedule_async(flaky_slow, {"name": "b", "delay": second_delay}),
        )
    )


@pytest.mark.parametrize("second_delay", [0.0, 0.5], ids=["together", "second-late"])
async def test_retry_of_a_gather_whose_tasks_both_failed(
    flovyn: Flovyn, second_delay: float
) -> None:
    """Both awaited tasks failed; one retry after the fix must re-run both. With
    `second-late` the second failure lands after WORKFLOW_EXECUTION_FAILED."""
    async with flovyn.worker([gather_two], [flaky_slow]), flovyn.client() as client:
        handle = await client.start_workflow(gather_two, second_delay)
        await wait_status(flovyn, handle.id, "FAILED", within=15)

        async def both_failed() -> bool:
            return [t["status"] for t in await flovyn.tasks(handle.id)] == ["FAILED", "FAILED"]

        await wait_for(both_failed, what="both tasks to fail")
        BROKEN["flaky"] = False
        answer = await _retry(flovyn, handle.id, "both fixed")
        assert answer["retryAttempt"] == 1
        assert await handle.result(timeout=15) == ["a", "b"]
    assert CALLS == Counter({"a": 2, "b": 2})
    tasks = await flovyn.tasks(handle.id)
    assert [(t["input"]["name"], t["status"]) for t in tasks[:2]] == [
        ("a", "FAILED"),
        ("b", "FAILED"),
    ]
    # re-issued in the order their failures were recorded
    assert sorted((t["input"]["name"], t["status"]) for t in tasks[2:]) == [
        ("a", "COMPLETED"),
        ("b", "COMPLETED"),
    ]
    events = await flovyn.events(handle.id)
    assert_gapless(events)
    # GET .../tasks lists them in scheduling order
    assert [t["id"] for t in tasks] == [
        e["data"]["taskExecutionId"] for e in of_type(events, "TASK_SCHEDULED")
    ]
    assert event_types(events).count("WORKFLOW_EXECUTION_FAILED") == 1


@workflow(name="retry-timer-pending")
async def timer_pending(ctx: WorkflowContext, n: int) -> int:
    nap = ctx.sleep_async(1.5)  # still pending when the task below fails the workflow
    value = int(await ctx.schedule(flaky_step, n))
    await nap
    return value


async def test_a_timer_pending_at_failure_still_fires_for_the_retry(flovyn: Flovyn) -> None:
    async with flovyn.worker([timer_pending], [flaky_step]), flovyn.client() as client:
        handle = await client.start_workflow(timer_pending, 4)
        await wait_status(flovyn, handle.id, "FAILED")
        BROKEN["flaky"] = False
        await flovyn.ok("POST", f"P/workflow-executions/{handle.id}/retry", {})
        assert await handle.result(timeout=20) == 40
    types = event_types(await flovyn.events(handle.id))
    assert types.count("TIMER_STARTED") == 1 and types.count("TIMER_FIRED") == 1
