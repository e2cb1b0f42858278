"""While a worker still has to run a cancellation, the execution shows CANCELLING."""

from __future__ import annotations

from tests.integration.conftest import Flovyn


async def _register(flovyn: Flovyn, kinds: list[str]) -> str:
    answer = await flovyn.ok(
        "POST",
        "P/worker/register",
        {"name": "raw", "workflows": kinds},
        key=flovyn.worker_token,
    )
    return str(answer["workerId"])


async def test_cancel_of_a_started_execution_shows_cancelling(flovyn: Flovyn) -> None:
    wf = (await flovyn.ok("POST", "P/workflows/raw-wait/trigger", {"input": {}}))[
        "workflowExecutionId"
    ]
    worker = await _register(flovyn, ["raw-wait"])
    poll = {"workerId": worker, "kinds": ["raw-wait"], "maxItems": 1, "timeoutMs": 2000}
    (activation,) = (
        await flovyn.ok("POST", "P/worker/workflows/poll", poll, key=flovyn.worker_token)
    )["activations"]
    ids = {"workerId": worker, "activationId": activation["activationId"]}
    promise = {"type": "CREATE_PROMISE", "promiseName": "approval"}
    await flovyn.ok(
        "POST",
        f"P/worker/workflows/{wf}/submit",
        {**ids, "status": "SUSPENDED", "commands": [promise]},
        key=flovyn.worker_token,
    )

    answer = await flovyn.ok("POST", f"P/workflow-executions/{wf}/cancel", {"reason": "stop"})
    assert answer == {"status": "CANCELLING", "cancelledChildren": []}
    assert (await flovyn.ok("GET", f"P/workflow-executions/{wf}"))["status"] == "CANCELLING"
    listed = await flovyn.ok("GET", "P/workflow-executions", params={"status": "CANCELLING"})
    assert [w["id"] for w in listed["workflows"]] == [wf]
    pending = await flovyn.ok("GET", "P/workflow-executions", params={"status": "PENDING"})
    assert pending["total"] == 0  # it is runnable, but shown as CANCELLING only

    (activation,) = (
        await flovyn.ok("POST", "P/worker/workflows/poll", poll, key=flovyn.worker_token)
    )["activations"]
    assert activation["events"][-1]["eventType"] == "CANCELLATION_REQUESTED"
    ids["activationId"] = activation["activationId"]
    done = await flovyn.ok(
        "POST",
        f"P/worker/workflows/{wf}/submit",
        {**ids, "status": "CANCELLED", "commands": []},
        key=flovyn.worker_token,
    )
    assert done["status"] == "CANCELLED"
    row = await flovyn.ok("GET", f"P/workflow-executions/{wf}")
    assert row["status"] == "CANCELLED"
    types = [e["eventType"] for e in await flovyn.events(wf)]
    assert types == [
        "WORKFLOW_STARTED",
        "PROMISE_CREATED",
        "CANCELLATION_REQUESTED",
        "WORKFLOW_CANCELLED",
    ]

    # The promise of a cancelled execution cannot be settled any more; nothing changes.
    status, body = await flovyn.call("POST", f"P/promises/{wf}:approval/resolve", {"value": 1})
    assert status == 409 and body["code"] == "WORKFLOW_TERMINAL"
    assert [e["eventType"] for e in await flovyn.events(wf)] == types
