"""The consolidated stream, the task stream and the tenant feed, on both stores, through
the SDK's stream readers: replay, live delivery, resume with Last-Event-ID, end."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta
from typing import Any

import pytest

from flovyn_worker import RetryPolicy, TaskContext, WorkflowContext, task, workflow
from flovyn_worker.errors import FlovynApiError
from flovyn_worker.sse import StreamEvent
from tests.integration.conftest import Flovyn
from tests.integration.helpers import trigger

WITHIN = 30.0


async def collect(events: Any, *, until: str = "end", within: float = WITHIN) -> list[StreamEvent]:
    """Every event of an SDK stream up to and including the first named `until`."""
    got: list[StreamEvent] = []

    async def read() -> None:
        async with contextlib.aclosing(events) as stream:
            async for event in stream:
                got.append(event)
                if event.event == until:
                    return

    await asyncio.wait_for(read(), within)
    return got


def assert_positions(events: list[StreamEvent]) -> None:
    ids = [int(e.id or "") for e in events]
    assert ids == sorted(set(ids)), ids


# --- consolidated: three levels ------------------------------------------------------------


@workflow(name="tree-node")
async def node(ctx: WorkflowContext, depth: int) -> int:
    if depth == 0:
        return 1
    below = await ctx.schedule_workflow(node, depth - 1, name=f"level-{depth - 1}")
    return below + 1


async def test_consolidated_stream_over_three_levels(flovyn: Flovyn) -> None:
    f = flovyn
    async with f.worker([node]), f.client() as client:
        handle = await client.start_workflow(node, 2)
        live = asyncio.create_task(collect(client.stream_consolidated(handle.id)))
        assert await handle.result(timeout=WITHIN) == 3
        got = await live
        *events, end = got
        assert (end.event, end.data["workflowExecutionId"], end.data["status"]) == (
            "end", handle.id, "COMPLETED",
        )  # fmt: skip
        assert_positions(events)
        # Every event of the three histories, each once, each naming its execution.
        child = next(
            e.data["data"]["childWorkflowExecutionId"]
            for e in events
            if e.event == "CHILD_WORKFLOW_INITIATED" and e.data["workflowExecutionId"] == handle.id
        )
        grandchild = next(
            e.data["data"]["childWorkflowExecutionId"]
            for e in events
            if e.event == "CHILD_WORKFLOW_INITIATED" and e.data["workflowExecutionId"] == child
        )
        for execution in (handle.id, child, grandchild):
            history = await f.events(execution)
            mine = [e for e in events if e.data["workflowExecutionId"] == execution]
            assert [(e.event, e.data["sequence"]) for e in mine] == [
                (h["eventType"], h["sequence"]) for h in history
            ]
        assert len(events) == sum([len(await f.events(x)) for x in (handle.id, child, grandchild)])
        # A replay after the end is the same stream; a resume from the middle is its rest.
        replay = await collect(client.stream_consolidated(handle.id))
        assert [(e.id, e.event) for e in replay[:-1]] == [(e.id, e.event) for e in events]
        cut = len(events) // 2
        rest = await collect(client.stream_consolidated(handle.id, last_event_id=events[cut].id))
        assert [e.id for e in rest[:-1]] == [e.id for e in events[cut + 1 :]]


# --- the task stream: fails twice, then succeeds, with logs and progress --------------------


@task(
    name="stream-flaky",
    retry_policy=RetryPolicy(
        max_attempts=4, initial_interval=timedelta(milliseconds=100), backoff_coefficient=1.0
    ),
)
async def flaky(ctx: TaskContext, item: str) -> dict[str, Any]:
    ctx.logger.info("processing %s in attempt %d", item, ctx.attempt)
    await ctx.report_progress(0.5, {"step": ctx.attempt})
    if ctx.attempt < 3:
        raise RuntimeError(f"glitch #{ctx.attempt}")
    await ctx.stream_token("done")
    return {"item": item}


@workflow(name="stream-flaky-flow")
async def flaky_flow(ctx: WorkflowContext, item: str) -> Any:
    return await ctx.schedule(flaky, item)


async def test_task_stream_of_a_task_that_fails_twice_then_succeeds(flovyn: Flovyn) -> None:
    f = flovyn
    async with f.worker([flaky_flow], [flaky]), f.client() as client:
        handle = await client.start_workflow(flaky_flow, "order-9")
        live = asyncio.create_task(collect(client.stream_tasks(handle.id)))
        assert await handle.result(timeout=WITHIN) == {"item": "order-9"}
        got = await live
    *events, end = got
    assert (end.event, end.data["status"]) == ("end", "COMPLETED")
    assert_positions(events)
    # In commit order: the worker sends an attempt's log lines in a batch before its end,
    # after the progress report it made in between.
    per_attempt = [
        "task_started", "task_progress", "task_log", "task_failed", "task_retry",
    ]  # fmt: skip
    assert [e.event for e in events] == [
        "task_created", *per_attempt, *per_attempt,
        "task_started", "task_progress", "task_log", "task_completed",
    ]  # fmt: skip
    task_id = events[0].data["taskExecutionId"]
    for e in events:
        assert e.data["type"] == e.event
        assert (e.data["workflowExecutionId"], e.data["taskExecutionId"]) == (handle.id, task_id)
    failed = [e.data for e in events if e.event == "task_failed"]
    assert [(d["attempt"], d["status"]) for d in failed] == [(1, "PENDING"), (2, "PENDING")]
    assert "glitch #1" in failed[0]["error"] and "glitch #2" in failed[1]["error"]
    retries = [e.data for e in events if e.event == "task_retry"]
    assert all(d["retryAt"] and d["status"] == "PENDING" for d in retries)
    logs = [e.data for e in events if e.event == "task_log"]
    assert [(d["attempt"], d["level"], d["message"]) for d in logs] == [
        (n, "INFO", f"processing order-9 in attempt {n}") for n in (1, 2, 3)
    ]
    progress = [e.data for e in events if e.event == "task_progress"]
    assert [(d["attempt"], d["progress"], d["details"]) for d in progress] == [
        (n, 0.5, {"step": n}) for n in (1, 2, 3)
    ]
    done = events[-1].data
    assert (done["status"], done["attempt"], done["output"]) == (
        "COMPLETED",
        3,
        {"item": "order-9"},
    )
    # Resume from each point: exactly the rest, no repeat.
    async with f.client() as client:
        for cut in (0, 4, len(events) - 2):
            rest = await collect(client.stream_tasks(handle.id, last_event_id=events[cut].id))
            assert [e.id for e in rest[:-1]] == [e.id for e in events[cut + 1 :]]
    # The workflow stream carries the progress reports too, among the history.
    async with f.client() as client:
        workflow_events = await collect(client.stream_workflow(handle.id))
    assert [e.data["progress"] for e in workflow_events if e.event == "task_progress"] == [0.5] * 3
    streamed = [e.data for e in workflow_events if e.event == "task_stream"]
    assert [(d["taskExecutionId"], d["attempt"], d["streamType"], d["data"]) for d in streamed] == [
        (task_id, 3, "token", "done")
    ]
    assert_positions(workflow_events[:-1])


async def test_task_stream_errors(flovyn: Flovyn) -> None:
    f = flovyn
    ref = await trigger(f, "nobody-runs-this")
    async with f.client() as client:
        with pytest.raises(FlovynApiError) as unknown:
            await collect(client.stream_tasks("00000000-0000-4000-8000-000000000000"))
        assert unknown.value.status == 404
        with pytest.raises(FlovynApiError) as bad:
            await collect(client.stream_tasks(ref, last_event_id="12-x"))  # a feed id
        assert bad.value.status == 400
    url = f"{f.url}/api/tenants/{f.slug}/workflow-executions/{ref}/tasks/stream"
    async with f.session.get(url) as resp:
        assert resp.status == 401


# --- the tenant feed -----------------------------------------------------------------------


@workflow(name="feed-quick")
async def quick(ctx: WorkflowContext, n: int) -> int:
    return n * 2


async def test_tenant_feed(flovyn: Flovyn) -> None:
    f = flovyn
    async with f.client() as client:
        feed = client.stream_feed()
        seen: list[StreamEvent] = []

        async def follow() -> None:
            async for event in feed:
                seen.append(event)

        reader = asyncio.create_task(follow())
        await asyncio.sleep(0.3)  # connected: the feed starts at the present
        async with f.worker([quick]):
            handles = [await client.start_workflow(quick, n) for n in range(5)]
            for h in handles:
                await h.result(timeout=WITHIN)
            ids = {h.id for h in handles}

            def final(execution_id: str) -> str | None:
                mine = [e for e in seen if e.data["workflowExecutionId"] == execution_id]
                return mine[-1].data["workflow"]["status"] if mine else None

            for _ in range(200):
                if all(final(i) == "COMPLETED" for i in ids):
                    break
                await asyncio.sleep(0.05)
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
        await feed.aclose()
    assert all(final(i) == "COMPLETED" for i in ids)
    assert_positions_feed(seen)
    for execution_id in ids:
        mine = [e for e in seen if e.data["workflowExecutionId"] == execution_id]
        assert mine[0].event == "workflow_created"  # it was new to this client
        assert all(e.event == "workflow_status" for e in mine[1:])
        assert mine[0].data["workflow"]["kind"] == "feed-quick"
    # Resume from the first event: each execution again, in its last state, and nothing
    # at or before that event.
    async with f.client() as client:
        rest: list[StreamEvent] = []
        async with contextlib.aclosing(client.stream_feed(last_event_id=seen[0].id)) as again:
            async for event in again:
                rest.append(event)
                done = {e.data["workflowExecutionId"] for e in rest
                        if e.data["workflow"]["status"] == "COMPLETED"}  # fmt: skip
                if done >= ids:
                    break
    assert_positions_feed(seen[:1] + rest)


def assert_positions_feed(events: list[StreamEvent]) -> None:
    """Feed ids are `<position>-<execution id>`, growing in that order."""
    keys = []
    for e in events:
        pos, _, execution_id = (e.id or "").partition("-")
        assert execution_id == e.data["workflowExecutionId"]
        keys.append((int(pos), execution_id))
    assert keys == sorted(set(keys))
