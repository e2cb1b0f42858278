"""Competing workers: one task or activation is never held by two of them at once."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from typing import Any

from flovyn_worker import TaskContext, WorkflowContext, task, workflow
from tests.integration.conftest import Flovyn
from tests.integration.helpers import (
    assert_gapless,
    execution,
    trigger,
    wait_for,
    workflow_total,
)

# --- two SDK workers on one queue ---------------------------------------------------------

WORKFLOWS = 40
FAN_OUT = 5

# Every (taskExecutionId, attempt) a task body ran for, in this process (both workers).
_ran: list[tuple[str, int]] = []


@task(name="count-me")
async def count_me(ctx: TaskContext, n: int) -> int:
    _ran.append((ctx.task_execution_id, ctx.attempt))
    await asyncio.sleep(0.005)
    return n * 10


@workflow(name="fan-five")
async def fan_five(ctx: WorkflowContext, base: int) -> list[int]:
    return list(
        await asyncio.gather(*(ctx.schedule_async(count_me, base + i) for i in range(FAN_OUT)))
    )


async def test_two_workers_never_run_one_task_twice(flovyn: Flovyn) -> None:
    _ran.clear()
    limits = {"max_concurrent_tasks": 4, "max_concurrent_workflows": 4}
    async with (
        flovyn.worker([fan_five], [count_me], name="competitor-1", **limits),
        flovyn.worker([fan_five], [count_me], name="competitor-2", **limits),
    ):
        ids = await asyncio.gather(
            *(trigger(flovyn, "fan-five", {"input": 100 * n}) for n in range(WORKFLOWS))
        )

        async def all_done() -> bool:
            return await workflow_total(flovyn, "COMPLETED") == WORKFLOWS

        await wait_for(all_done, within=60, interval=0.1, what="all workflows to complete")

    duplicates = [key for key, seen in Counter(_ran).items() if seen > 1]
    assert duplicates == []
    assert len(_ran) == WORKFLOWS * FAN_OUT
    ran_ids = {task_id for task_id, _ in _ran}
    for n, wf_id in enumerate(ids):
        row = await execution(flovyn, wf_id)
        assert row["output"] == [10 * (100 * n + i) for i in range(FAN_OUT)]
        tasks = await flovyn.tasks(wf_id)
        assert len(tasks) == FAN_OUT
        for t in tasks:
            assert (t["status"], t["executionCount"]) == ("COMPLETED", 1), t
            assert t["id"] in ran_ids
        events = await flovyn.events(wf_id)
        assert_gapless(events)
        assert Counter(e["eventType"] for e in events) == {
            "WORKFLOW_STARTED": 1,
            "TASK_SCHEDULED": FAN_OUT,
            "TASK_COMPLETED": FAN_OUT,
            "WORKFLOW_COMPLETED": 1,
        }


# --- the raw protocol: concurrent polls from two worker ids -------------------------------

RAW_WORKFLOWS = 60
TASKS_EACH = 3
POLLERS_PER_WORKER = 3


async def _register(f: Flovyn, name: str) -> str:
    answer = await f.ok(
        "POST", "P/worker/register",
        {"name": name, "queues": ["default"], "workflows": ["raw-flow"], "tasks": ["raw-step"]},
        key=f.worker_token,
    )  # fmt: skip
    return str(answer["workerId"])


async def _poll_until(
    f: Flovyn,
    what: str,
    kinds: list[str],
    worker_ids: list[str],
    expected: int,
    feed: Any,
) -> list[tuple[str, dict[str, Any]]]:
    """Run pollers of every worker at once (while `feed` creates the work) until
    `expected` items were handed out; every (worker id, item) handed out."""
    got: list[tuple[str, dict[str, Any]]] = []
    field = "activations" if what == "workflows" else "tasks"

    async def poller(worker_id: str, max_items: int) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60
        while len(got) < expected and loop.time() < deadline:
            answer = await f.ok(
                "POST", f"P/worker/{what}/poll",
                {"workerId": worker_id, "queue": "default", "kinds": kinds,
                 "maxItems": max_items, "timeoutMs": 300},
                key=f.worker_token,
            )  # fmt: skip
            got.extend((worker_id, item) for item in answer[field])

    pollers = [
        poller(worker_id, max_items=2 + i)
        for worker_id in worker_ids
        for i in range(POLLERS_PER_WORKER)
    ]
    await asyncio.gather(feed(), *pollers)
    return got


async def test_concurrent_raw_polls_hand_out_each_item_once(flovyn: Flovyn) -> None:
    workers = [await _register(flovyn, "raw-1"), await _register(flovyn, "raw-2")]

    async def trigger_all() -> None:
        for start in range(0, RAW_WORKFLOWS, 10):
            await asyncio.gather(
                *(trigger(flovyn, "raw-flow", {"input": n}) for n in range(start, start + 10))
            )

    claimed = await _poll_until(
        flovyn, "workflows", ["raw-flow"], workers, RAW_WORKFLOWS, trigger_all
    )
    wf_ids = [item["workflowExecutionId"] for _, item in claimed]
    assert sorted(Counter(wf_ids).values()) == [1] * RAW_WORKFLOWS, Counter(wf_ids)
    assert len(set(wf_ids)) == RAW_WORKFLOWS == await workflow_total(flovyn)
    for worker_id, item in claimed:
        row = await execution(flovyn, item["workflowExecutionId"])
        assert (row["status"], row["workerId"]) == ("RUNNING", worker_id)

    scheduled: list[str] = []

    async def submit_all() -> None:
        async def submit(worker_id: str, item: dict[str, Any]) -> None:
            ids = [str(uuid.uuid4()) for _ in range(TASKS_EACH)]
            scheduled.extend(ids)
            answer = await flovyn.ok(
                "POST", f"P/worker/workflows/{item['workflowExecutionId']}/submit",
                {"workerId": worker_id, "activationId": item["activationId"],
                 "status": "SUSPENDED",
                 "commands": [{"type": "SCHEDULE_TASK", "taskExecutionId": task_id,
                               "kind": "raw-step", "input": i}
                              for i, task_id in enumerate(ids)]},
                key=flovyn.worker_token,
            )  # fmt: skip
            assert answer["status"] == "WAITING"

        for start in range(0, len(claimed), 10):
            await asyncio.gather(*(submit(w, item) for w, item in claimed[start : start + 10]))

    expected_tasks = RAW_WORKFLOWS * TASKS_EACH
    handed = await _poll_until(flovyn, "tasks", ["raw-step"], workers, expected_tasks, submit_all)
    task_ids = [item["taskExecutionId"] for _, item in handed]
    assert sorted(Counter(task_ids).values()) == [1] * expected_tasks, Counter(task_ids)
    assert set(task_ids) == set(scheduled)
    assert {item["attempt"] for _, item in handed} == {1}
    # The server agrees: one RUNNING attempt per task, by the worker it was handed to.
    by_task = {item["taskExecutionId"]: worker_id for worker_id, item in handed}
    for wf_id in set(wf_ids):
        for t in await flovyn.tasks(wf_id):
            assert (t["status"], t["executionCount"]) == ("RUNNING", 1), t
            assert t["workerId"] == by_task[t["id"]]
