"""Hostile input found by a fuzz of the API: each case is refused with 400 (or answered
as documented), never a 500, and loses nothing; on both stores.

The rule for text: a NUL character in any text field is refused with 400. The SDK
never sends one: it turns NUL in error messages, stack traces and log lines into
U+FFFD, so a task or workflow that fails with one still records its failure.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from flovyn_worker import RetryPolicy, TaskContext, WorkflowContext, task, workflow
from tests.integration.conftest import Flovyn
from tests.integration.helpers import assert_error, attempts, trigger, wait_status

BIG = 2**63
INT4 = 2**31
TEN_YEARS_MS = 10 * 365 * 86_400_000  # the longest duration a field takes


async def _worker(f: Flovyn, **extra: Any) -> str:
    body = {"name": "w", "workflows": ["hostile"], "tasks": ["hostile-task"], **extra}
    registered = await f.ok("POST", "P/worker/register", body, key=f.worker_token)
    return str(registered["workerId"])


async def _claim(f: Flovyn, worker_id: str) -> dict[str, Any]:
    """Trigger one `hostile` execution and claim its activation for `worker_id`."""
    await trigger(f, "hostile")
    polled = await f.ok(
        "POST", "P/worker/workflows/poll",
        {"workerId": worker_id, "kinds": ["hostile"], "timeoutMs": 5000},
        key=f.worker_token,
    )  # fmt: skip
    (activation,) = polled["activations"]
    return dict(activation)


async def _refused(f: Flovyn, method: str, path: str, body: Any = None, **kw: Any) -> str:
    """The 400's message."""
    # The standard encoder: it writes integers of any size, as a hostile client can.
    raw = None if body is None else json.dumps(body).encode()
    status, answer = await f.call(method, path, raw=raw, **kw)
    assert_error(status, answer, 400)
    return str(answer["error"])


async def test_nul_in_text_is_refused_everywhere(flovyn: Flovyn) -> None:
    f = flovyn
    before = await f.ok("GET", "P/workflow-executions")
    queue = await _refused(f, "POST", "P/workflows/ok/trigger", {"queue": "a\x00"})
    assert queue.startswith("queue: must be a queue name"), queue
    key = await _refused(f, "POST", "P/workflows/ok/trigger", {"idempotencyKey": "k\x00"})
    assert key.startswith("idempotencyKey: must not contain the NUL character"), key
    await _refused(f, "POST", "P/workflows/ok/trigger", {"metadata": {"a": "b\x00"}})
    await _refused(f, "POST", "P/workflows/a%00b/trigger", {})
    await _refused(f, "GET", "P/workflow-executions", params={"kind": "\x00"})
    await _refused(f, "GET", "P/workflow-definitions/a%00")
    status, body = await f.call("GET", "/api/tenants/%00", key="test-admin-key")
    assert_error(status, body, 404)
    status, body = await f.call("GET", "/api/tenants/%00/workflow-executions", key="test-admin-key")
    assert_error(status, body, 404)
    await _refused(f, "POST", "P/worker/register", {"name": "w\x00"}, key=f.worker_token)
    ref = await trigger(f, "ok")
    await _refused(f, "POST", f"P/workflow-executions/{ref}/signal", {"signalName": "s\x00"})
    await _refused(f, "POST", f"P/workflow-executions/{ref}/cancel", {"reason": "r\x00"})
    await _refused(f, "POST", f"P/promises/{ref}:p/reject", {"error": "e\x00"})
    after = await f.ok("GET", "P/workflow-executions")
    assert after["total"] == before["total"] + 1  # only the valid trigger


async def test_nul_in_worker_results_is_refused_and_the_attempt_stays_open(
    flovyn: Flovyn,
) -> None:
    f = flovyn
    worker_id = await _worker(f)
    activation = await _claim(f, worker_id)
    wf = activation["workflowExecutionId"]
    held = {"workerId": worker_id, "activationId": activation["activationId"]}
    submit = f"P/worker/workflows/{wf}/submit"
    await _refused(f, "POST", submit, {**held, "status": "FAILED",
                   "commands": [{"type": "FAIL_WORKFLOW", "error": "bad\x00"}]},
                   key=f.worker_token)  # fmt: skip
    # The activation is still held: a clean submit goes through.
    task_id = "7f8a3c1e-2b4d-4e6f-8a9b-0c1d2e3f4a5b"
    done = await f.ok("POST", submit, {**held, "status": "SUSPENDED", "commands": [
        {"type": "SCHEDULE_TASK", "taskExecutionId": task_id, "kind": "hostile-task"}]},
        key=f.worker_token)  # fmt: skip
    assert done["status"] == "WAITING"
    polled = await f.ok("POST", "P/worker/tasks/poll",
                        {"workerId": worker_id, "kinds": ["hostile-task"], "timeoutMs": 5000},
                        key=f.worker_token)  # fmt: skip
    assert [t["taskExecutionId"] for t in polled["tasks"]] == [task_id]
    base = f"P/worker/tasks/{task_id}"
    attempt = {"workerId": worker_id, "attempt": 1}
    await _refused(f, "POST", f"{base}/fail", {**attempt, "error": "bad\x00byte"},
                   key=f.worker_token)  # fmt: skip
    await _refused(f, "POST", f"{base}/progress", {**attempt, "progress": 0.5, "details": "\x00"},
                   key=f.worker_token)  # fmt: skip
    await _refused(f, "POST", "P/worker/logs", {"entries": [
        {"taskExecutionId": task_id, "attempt": 1, "message": "a\x00b"}]},
        key=f.worker_token)  # fmt: skip
    for stamp in ("0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "yesterday"):
        await _refused(f, "POST", "P/worker/logs", {"entries": [
            {"taskExecutionId": task_id, "attempt": 1, "message": "m", "timestamp": stamp}]},
            key=f.worker_token)  # fmt: skip
    (running,) = await attempts(f, wf, task_id)
    assert running["status"] == "RUNNING"
    failed = await f.ok("POST", f"{base}/fail", {**attempt, "error": "bad byte", "retryable": False},
                        key=f.worker_token)  # fmt: skip
    assert failed == {"status": "FAILED"}


@task(name="nul-task", retry_policy=RetryPolicy(max_attempts=1))
async def nul_task(ctx: TaskContext, _: Any) -> None:
    ctx.logger.info("before \x00 the bad byte")
    ctx.logger.info("after it")
    raise RuntimeError("bad\x00byte")


@workflow(name="nul-flow")
async def nul_flow(ctx: WorkflowContext, _: Any) -> Any:
    return await ctx.schedule(nul_task, None)


@workflow(name="nul-fail")
async def nul_fail(ctx: WorkflowContext, _: Any) -> Any:
    raise ValueError("broken\x00here")


async def test_the_sdk_never_loses_a_failure_or_a_log_batch_to_a_nul(flovyn: Flovyn) -> None:
    f = flovyn
    async with f.worker([nul_flow, nul_fail], [nul_task]), f.client() as client:
        flow = await client.start_workflow(nul_flow, None)
        failing = await client.start_workflow(nul_fail, None)
        ended = await wait_status(f, flow.id)
        failed = await wait_status(f, failing.id)
    assert failed["status"] == "FAILED"
    assert failed["error"] == "ValueError: broken\ufffdhere"
    assert ended["status"] == "FAILED"
    (only,) = await f.tasks(flow.id)
    assert only["status"] == "FAILED" and only["error"] == "RuntimeError: bad\ufffdbyte"
    (attempt,) = await attempts(f, flow.id, only["id"])
    assert attempt["status"] == "FAILED"  # not TIMEOUT: the failure was recorded
    logs = await f.ok("GET", f"P/workflow-executions/{flow.id}/tasks/{only['id']}/logs")
    assert [line["message"] for line in logs["logs"]] == ["before \ufffd the bad byte", "after it"]


async def test_ttl_must_be_a_duration_string(flovyn: Flovyn) -> None:
    f = flovyn
    for ttl in (3600, None, "", "0s", "31d", "24x"):
        await _refused(f, "POST", "P/workflows/ok/trigger",
                       {"idempotencyKey": "k", "idempotencyKeyTTL": ttl})  # fmt: skip
    worker_id = await _worker(f)
    activation = await _claim(f, worker_id)
    held = {"workerId": worker_id, "activationId": activation["activationId"]}
    path = f"P/worker/workflows/{activation['workflowExecutionId']}/submit"
    for ttl in (3600, "31d"):
        await _refused(f, "POST", path, {**held, "status": "SUSPENDED", "commands": [
            {"type": "CREATE_PROMISE", "promiseName": "p", "idempotencyKey": "k",
             "idempotencyKeyTTL": ttl}]}, key=f.worker_token)  # fmt: skip
    assert (await f.events(activation["workflowExecutionId"]))[-1]["eventType"] == (
        "WORKFLOW_STARTED"
    )


async def test_null_never_skips_a_default_or_a_bound(flovyn: Flovyn) -> None:
    f = flovyn
    w = f.worker_token
    await _refused(f, "POST", "P/worker/register", {"name": None}, key=w)
    worker_id = await _worker(f)
    for field in ("timeoutMs", "maxItems", "queue", "kinds"):
        await _refused(f, "POST", "P/worker/workflows/poll",
                       {"workerId": worker_id, "kinds": ["hostile"], field: None}, key=w)  # fmt: skip
    activation = await _claim(f, worker_id)
    wf = activation["workflowExecutionId"]
    held = {"workerId": worker_id, "activationId": activation["activationId"]}
    path = f"P/worker/workflows/{wf}/submit"
    task_id = "0b0d3a5e-6b6f-4a3e-9a0e-6a1b7a0c1d2e"
    for command in (
        {"type": "SCHEDULE_TASK", "taskExecutionId": task_id, "kind": "k", "maxRetries": None},
        {"type": "START_TIMER", "timerId": "t", "durationMs": None},
    ):
        await _refused(f, "POST", path, {**held, "status": "SUSPENDED", "commands": [command]},
                       key=w)  # fmt: skip
    await _refused(f, "POST", path, {**held, "status": "SUSPENDED",
                   "eagerTasks": {"kinds": ["k"], "slots": None}}, key=w)  # fmt: skip
    await _refused(f, "POST", "P/worker/logs", {"entries": [
        {"taskExecutionId": task_id, "attempt": None, "message": "m"}]}, key=w)  # fmt: skip
    assert [e["eventType"] for e in await f.events(wf)] == ["WORKFLOW_STARTED"]


async def test_a_poll_with_null_max_items_claims_nothing(flovyn: Flovyn) -> None:
    f = flovyn
    worker_id = await _worker(f)
    for _ in range(5):
        await trigger(f, "hostile")
    await _refused(f, "POST", "P/worker/workflows/poll",
                   {"workerId": worker_id, "kinds": ["hostile"], "maxItems": None},
                   key=f.worker_token)  # fmt: skip
    pending = await f.ok("GET", "P/workflow-executions", params={"status": "PENDING"})
    assert pending["total"] == 5


@pytest.mark.parametrize("big", [INT4, BIG, 2**64])
async def test_integers_out_of_the_columns_range(flovyn: Flovyn, big: int) -> None:
    """Counters (INTEGER columns) stop at 2^31 - 1, durations at ten years."""
    f = flovyn
    w = f.worker_token
    await _refused(f, "POST", "P/worker/register", {"name": "w", "processId": big}, key=w)
    worker_id = await _worker(f)
    activation = await _claim(f, worker_id)
    wf = activation["workflowExecutionId"]
    path = f"P/worker/workflows/{wf}/submit"
    held = {"workerId": worker_id, "activationId": activation["activationId"]}
    await _refused(f, "POST", path, {"workerId": worker_id, "activationId": big,
                   "status": "SUSPENDED"}, key=w)  # fmt: skip
    await _refused(f, "POST", "P/worker/workflows/poll",
                   {"workerId": worker_id, "kinds": ["x"], "timeoutMs": big}, key=w)  # fmt: skip
    task_id = "0b0d3a5e-6b6f-4a3e-9a0e-6a1b7a0c1d2e"
    long = max(big, TEN_YEARS_MS + 1)
    for command in (
        {"type": "START_TIMER", "timerId": "t", "durationMs": long},
        {"type": "SCHEDULE_TASK", "taskExecutionId": task_id, "kind": "k", "timeoutMs": long},
        {"type": "SCHEDULE_TASK", "taskExecutionId": task_id, "kind": "k",
         "retryPolicy": {"initialIntervalMs": long}},
        {"type": "SCHEDULE_TASK", "taskExecutionId": task_id, "kind": "k",
         "retryPolicy": {"maxIntervalMs": long}},
        {"type": "CREATE_PROMISE", "promiseName": "p", "timeoutMs": long},
        {"type": "SCHEDULE_TASK", "taskExecutionId": task_id, "kind": "k", "maxRetries": big},
    ):  # fmt: skip
        await _refused(f, "POST", path, {**held, "status": "SUSPENDED", "commands": [command]},
                       key=w)  # fmt: skip
    for op in ("complete", "fail", "progress", "heartbeat"):
        await _refused(f, "POST", f"P/worker/tasks/{task_id}/{op}",
                       {"workerId": worker_id, "attempt": big, "error": "e", "progress": 0.1},
                       key=w)  # fmt: skip
    await _refused(f, "POST", "P/worker/logs", {"entries": [
        {"taskExecutionId": task_id, "attempt": big, "message": "m"}]}, key=w)  # fmt: skip
    await _refused(f, "GET", f"P/workflow-executions/{wf}/events",
                   params={"since_sequence": str(big)})  # fmt: skip
    await _refused(f, "GET", f"P/workflow-executions/{wf}/tasks/{task_id}/logs",
                   params={"attempt": str(big)})  # fmt: skip
    await _refused(f, "GET", "P/workflow-executions", params={"offset": str(big)})
    assert [e["eventType"] for e in await f.events(wf)] == ["WORKFLOW_STARTED"]


async def test_the_largest_values_that_fit_are_taken(flovyn: Flovyn) -> None:
    f = flovyn
    worker_id = await _worker(f, processId=INT4 - 1)
    activation = await _claim(f, worker_id)
    wf = activation["workflowExecutionId"]
    events = await f.ok("GET", f"P/workflow-executions/{wf}/events",
                        params={"since_sequence": str(INT4 - 1)})  # fmt: skip
    assert events == {"events": []}
    done = await f.ok("POST", f"P/worker/workflows/{wf}/submit", {
        "workerId": worker_id, "activationId": activation["activationId"], "status": "SUSPENDED",
        "commands": [{"type": "START_TIMER", "timerId": f"t-{wf}", "durationMs": TEN_YEARS_MS}]},
        key=f.worker_token)  # fmt: skip
    assert done["status"] == "WAITING"


async def test_register_with_mistyped_fields(flovyn: Flovyn) -> None:
    f = flovyn
    for body in (
        {"name": "w", "version": 7},
        {"name": "w", "hostName": 7},
        {"name": "w", "processId": "7"},
        {"name": "w", "queues": [""]},
        {"name": "w", "workflows": [{"kind": 7}]},
        {"name": "w", "tasks": [{"kind": "k", "retryPolicy": {"maxAttempts": 0}}]},
    ):
        await _refused(f, "POST", "P/worker/register", body, key=f.worker_token)
    workers = await f.ok("GET", "P/workers")
    assert workers["total"] == 0


async def test_a_bad_batch_operation_gets_its_own_400(flovyn: Flovyn) -> None:
    f = flovyn
    worker_id = await _worker(f)
    activation = await _claim(f, worker_id)
    wf = activation["workflowExecutionId"]
    good = {"type": "submit", "id": wf, "body": {
        "workerId": worker_id, "activationId": activation["activationId"], "status": "COMPLETED",
        "commands": [{"type": "COMPLETE_WORKFLOW", "output": 1}]}}  # fmt: skip
    answer = await f.ok("POST", "P/worker/batch", {"operations": [
        {"type": []}, {"type": {}}, 5, {"type": "submit", "id": "x", "body": {}}, good]},
        key=f.worker_token)  # fmt: skip
    statuses = [r["status"] for r in answer["results"]]
    assert statuses == [400, 400, 400, 400, 200], answer
    for result in answer["results"][:4]:
        assert_error(result["status"], result["body"], 400)
    assert (await wait_status(f, wf))["status"] == "COMPLETED"
    for bad in ({"operations": []}, {"operations": "x"}, {"operations": [{}] * 101}, {}):
        await _refused(f, "POST", "P/worker/batch", bad, key=f.worker_token)


async def test_an_overlong_url_is_one_warning_line(
    flovyn: Flovyn, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO):
        async with flovyn.session.get(
            f"{flovyn.url}/api/tenants/{flovyn.slug}/workflow-executions?kind={'x' * 9000}"
        ) as resp:
            assert resp.status == 400
    noisy = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert noisy == []
    assert any("malformed HTTP request" in r.getMessage() for r in caplog.records)


async def test_json_values_that_cannot_be_stored_are_refused(flovyn: Flovyn) -> None:
    """NaN, Infinity and 1e400 are not JSON; an integer beyond 64 bits cannot be stored
    (it would come back as another number)."""
    f = flovyn
    before = await f.ok("GET", "P/workflow-executions")
    ref = await trigger(f, "ok")
    trigger_path = "P/workflows/ok/trigger"
    for raw in (b'{"input": NaN}', b'{"input": {"a": Infinity}}', b'{"input": [-Infinity]}',
                b'{"input": 1e400}', b'{"input": 123456789012345678901234567890}',
                b'{"input": {"x": -9223372036854775809}}', b'{"input": 18446744073709551616}'):  # fmt: skip
        status, body = await f.call("POST", trigger_path, raw=raw)
        assert_error(status, body, 400)
    for body in (
        {"signalName": "s", "value": 2**70},
        {"signalName": "s", "value": {"deep": [2**64]}},
    ):
        await _refused(f, "POST", f"P/workflow-executions/{ref}/signal", body)
        await _refused(f, "POST", trigger_path, {"idempotencyKey": "sws", "signal": body})
    # The largest integers that fit, and strings that only look like the refused words.
    fits = {"big": 2**64 - 1, "small": -(2**63), "text": "NaN Infinity 1e400"}
    wf = await f.ok("POST", trigger_path, {"input": fits})
    assert (await f.ok("GET", f"P/workflow-executions/{wf['workflowExecutionId']}"))[
        "input"
    ] == fits
    after = await f.ok("GET", "P/workflow-executions")
    assert after["total"] == before["total"] + 2
    assert [e["eventType"] for e in await f.events(ref)] == ["WORKFLOW_STARTED"]


@task(name="huge-result", retry_policy=RetryPolicy(max_attempts=1))
async def huge_result(ctx: TaskContext, _: Any) -> int:
    return 2**70


@workflow(name="huge-flow")
async def huge_flow(ctx: WorkflowContext, _: Any) -> Any:
    return await ctx.schedule(huge_result, None)


async def test_a_result_json_cannot_hold_fails_the_task(flovyn: Flovyn) -> None:
    """The SDK fails the task with the reason instead of leaving it RUNNING."""
    f = flovyn
    async with f.worker([huge_flow], [huge_result]), f.client() as client:
        flow = await client.start_workflow(huge_flow, None)
        ended = await wait_status(f, flow.id, within=15)
    assert ended["status"] == "FAILED"
    (only,) = await f.tasks(flow.id)
    assert only["status"] == "FAILED" and "beyond 64 bits" in only["error"], only


async def test_errors_say_how_to_fix_the_request(flovyn: Flovyn) -> None:
    f = flovyn
    status, body = await f.call("GET", "P/workflow-executions/not-a-uuid")
    assert_error(status, body, 400)
    assert body["error"] == "id: must be a UUID (8-4-4-4-12 hexadecimal digits) (got 'not-a-uuid')"
    assert body["details"]["errors"][0]["field"] == "id"
    message = await _refused(f, "POST", "P/workflows/ok/trigger", {"queue": None})
    assert message == "queue: must not be null: leave the field out for its default"
    message = await _refused(f, "POST", "P/workflows/ok/trigger", {"qeueu": "x"})
    assert message.startswith("qeueu: Extra inputs are not permitted"), message
    status, body = await f.call("POST", "/api/tenants", {}, key="test-admin-key")
    assert_error(status, body, 400)
    assert body["error"] == "name: Field required (and 1 more: see details.errors)"
    assert [e["field"] for e in body["details"]["errors"]] == ["name", "slug"]
    async with f.session.delete(f"{f.url}/api/tenants") as resp:
        assert resp.status == 405
        assert resp.headers["Allow"] == "POST"
