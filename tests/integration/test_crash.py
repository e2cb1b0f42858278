"""Crashes: a worker killed in the middle of a task, a server killed with work in flight."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import aiohttp

from flovyn_worker import TaskContext, WorkflowContext, task, workflow
from tests.integration import crash_worker
from tests.integration.conftest import Flovyn, new_tenant
from tests.integration.helpers import (
    ONE_TASK_HISTORY,
    assert_gapless,
    attempts,
    diagnose,
    event_types,
    execution,
    ms_between,
    trigger,
    wait_for,
    wait_status,
    workflow_total,
)
from tests.serverproc import ServerProcess, WorkerProcess

# --- a worker dies with SIGKILL in the middle of a task -----------------------------------


async def test_task_of_a_killed_worker_is_retried_by_another(
    flovyn: Flovyn, tmp_path: Path
) -> None:
    markers = tmp_path / "markers"
    markers.mkdir()
    spec = {"markerDir": str(markers), "hangAttempts": [1]}
    doomed = WorkerProcess(
        Path(crash_worker.__file__),
        [flovyn.url, flovyn.slug, flovyn.worker_token],
        log_dir=tmp_path / "worker-logs",
    )
    with doomed:
        await asyncio.to_thread(doomed.wait_for_log, r"worker \S+ serving", 20.0)
        wf_id = await trigger(flovyn, "survives-worker-crash", {"input": spec})

        async def started() -> bool:
            return (markers / "attempt-1").exists()

        await wait_for(started, what="attempt 1 to start in the worker process")
        task_id = (await flovyn.tasks(wf_id))[0]["id"]
        running = await attempts(flovyn, wf_id, task_id)
        assert [a["status"] for a in running] == ["RUNNING"]
        assert (markers / "attempt-1").read_text().strip() == str(doomed.pid)
        assert doomed.kill() == -9

    # A second worker; it gets the task once the dead one is past the liveness window.
    async with flovyn.worker(crash_worker.WORKFLOWS, crash_worker.TASKS) as rescuer:
        try:
            row = await wait_status(flovyn, wf_id, within=30)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{await diagnose(flovyn, wf_id)}") from None
    assert row["status"] == "COMPLETED", row
    assert row["output"]["attempt"] == 2
    assert row["output"]["pid"] != doomed.pid

    tried = await attempts(flovyn, wf_id, task_id)
    assert [a["status"] for a in tried] == ["TIMEOUT", "COMPLETED"]
    assert tried[0]["workerId"] == running[0]["workerId"]
    assert tried[0]["workerId"] != rescuer.worker_id
    assert tried[0]["error"]
    assert tried[0]["finishedAt"] is not None and tried[0]["durationMs"] >= 0
    assert tried[1]["workerId"] == rescuer.worker_id
    assert ms_between(tried[0]["finishedAt"], tried[1]["startedAt"]) >= 0
    assert event_types(await flovyn.events(wf_id)) == ONE_TASK_HISTORY


# --- the server dies with SIGKILL while 200 workflows are in flight -----------------------

WORKFLOW_COUNT = 200

# (taskExecutionId, attempt) -> (start, end) of each run of a task body, in this process.
_runs: dict[tuple[str, int], list[tuple[float, float]]] = defaultdict(list)


@task(name="add-one")
async def add_one(ctx: TaskContext, n: int) -> int:
    start = time.monotonic()
    await asyncio.sleep(0.02)
    _runs[(ctx.task_execution_id, ctx.attempt)].append((start, time.monotonic()))
    return n + 1


@workflow(name="add-two")
async def add_two(ctx: WorkflowContext, n: int) -> int:
    once = await ctx.schedule(add_one, n)
    return int(await ctx.schedule(add_one, once))


async def test_server_killed_with_work_in_flight_loses_and_doubles_nothing(
    server: ServerProcess,
) -> None:
    _runs.clear()
    # No keep-alive: the test's own connections must not outlive the killed server.
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(connector=connector) as session:
        f = Flovyn(server.url, session)
        f.slug, f.api_key, f.worker_token = await new_tenant(f)
        async with f.worker([add_two], [add_one], poll_timeout=2.0, max_concurrent_tasks=20):
            ids: list[str] = []
            for start in range(0, WORKFLOW_COUNT, 25):
                ids += await asyncio.gather(
                    *(trigger(f, "add-two", {"input": n}) for n in range(start, start + 25))
                )

            async def some_done() -> bool:
                return await workflow_total(f, "COMPLETED") >= 10

            await wait_for(some_done, within=60, what="the first workflows to complete")
            server.kill()
            done_at_kill = _completed_runs()
            await asyncio.to_thread(server.start)

            async def all_done() -> bool:
                return await workflow_total(f, "COMPLETED") == WORKFLOW_COUNT

            try:
                await wait_for(all_done, within=90, interval=0.2, what="all workflows to complete")
            except AssertionError:
                stuck = await f.ok(
                    "GET", "P/workflow-executions",
                    params={"status": "PENDING,RUNNING,WAITING,FAILED", "limit": 5},
                )  # fmt: skip
                raise AssertionError(
                    f"not all completed; some of the others: {stuck}\n{server.log_tail()}"
                ) from None
    assert done_at_kill < 2 * WORKFLOW_COUNT, "the kill came after all the work was done"
    async with aiohttp.ClientSession() as session:
        f.session = session
        await _check_histories_and_attempts(f, ids)


def _completed_runs() -> int:
    return sum(len(v) for v in _runs.values())


async def _check_histories_and_attempts(f: Flovyn, ids: list[str]) -> None:
    limit = asyncio.Semaphore(50)

    async def one(n: int, wf_id: str) -> list[dict[str, Any]]:
        async with limit:
            row = await execution(f, wf_id)
            assert (row["status"], row["output"]) == ("COMPLETED", n + 2), row
            events = await f.events(wf_id)
            assert event_types(events) == [
                "WORKFLOW_STARTED",
                "TASK_SCHEDULED",
                "TASK_COMPLETED",
                "TASK_SCHEDULED",
                "TASK_COMPLETED",
                "WORKFLOW_COMPLETED",
            ], (wf_id, events)
            assert_gapless(events)
            assert row["currentSequence"] == 6
            tasks = await f.tasks(wf_id)
            assert [t["status"] for t in tasks] == ["COMPLETED", "COMPLETED"], tasks
            assert [t["output"] for t in tasks] == [n + 1, n + 2]
            found = []
            for t in tasks:
                tried = await attempts(f, wf_id, t["id"])
                found.append({"task": t, "attempts": tried})
            return found

    results = await asyncio.gather(*(one(n, wf_id) for n, wf_id in enumerate(ids)))
    per_task = [entry for found in results for entry in found]
    assert len(per_task) == 2 * WORKFLOW_COUNT
    retried = 0
    for entry in per_task:
        task_id, tried = entry["task"]["id"], entry["attempts"]
        assert [a["attempt"] for a in tried] == list(range(1, len(tried) + 1)), tried
        statuses = [a["status"] for a in tried]
        assert statuses.count("COMPLETED") == 1 and statuses[-1] == "COMPLETED", tried
        assert all(a["finishedAt"] is not None for a in tried), tried
        # Attempts of one task never overlap: each one ends before the next starts.
        for earlier, later in itertools.pairwise(tried):
            assert ms_between(earlier["finishedAt"], later["startedAt"]) >= 0, tried
        retried += len(tried) > 1
        # And the bodies this worker ran for it never ran twice at once.
        runs = sorted(span for (tid, _), spans in _runs.items() if tid == task_id for span in spans)
        assert runs, f"task {task_id} completed but no body run was recorded"
        for (_, end), (start, _) in itertools.pairwise(runs):
            assert end <= start, (task_id, runs)
    assert all(len(spans) == 1 for spans in _runs.values()), {
        k: v for k, v in _runs.items() if len(v) > 1
    }
