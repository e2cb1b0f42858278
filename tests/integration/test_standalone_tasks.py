"""Standalone tasks on both stores: a task with no workflow runs on a real worker with
retries, attempts and logs; it can be cancelled while PENDING; lists, its stream, the
SDK's handle, idempotency, and bad input (a clear 400, nothing created)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from flovyn_worker import (
    FlovynApiError,
    RetryPolicy,
    TaskContext,
    TaskFailed,
    WorkflowContext,
    task,
    workflow,
)
from tests.integration.conftest import Flovyn
from tests.integration.helpers import assert_error, trigger, wait_status

FAST = RetryPolicy(initial_interval=timedelta(milliseconds=50))


@task(name="sa-flaky", retry_policy=FAST)
async def flaky(ctx: TaskContext, data: dict[str, Any]) -> dict[str, Any]:
    ctx.logger.info("attempt %d for %s", ctx.attempt, data["n"])
    await ctx.report_progress(0.5, "half")
    if ctx.attempt < 2:
        raise RuntimeError("not yet")
    return {"doubled": data["n"] * 2}


@task(name="sa-broken", retry_policy=FAST)
async def broken(ctx: TaskContext, data: Any) -> None:
    raise RuntimeError(f"broken {ctx.attempt}")


@workflow(name="sa-parent")
async def parent(ctx: WorkflowContext, data: Any) -> Any:
    return await ctx.schedule(flaky, {"n": 1})


async def test_a_task_without_workflow_runs_retries_and_logs(flovyn: Flovyn) -> None:
    f = flovyn
    async with f.worker([], [flaky]), f.client() as client:
        handle = await client.start_task("sa-flaky", {"n": 21}, max_retries=2)
        assert handle.created and handle.task["workflowExecutionId"] is None
        assert handle.task["maxRetries"] == 2 and handle.task["status"] in ("PENDING", "RUNNING")
        assert await handle.result(timeout=20) == {"doubled": 42}
        got = await f.ok("GET", f"P/tasks/{handle.id}")
        assert got["status"] == "COMPLETED" and got["executionCount"] == 2
        attempts = (await f.ok("GET", f"P/tasks/{handle.id}/attempts"))["attempts"]
        assert [a["status"] for a in attempts] == ["FAILED", "COMPLETED"]
        assert attempts[0]["error"] and "not yet" in attempts[0]["error"]
        logs = await f.ok("GET", f"P/tasks/{handle.id}/logs", params={"attempt": "2"})
        assert [line["message"] for line in logs["logs"]] == ["attempt 2 for 21"]
        # Its stream, replayed: the whole life, then end.
        events = [e async for e in client.stream_task(handle.id)]
        names = [e.event for e in events]
        assert names[0] == "task_created" and names[-1] == "end"
        for expected in ("task_started", "task_failed", "task_retry", "task_log", "task_completed"):
            assert expected in names, names
        assert events[-1].data["status"] == "COMPLETED"
        assert events[-1].data["taskExecutionId"] == handle.id
        # Resumed after its completion: only the end.
        completed = next(e for e in events if e.event == "task_completed")
        again = [e.event async for e in client.stream_task(handle.id, last_event_id=completed.id)]
        assert again == ["end"]


async def test_retries_run_out_and_the_handle_says_so(flovyn: Flovyn) -> None:
    f = flovyn
    async with f.worker([], [broken]), f.client() as client:
        handle = await client.start_task("sa-broken", None, max_retries=1)
        with pytest.raises(TaskFailed) as caught:
            await handle.result(timeout=20)
        assert "broken 2" in caught.value.error and not caught.value.cancelled
        attempts = await client.standalone_task_attempts(handle.id)
        assert [a["status"] for a in attempts["attempts"]] == ["FAILED", "FAILED"]


async def test_cancel_a_pending_task_only(flovyn: Flovyn) -> None:
    f = flovyn
    async with f.client() as client:
        handle = await client.start_task("sa-nobody-runs-this", {"x": 1})  # no worker
        status, body = await f.call("DELETE", f"P/tasks/{handle.id}")
        assert status == 204 and body is None
        assert (await client.get_task(handle.id))["status"] == "CANCELLED"
        status, body = await f.call("DELETE", f"P/tasks/{handle.id}")
        assert_error(status, body, 409)
        assert "only a PENDING task" in body["error"]
        with pytest.raises(TaskFailed) as caught:
            await handle.result(timeout=10)
        assert caught.value.cancelled
        events = [e.event async for e in client.stream_task(handle.id)]
        assert events == ["task_created", "task_cancelled", "end"]
    # A workflow's task: not a standalone one.
    async with f.worker([parent], [flaky]):
        wf_id = await trigger(f, "sa-parent")
        await wait_status(f, wf_id, "COMPLETED")
        (wf_task,) = await f.tasks(wf_id)
        status, body = await f.call("GET", f"P/tasks/{wf_task['id']}")
        assert_error(status, body, 404)
        status, body = await f.call("DELETE", f"P/tasks/{wf_task['id']}")
        assert_error(status, body, 400)
        assert "cancel the workflow" in body["error"]
        status, body = await f.call("GET", f"P/stream/tasks/{wf_task['id']}")
        assert_error(status, body, 404)


async def test_lists_filters_cursor_and_idempotency(flovyn: Flovyn) -> None:
    f = flovyn
    async with f.client() as client:
        made = [
            (
                await client.create_task(
                    f"sa-kind-{n % 2}", {"n": n}, queue="bulk" if n < 2 else None
                )
            )[0]
            for n in range(5)
        ]
        await client.cancel_task(made[4]["id"])
        walked = [t["id"] async for t in client.list_tasks(page_size=2)]
        newest_first = sorted(made, key=lambda t: (t["createdAt"], t["id"]), reverse=True)
        assert walked == [t["id"] for t in newest_first]  # each once (ties: by id)
        kind0 = [t["id"] async for t in client.list_tasks(kind="sa-kind-0")]
        assert set(kind0) == {made[0]["id"], made[2]["id"], made[4]["id"]}
        alias = await f.ok("GET", "P/tasks", params={"task_type": "sa-kind-1"})
        assert {t["id"] for t in alias["tasks"]} == {made[1]["id"], made[3]["id"]}
        bulk = await client.task_page(queue="bulk")
        assert {t["id"] for t in bulk["tasks"]} == {made[0]["id"], made[1]["id"]}
        assert bulk["total"] == 2 and not bulk["totalIsEstimate"]
        both = await client.task_page(status=["cancelled", "PENDING"], kind="sa-kind-0")
        assert [t["status"] for t in both["tasks"]] == ["CANCELLED", "PENDING", "PENDING"]
        # A workflow's tasks are not in it.
        await trigger(f, "sa-parent")
        assert all([t["workflowExecutionId"] is None async for t in client.list_tasks()])
        # Idempotency: the same key answers the same task (200), until it failed or was
        # cancelled.
        first, created = await client.create_task("sa-kind-0", idempotency_key="k-1")
        again, created_again = await client.create_task("sa-kind-0", idempotency_key="k-1")
        assert created and not created_again and again["id"] == first["id"]
        await client.cancel_task(first["id"])
        fresh, created_fresh = await client.create_task("sa-kind-0", idempotency_key="k-1")
        assert created_fresh and fresh["id"] != first["id"]


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"kind": ""},
        {"kind": "x" * 257},
        {"kind": "a\u0000b"},
        {"kind": "k", "maxRetries": 11},
        {"kind": "k", "maxRetries": -1},
        {"kind": "k", "maxRetries": "3"},
        {"kind": "k", "timeoutMs": 0},
        {"kind": "k", "queue": "no spaces"},
        {"kind": "k", "idempotencyKeyTTL": "forever"},
        {"kind": "k", "metadata": {"a": 1}},
        {"kind": "k", "qeueu": "typo"},
    ],
)
async def test_bad_input_is_refused_and_creates_nothing(
    flovyn: Flovyn, body: dict[str, Any]
) -> None:
    f = flovyn
    status, answer = await f.call("POST", "P/tasks", body)
    assert_error(status, answer, 400)
    assert (await f.ok("GET", "P/tasks"))["tasks"] == []
    for params in ({"status": "DONE"}, {"limit": "0"}, {"cursor": "nonsense"}, {"queue": "a b"}):
        status, answer = await f.call("GET", "P/tasks", params=params)
        assert_error(status, answer, 400)
    status, answer = await f.call("GET", "P/tasks/not-a-uuid")
    assert_error(status, answer, 400)
    status, answer = await f.call("GET", "P/tasks/0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9")
    assert_error(status, answer, 404)


async def test_the_sdk_raises_for_an_unknown_task(flovyn: Flovyn) -> None:
    async with flovyn.client() as client:
        with pytest.raises(FlovynApiError) as caught:
            await client.get_task("0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9")
        assert caught.value.status == 404
