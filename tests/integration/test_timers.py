"""Durable timers: a sleep wakes on time, survives a server crash, and races a task."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import aiohttp

from flovyn_worker import TaskContext, WorkflowContext, task, workflow
from tests.integration.conftest import Flovyn, new_tenant
from tests.integration.helpers import (
    ONE_TIMER_HISTORY,
    assert_gapless,
    event_types,
    of_type,
    wait_event,
    wait_for,
    wait_status,
)
from tests.serverproc import ServerProcess


@workflow(name="timers-sleep")
async def sleeper(ctx: WorkflowContext, seconds: float) -> str:
    await ctx.sleep(seconds)
    return "awake"


async def test_one_second_sleep_takes_one_to_three_seconds(flovyn: Flovyn) -> None:
    async with flovyn.worker([sleeper]), flovyn.client() as client:
        started = time.monotonic()
        handle = await client.start_workflow(sleeper, 1.0)
        assert await handle.result(timeout=10) == "awake"
        elapsed = time.monotonic() - started
    assert 1.0 <= elapsed <= 3.0, elapsed
    events = await flovyn.events(handle.id)
    assert event_types(events) == ONE_TIMER_HISTORY
    assert_gapless(events)
    started_event, fired_event = events[1], events[2]
    assert started_event["data"]["durationMs"] == 1000
    assert fired_event["data"]["timerId"] == started_event["data"]["timerId"]


async def test_sleep_survives_a_server_crash(database_url: str, tmp_path: Path) -> None:
    """SIGKILL the server while a workflow sleeps; the timer falls due while it is down.

    After a restart on the same database the timer fires (once) and the workflow ends.
    """
    server = ServerProcess(database_url, tmp_path / "server")
    await asyncio.to_thread(server.start)
    try:
        async with aiohttp.ClientSession() as session:
            f = Flovyn(server.url, session)
            f.slug, f.api_key, f.worker_token = await new_tenant(f)
            async with f.worker([sleeper], poll_timeout=1.0), f.client() as client:
                handle = await client.start_workflow(sleeper, 1.5)
                await wait_event(f, handle.id, "TIMER_STARTED")
                await wait_status(f, handle.id, "WAITING")
                killed_at = time.monotonic()
                await asyncio.to_thread(server.kill)
                # stay down past the timer's fireAt
                await asyncio.sleep(max(0.0, 2.5 - (time.monotonic() - killed_at)))
                assert not server.alive
                await asyncio.to_thread(server.start)
                assert await handle.result(timeout=20) == "awake"
            events = await f.events(handle.id)
    finally:
        await asyncio.to_thread(server.stop)
    assert event_types(events) == ONE_TIMER_HISTORY
    assert_gapless(events)


# -- a task raced against a timer ------------------------------------------------------


@task(name="timers-slow-echo")
async def slow_echo(ctx: TaskContext, spec: dict[str, Any]) -> str:
    await asyncio.sleep(spec["delay"])
    return str(spec["value"])


@workflow(name="timers-race")
async def race(ctx: WorkflowContext, spec: dict[str, Any]) -> dict[str, Any]:
    work = ctx.schedule_async(slow_echo, {"delay": spec["taskDelay"], "value": "done"})
    timer = ctx.sleep_async(spec["timeout"])
    done, _ = await asyncio.wait([work, timer], return_when=asyncio.FIRST_COMPLETED)
    if work in done:
        timer.cancel()
        return {"winner": "task", "value": work.result()}
    work.cancel()  # stop waiting; the task itself runs on
    return {"winner": "timer"}


async def test_task_beats_timer(flovyn: Flovyn) -> None:
    async with flovyn.worker([race], [slow_echo]), flovyn.client() as client:
        handle = await client.start_workflow(race, {"taskDelay": 0.1, "timeout": 30})
        assert await handle.result(timeout=15) == {"winner": "task", "value": "done"}
    events = await flovyn.events(handle.id)
    types = event_types(events)
    assert types.index("TASK_COMPLETED") < types.index("TIMER_CANCELLED")
    assert "TIMER_FIRED" not in types
    assert types[-1] == "WORKFLOW_COMPLETED"
    timer_id = of_type(events, "TIMER_STARTED")[0]["data"]["timerId"]
    assert of_type(events, "TIMER_CANCELLED")[0]["data"]["timerId"] == timer_id
    assert_gapless(events)


async def test_timer_beats_task(flovyn: Flovyn) -> None:
    async with flovyn.worker([race], [slow_echo]), flovyn.client() as client:
        started = time.monotonic()
        handle = await client.start_workflow(race, {"taskDelay": 1.5, "timeout": 0.3})
        assert await handle.result(timeout=15) == {"winner": "timer"}
        assert time.monotonic() - started < 1.5  # did not wait for the task
        events = await flovyn.events(handle.id)
        types = event_types(events)
        assert "TIMER_FIRED" in types
        assert "TASK_COMPLETED" not in types
        assert types[-1] == "WORKFLOW_COMPLETED"
        assert_gapless(events)

        async def task_completed() -> bool:
            (task_row,) = await flovyn.tasks(handle.id)
            return bool(task_row["status"] == "COMPLETED")

        # the abandoned task still finishes; the completed workflow's history stays closed
        await wait_for(task_completed, within=5, what="the abandoned task to complete")
    assert await flovyn.events(handle.id) == events
