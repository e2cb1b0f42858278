"""The worker protocol's shortcuts: eager dispatch (a submit's tasks and a completed
task's next activation are handed to the worker that offered free slots, claimed in the
same transaction; the rest is queued) and batched results (one request, one outcome
per operation)."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from flovyn_server.api.common import ENGINE
from flovyn_worker import TaskContext, WorkflowContext, task, workflow
from tests.integration.conftest import Flovyn
from tests.integration.helpers import (
    assert_error,
    assert_gapless,
    attempts,
    event_types,
    execution,
    trigger,
    wait_for,
)


async def _register(f: Flovyn) -> str:
    answer = await f.ok(
        "POST", "P/worker/register",
        {"name": "eager", "queues": ["default"], "workflows": ["e-flow"], "tasks": ["e-step"]},
        key=f.worker_token,
    )  # fmt: skip
    return str(answer["workerId"])


async def _poll(
    f: Flovyn, worker_id: str, what: str, max_items: int, timeout_ms: int
) -> list[dict[str, Any]]:
    """Items of a raw poll: `what` is "workflows" (e-flow) or "tasks" (e-step)."""
    kinds = ["e-flow"] if what == "workflows" else ["e-step"]
    answer = await f.ok(
        "POST", f"P/worker/{what}/poll",
        {"workerId": worker_id, "queue": "default", "kinds": kinds, "maxItems": max_items,
         "timeoutMs": timeout_ms},
        key=f.worker_token,
    )  # fmt: skip
    return list(answer["activations" if what == "workflows" else "tasks"])


async def _claim_one(f: Flovyn, worker_id: str) -> dict[str, Any]:
    [activation] = await _poll(f, worker_id, "workflows", 1, 2000)
    return activation


def _schedule(kind: str, queue: str | None = None) -> dict[str, Any]:
    command = {"type": "SCHEDULE_TASK", "taskExecutionId": str(uuid.uuid4()), "kind": kind}
    if queue:
        command["queue"] = queue
    return command


async def _submit(
    f: Flovyn, worker_id: str, activation: dict[str, Any], commands: list[Any], **extra: Any
) -> dict[str, Any]:
    return dict(
        await f.ok(
            "POST", f"P/worker/workflows/{activation['workflowExecutionId']}/submit",
            {"workerId": worker_id, "activationId": activation["activationId"],
             "status": "SUSPENDED", "commands": commands, **extra},
            key=f.worker_token,
        )
    )  # fmt: skip


async def _complete(f: Flovyn, worker_id: str, task_id: str, **extra: Any) -> dict[str, Any]:
    return dict(
        await f.ok(
            "POST", f"P/worker/tasks/{task_id}/complete",
            {"workerId": worker_id, "attempt": 1, "output": "done", **extra},
            key=f.worker_token,
        )
    )  # fmt: skip


TASK_OFFER = {"queue": "default", "kinds": ["e-step"], "slots": 2}


async def _two_tasks_handed_over(
    f: Flovyn,
) -> tuple[str, str, dict[str, Any], list[dict[str, Any]]]:
    """A worker, its workflow, the activation it submitted and the two tasks that
    submit scheduled and handed straight back to it."""
    worker_id = await _register(f)
    wf_id = await trigger(f, "e-flow")
    activation = await _claim_one(f, worker_id)
    commands = [_schedule("e-step"), _schedule("e-step")]
    await _submit(f, worker_id, activation, commands, eagerTasks=TASK_OFFER)
    return worker_id, wf_id, activation, commands


ACTIVATION_OFFER = {"queue": "default", "kinds": ["e-flow"]}


async def test_submit_hands_over_the_tasks_its_offer_covers(flovyn: Flovyn) -> None:
    worker_id = await _register(flovyn)
    wf_id = await trigger(flovyn, "e-flow")
    activation = await _claim_one(flovyn, worker_id)
    commands = [
        _schedule("e-step"),
        _schedule("other-step"),  # a kind the offer does not name
        _schedule("e-step", queue="elsewhere"),  # another queue
        _schedule("e-step"),
        _schedule("e-step"),  # beyond the two slots offered
    ]
    answer = await _submit(flovyn, worker_id, activation, commands, eagerTasks=TASK_OFFER)
    assert answer["status"] == "WAITING"
    handed = answer["tasks"]
    assert [t["taskExecutionId"] for t in handed] == [
        commands[0]["taskExecutionId"],
        commands[3]["taskExecutionId"],
    ]
    assert {(t["kind"], t["attempt"], t["queue"]) for t in handed} == {("e-step", 1, "default")}
    assert all(t["workflowExecutionId"] == wf_id for t in handed)

    by_id = {t["id"]: t for t in await flovyn.tasks(wf_id)}
    for command in commands:
        row = by_id[command["taskExecutionId"]]
        if command in (commands[0], commands[3]):
            assert (row["status"], row["workerId"], row["executionCount"]) == (
                "RUNNING",
                worker_id,
                1,
            )
            [attempt] = await attempts(flovyn, wf_id, row["id"])
            assert (attempt["status"], attempt["workerId"]) == ("RUNNING", worker_id)
        else:
            assert (row["status"], row["executionCount"]) == ("PENDING", 0), row

    # A poll gets the queued e-step task of the default queue, never a handed one.
    polled = await _poll(flovyn, worker_id, "tasks", 10, 200)
    assert [t["taskExecutionId"] for t in polled] == [commands[4]["taskExecutionId"]]
    events = await flovyn.events(wf_id)
    assert event_types(events) == ["WORKFLOW_STARTED"] + ["TASK_SCHEDULED"] * 5
    assert_gapless(events)


async def test_completion_hands_over_the_next_activation(flovyn: Flovyn) -> None:
    worker_id, wf_id, first, commands = await _two_tasks_handed_over(flovyn)

    # The workflow is WAITING: completing a task makes it runnable, and it is handed over.
    answer = await _complete(
        flovyn, worker_id, commands[0]["taskExecutionId"], eagerActivation=ACTIVATION_OFFER
    )
    second = answer["activation"]
    assert second["workflowExecutionId"] == wf_id
    assert second["activationId"] == first["activationId"] + 1
    assert [e["eventType"] for e in second["events"]] == [
        "WORKFLOW_STARTED",
        "TASK_SCHEDULED",
        "TASK_SCHEDULED",
        "TASK_COMPLETED",
    ]
    row = await execution(flovyn, wf_id)
    assert (row["status"], row["workerId"]) == ("RUNNING", worker_id)

    # While the worker holds it, a completion only flags a resume: nothing is handed over.
    answer = await _complete(
        flovyn, worker_id, commands[1]["taskExecutionId"], eagerActivation=ACTIVATION_OFFER
    )
    assert answer.get("activation") is None
    assert (await _submit(flovyn, worker_id, second, []))["status"] == "PENDING"
    third = await _claim_one(flovyn, worker_id)
    assert third["activationId"] == second["activationId"] + 1
    assert_gapless(await flovyn.events(wf_id))


async def test_no_offer_no_other_kind_no_handover(flovyn: Flovyn) -> None:
    worker_id = await _register(flovyn)
    wf_id = await trigger(flovyn, "e-flow")
    activation = await _claim_one(flovyn, worker_id)
    commands = [_schedule("e-step"), _schedule("e-step")]
    answer = await _submit(flovyn, worker_id, activation, commands)
    assert "tasks" not in answer
    assert {t["status"] for t in await flovyn.tasks(wf_id)} == {"PENDING"}
    assert len(await _poll(flovyn, worker_id, "tasks", 10, 200)) == 2
    # An offer for other workflow kinds leaves the resumed execution queued.
    answer = await _complete(
        flovyn,
        worker_id,
        commands[0]["taskExecutionId"],
        eagerActivation={"queue": "default", "kinds": ["another-flow"]},
    )
    assert answer.get("activation") is None
    assert (await execution(flovyn, wf_id))["status"] == "PENDING"


async def test_nothing_is_handed_to_an_offline_worker(flovyn: Flovyn) -> None:
    """A worker marked OFFLINE (the liveness reaper got it) while it still holds work is
    handed nothing more: nothing would ever release it."""
    worker_id = await _register(flovyn)
    wf_id = await trigger(flovyn, "e-flow")
    activation = await _claim_one(flovyn, worker_id)
    assert flovyn.app is not None
    async with flovyn.app[ENGINE].store.transaction() as tx:
        await tx.execute("UPDATE workers SET status = 'OFFLINE' WHERE id = $1", worker_id)
    commands = [_schedule("e-step")]
    answer = await _submit(flovyn, worker_id, activation, commands, eagerTasks=TASK_OFFER)
    assert answer["tasks"] == []
    [row] = await flovyn.tasks(wf_id)
    assert (row["status"], row["executionCount"]) == ("PENDING", 0)


async def test_bad_offers_are_refused(flovyn: Flovyn) -> None:
    worker_id = await _register(flovyn)
    await trigger(flovyn, "e-flow")
    activation = await _claim_one(flovyn, worker_id)
    path = f"P/worker/workflows/{activation['workflowExecutionId']}/submit"
    base = {"workerId": worker_id, "activationId": activation["activationId"],
            "status": "SUSPENDED", "commands": []}  # fmt: skip
    for bad in ("all", {"kinds": "e-step"}, {"kinds": ["e-step"], "slots": -1}):
        status, body = await flovyn.call(
            "POST", path, {**base, "eagerTasks": bad}, key=flovyn.worker_token
        )
        assert_error(status, body, 400)
    # Nothing changed: the activation is still held and takes a good submit.
    assert (await _submit(flovyn, worker_id, activation, []))["status"] == "WAITING"


# --- the SDK: eager dispatch within the worker's concurrency limits ------------------------

_running = {"now": 0, "most": 0}


@task(name="e-slow")
async def e_slow(ctx: TaskContext, n: int) -> int:
    _running["now"] += 1
    _running["most"] = max(_running["most"], _running["now"])
    try:
        await asyncio.sleep(0.05)
    finally:
        _running["now"] -= 1
    return n


@workflow(name="e-fan")
async def e_fan(ctx: WorkflowContext, width: int) -> int:
    total = 0
    for _ in range(3):  # each round's completions can hand the next activation over
        total += sum(await asyncio.gather(*(ctx.schedule_async(e_slow, i) for i in range(width))))
    return total


async def _eager_count(f: Flovyn, work: str) -> float:
    status, text = await f.call("GET", "/_/metrics")
    assert status == 200
    prefix = f'flovyn_eager_handovers_total{{work="{work}"}} '
    lines = [ln for ln in str(text).splitlines() if ln.startswith(prefix)]
    return float(lines[0].removeprefix(prefix)) if lines else 0.0


async def test_sdk_takes_handovers_and_keeps_its_limits(flovyn: Flovyn) -> None:
    _running.update(now=0, most=0)
    before = {w: await _eager_count(flovyn, w) for w in ("task", "activation")}
    client = flovyn.client()
    async with flovyn.worker(
        workflows=[e_fan], tasks=[e_slow], max_concurrent_tasks=3, max_concurrent_workflows=2
    ):
        handles = [await client.start_workflow(e_fan, 6) for _ in range(4)]
        results = [await h.result(timeout=30) for h in handles]
    assert results == [3 * sum(range(6))] * 4
    assert 1 <= _running["most"] <= 3, _running
    after = {w: await _eager_count(flovyn, w) for w in ("task", "activation")}
    assert after["task"] > before["task"], (before, after)
    assert after["activation"] > before["activation"], (before, after)

    async def all_attempts_single() -> bool:
        for h in handles:
            for t in await flovyn.tasks(h.id):
                if t["executionCount"] != 1 or t["status"] != "COMPLETED":
                    return False
        return True

    assert await wait_for(all_attempts_single, within=5)


async def test_a_no_op_command_gives_its_sequence_back(flovyn: Flovyn) -> None:
    """A submit reserves a sequence per command before applying them; a command that
    turns out a no-op (a task id scheduled already, with the same kind) leaves no gap,
    and one with another kind is refused with nothing applied."""
    worker_id = await _register(flovyn)
    wf_id = await trigger(flovyn, "e-flow")
    first = await _claim_one(flovyn, worker_id)
    again = _schedule("e-step")
    await _submit(flovyn, worker_id, first, [again])
    [polled] = await _poll(flovyn, worker_id, "tasks", 1, 2000)
    await _complete(flovyn, worker_id, polled["taskExecutionId"])
    second = await _claim_one(flovyn, worker_id)
    fresh = _schedule("e-step")
    conflicting = {**_schedule("other-step"), "taskExecutionId": again["taskExecutionId"]}
    path = f"P/worker/workflows/{wf_id}/submit"
    status, body = await flovyn.call(
        "POST", path,
        {"workerId": worker_id, "activationId": second["activationId"], "status": "SUSPENDED",
         "commands": [fresh, conflicting]},
        key=flovyn.worker_token,
    )  # fmt: skip
    assert_error(status, body, 409, "ID_CONFLICT")
    assert len(await flovyn.tasks(wf_id)) == 1  # the fresh one was rolled back

    answer = await _submit(flovyn, worker_id, second, [again, fresh])
    events = await flovyn.events(wf_id)
    assert_gapless(events)
    assert answer["currentSequence"] == events[-1]["sequence"]
    assert event_types(events) == [
        "WORKFLOW_STARTED",
        "TASK_SCHEDULED",
        "TASK_COMPLETED",
        "TASK_SCHEDULED",
    ]
    assert events[-1]["data"]["taskExecutionId"] == fresh["taskExecutionId"]


async def test_a_batch_answers_each_operation_as_if_posted_alone(flovyn: Flovyn) -> None:
    worker_id, wf_id, _, commands = await _two_tasks_handed_over(flovyn)
    first, second = (c["taskExecutionId"] for c in commands)
    done = {"workerId": worker_id, "attempt": 1, "output": "ok"}
    answer = await flovyn.ok(
        "POST", "P/worker/batch",
        {"operations": [
            {"type": "complete", "id": first, "body": done},
            {"type": "complete", "id": second, "body": {**done, "attempt": 2}},  # stale
            {"type": "complete", "id": str(uuid.uuid4()), "body": done},  # unknown task
            {"type": "sing", "id": first, "body": {}},
            "not an object",
            {"type": "fail", "id": second, "body": {"workerId": worker_id, "attempt": 1,
                                                    "error": "boom", "retryable": False}},
        ]},
        key=flovyn.worker_token,
    )  # fmt: skip
    statuses = [r["status"] for r in answer["results"]]
    assert statuses == [200, 409, 404, 400, 400, 200], answer
    assert answer["results"][0]["body"] == {"status": "COMPLETED"}
    assert answer["results"][1]["body"]["code"] == "STALE_ATTEMPT"
    assert answer["results"][5]["body"]["status"] == "FAILED"
    by_id = {t["id"]: t["status"] for t in await flovyn.tasks(wf_id)}
    assert by_id == {first: "COMPLETED", second: "FAILED"}
    assert_gapless(await flovyn.events(wf_id))

    for bad in ({}, {"operations": []}, {"operations": [{}] * 101}, {"operations": "x"}):
        status, body = await flovyn.call("POST", "P/worker/batch", bad, key=flovyn.worker_token)
        assert_error(status, body, 400)
    status, body = await flovyn.call(
        "POST", "P/worker/batch", {"operations": [{"type": "fail"}]}
    )  # the REST API key is not a worker token
    assert status in (401, 403), (status, body)
