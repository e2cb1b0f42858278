"""Workflows run end to end: results, history, execution shape, determinism, idempotency."""

from __future__ import annotations

import asyncio

from flovyn_worker import TaskContext, WorkflowContext, task, workflow
from tests.integration.conftest import ADMIN_KEY, Flovyn
from tests.integration.helpers import (
    ONE_TASK_HISTORY,
    assert_gapless,
    event_types,
    execution,
    trigger,
    ts,
    wait_status,
)

# --- one task -----------------------------------------------------------------------------


@task(name="triple")
async def triple(ctx: TaskContext, n: int) -> int:
    return n * 3


@workflow(name="one-step")
async def one_step(ctx: WorkflowContext, n: int) -> dict[str, int]:
    return {"value": await ctx.schedule(triple, n)}


async def test_one_task_workflow_history_and_execution_shape(flovyn: Flovyn) -> None:
    async with flovyn.worker([one_step], [triple]) as worker, flovyn.client() as client:
        handle = await client.start_workflow(one_step, 14)
        assert await handle.result(timeout=20) == {"value": 42}

    events = await flovyn.events(handle.id)
    assert event_types(events) == ONE_TASK_HISTORY
    assert_gapless(events)
    assert events[0]["data"] == {"input": 14}
    scheduled = events[1]["data"]
    assert scheduled["kind"] == "triple"
    assert scheduled["input"] == 14
    assert scheduled["queue"] == "default"
    assert events[2]["data"] == {"taskExecutionId": scheduled["taskExecutionId"], "output": 42}
    assert events[3]["data"] == {"output": {"value": 42}}
    stamps = [ts(e["timestamp"]) for e in events]
    assert stamps == sorted(stamps)

    tenant = await flovyn.ok("GET", f"/api/tenants/{flovyn.slug}", key=ADMIN_KEY)
    row = await execution(flovyn, handle.id)
    expected_keys = {
        "id", "tenantId", "kind", "queue", "status", "input", "output", "error",
        "currentSequence", "workflowVersion", "parentWorkflowExecutionId", "workerId",
        "retryAttempts", "metadata", "createdAt", "startedAt", "completedAt", "updatedAt",
    }  # fmt: skip
    assert expected_keys <= set(row), expected_keys - set(row)
    assert row["id"] == handle.id
    assert row["tenantId"] == tenant["id"]
    assert row["kind"] == "one-step"
    assert row["queue"] == "default"
    assert row["status"] == "COMPLETED"
    assert row["input"] == 14
    assert row["output"] == {"value": 42}
    assert row["error"] is None
    assert row["currentSequence"] == 4
    assert row["parentWorkflowExecutionId"] is None
    assert row["retryAttempts"] == 0
    assert row["metadata"] == {}
    # The claim is released when the execution ends; if kept, it names our worker.
    assert row["workerId"] in (None, worker.worker_id)
    created, started, completed, updated = (
        ts(row[k]) for k in ("createdAt", "startedAt", "completedAt", "updatedAt")
    )
    assert created <= started <= completed <= updated

    tasks = await flovyn.tasks(handle.id)
    assert len(tasks) == 1
    only = tasks[0]
    assert only["id"] == scheduled["taskExecutionId"]
    assert (only["status"], only["output"], only["executionCount"]) == ("COMPLETED", 42, 1)
    assert only["workflowExecutionId"] == handle.id


# --- many tasks ---------------------------------------------------------------------------


@task(name="square")
async def square(ctx: TaskContext, n: int) -> int:
    # Later inputs finish first, so completion order differs from scheduling order.
    await asyncio.sleep(0.002 * (20 - n % 20))
    return n * n


@workflow(name="sequence-of-ten")
async def sequence_of_ten(ctx: WorkflowContext, start: int) -> list[int]:
    results = []
    for i in range(10):
        results.append(await ctx.schedule(square, start + i))
    return results


@workflow(name="fan-out-twenty")
async def fan_out_twenty(ctx: WorkflowContext, start: int) -> list[int]:
    handles = [ctx.schedule_async(square, start + i) for i in range(20)]
    return list(await asyncio.gather(*handles))


async def test_ten_tasks_in_sequence_and_twenty_fanned_out(flovyn: Flovyn) -> None:
    async with (
        flovyn.worker([sequence_of_ten, fan_out_twenty], [square]),
        flovyn.client() as client,
    ):
        seq = await client.start_workflow(sequence_of_ten, 1)
        fan = await client.start_workflow(fan_out_twenty, 100)
        seq_result, fan_result = await asyncio.gather(
            seq.result(timeout=30), fan.result(timeout=30)
        )
    assert seq_result == [n * n for n in range(1, 11)]
    assert fan_result == [n * n for n in range(100, 120)]

    seq_events = await flovyn.events(seq.id)
    assert event_types(seq_events) == (
        ["WORKFLOW_STARTED"] + ["TASK_SCHEDULED", "TASK_COMPLETED"] * 10 + ["WORKFLOW_COMPLETED"]
    )
    assert [e["sequence"] for e in seq_events] == list(range(1, 23))
    seq_tasks = await flovyn.tasks(seq.id)
    assert [t["input"] for t in seq_tasks] == list(range(1, 11))
    assert [t["output"] for t in seq_tasks] == seq_result

    fan_events = await flovyn.events(fan.id)
    types = event_types(fan_events)
    # All twenty are scheduled by the first activation, before any completes.
    assert types[:21] == ["WORKFLOW_STARTED"] + ["TASK_SCHEDULED"] * 20
    assert sorted(types[21:-1]) == ["TASK_COMPLETED"] * 20
    assert types[-1] == "WORKFLOW_COMPLETED"
    assert [e["sequence"] for e in fan_events] == list(range(1, 43))
    assert [e["data"]["input"] for e in fan_events[1:21]] == list(range(100, 120))
    fan_tasks = await flovyn.tasks(fan.id)
    assert len(fan_tasks) == 20
    assert all(t["status"] == "COMPLETED" and t["executionCount"] == 1 for t in fan_tasks)


# --- determinism --------------------------------------------------------------------------


# The "deployed code" of the drifting workflow: the test flips it between activations.
class Drift:
    kind = "step-a"
    gate: asyncio.Event
    started: asyncio.Event


@task(name="step-a")
async def step_a(ctx: TaskContext, _: object = None) -> str:
    Drift.started.set()
    await Drift.gate.wait()
    return "a"


@task(name="step-b")
async def step_b(ctx: TaskContext, _: object = None) -> str:
    return "b"


@workflow(name="drifting")
async def drifting(ctx: WorkflowContext, _: object = None) -> str:
    first = await ctx.schedule(Drift.kind)
    return f"done after {first}"


async def test_code_change_between_activations_is_a_determinism_violation(
    flovyn: Flovyn,
) -> None:
    Drift.kind = "step-a"
    Drift.gate, Drift.started = asyncio.Event(), asyncio.Event()
    try:
        async with flovyn.worker([drifting], [step_a, step_b]):
            wf_id = await trigger(flovyn, "drifting")
            await asyncio.wait_for(Drift.started.wait(), 20)
            # TASK_SCHEDULED(step-a) is in the history; now "deploy" code that schedules step-b.
            Drift.kind = "step-b"
            Drift.gate.set()
            row = await wait_status(flovyn, wf_id)
            events_at_failure = await flovyn.events(wf_id)
            # Give the worker a chance to (wrongly) advance the history further.
            await asyncio.sleep(0.5)
            events_later = await flovyn.events(wf_id)
    finally:
        Drift.kind = "step-a"
        Drift.gate.set()

    assert row["status"] == "FAILED"
    error = row["error"]
    assert error.startswith("DeterminismViolation"), error
    # Both sides: what the code did now and what the history recorded.
    assert "'step-b'" in error and "'step-a'" in error, error
    # The failed activation appended nothing: no WORKFLOW_EXECUTION_FAILED, no new command.
    assert event_types(events_at_failure) == [
        "WORKFLOW_STARTED",
        "TASK_SCHEDULED",
        "TASK_COMPLETED",
    ]
    assert events_later == events_at_failure
    assert (await execution(flovyn, wf_id))["currentSequence"] == 3
    tasks = await flovyn.tasks(wf_id)
    assert [t["kind"] for t in tasks] == ["step-a"]


# --- idempotency --------------------------------------------------------------------------


@workflow(name="always-fails")
async def always_fails(ctx: WorkflowContext, _: object = None) -> None:
    raise RuntimeError("nope")


async def test_same_idempotency_key_gives_one_execution(flovyn: Flovyn) -> None:
    body = {"input": {"order": 1}, "idempotencyKey": "order-1"}
    status1, first = await flovyn.call("POST", "P/workflows/idem-kind/trigger", body)
    status2, second = await flovyn.call("POST", "P/workflows/idem-kind/trigger", body)
    assert (status1, status2) == (201, 200), (first, second)
    assert first["workflowExecutionId"] == second["workflowExecutionId"]
    assert (first["idempotencyKeyUsed"], first["idempotencyKeyNew"]) == (True, True)
    assert (second["idempotencyKeyUsed"], second["idempotencyKeyNew"]) == (True, False)
    listed = await flovyn.ok("GET", "P/workflow-executions", params={"kind": "idem-kind"})
    assert listed["total"] == 1

    # Without a key every trigger is new.
    status3, third = await flovyn.call("POST", "P/workflows/idem-kind/trigger", {})
    assert status3 == 201 and third["idempotencyKeyUsed"] is False
    assert third["idempotencyKeyNew"] is False


async def test_concurrent_triggers_with_one_key_create_one_execution(flovyn: Flovyn) -> None:
    body = {"idempotencyKey": "race", "idempotencyKeyTTL": "5m"}
    answers = await asyncio.gather(
        *(flovyn.call("POST", "P/workflows/race-kind/trigger", body) for _ in range(10))
    )
    statuses = sorted(status for status, _ in answers)
    assert statuses == [200] * 9 + [201], answers
    assert len({data["workflowExecutionId"] for _, data in answers}) == 1
    listed = await flovyn.ok("GET", "P/workflow-executions", params={"kind": "race-kind"})
    assert listed["total"] == 1


async def test_key_of_a_failed_execution_may_be_reused(flovyn: Flovyn) -> None:
    body = {"idempotencyKey": "retry-me"}
    async with flovyn.worker([always_fails], []):
        status1, first = await flovyn.call("POST", "P/workflows/always-fails/trigger", body)
        assert status1 == 201
        failed = await wait_status(flovyn, first["workflowExecutionId"])
        assert failed["status"] == "FAILED"
        assert "nope" in failed["error"]
        status2, second = await flovyn.call("POST", "P/workflows/always-fails/trigger", body)
        assert status2 == 201, second
        assert second["idempotencyKeyNew"] is True
        assert second["workflowExecutionId"] != first["workflowExecutionId"]
        await wait_status(flovyn, second["workflowExecutionId"])
    listed = await flovyn.ok("GET", "P/workflow-executions", params={"kind": "always-fails"})
    assert listed["total"] == 2


async def test_key_of_a_completed_execution_is_not_reused(flovyn: Flovyn) -> None:
    body = {"input": 2, "idempotencyKey": "done-once"}
    async with flovyn.worker([one_step], [triple]):
        status1, first = await flovyn.call("POST", "P/workflows/one-step/trigger", body)
        done = await wait_status(flovyn, first["workflowExecutionId"])
    assert (status1, done["status"]) == (201, "COMPLETED")
    status2, second = await flovyn.call("POST", "P/workflows/one-step/trigger", body)
    assert status2 == 200
    assert second["workflowExecutionId"] == first["workflowExecutionId"]
    assert second["status"] == "COMPLETED"
    assert second["idempotencyKeyNew"] is False
