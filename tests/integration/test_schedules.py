"""Schedules on both stores: an interval firing every second until disabled, cron's next
run in real timezones, trigger, overlap policies, bad input, slots missed while the
server was stopped under both policies, and two PostgreSQL servers firing each slot
once."""

from __future__ import annotations

import asyncio
import itertools
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import pytest

from flovyn_worker import TaskContext, WorkflowContext, task, workflow
from tests.integration.conftest import ADMIN_KEY, Flovyn, new_tenant
from tests.integration.helpers import assert_error, wait_status
from tests.serverproc import ServerProcess


@workflow(name="sched-flow")
async def flow(ctx: WorkflowContext, data: Any) -> Any:
    return data


@task(name="sched-task")
async def job(ctx: TaskContext, data: Any) -> Any:
    return data


def interval(name: str, seconds: int = 1, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "scheduleType": {"type": "interval", "everySeconds": seconds},
        "target": {"type": "workflow", "workflowKind": "sched-flow", "input": {"from": name}},
        **extra,
    }


async def runs(f: Flovyn, schedule_id: str) -> list[dict[str, Any]]:
    answer = await f.ok("GET", f"P/schedules/{schedule_id}/runs", params={"limit": "1000"})
    return list(reversed(answer["runs"]))  # oldest first


async def until(check: Any, within: float = 15.0) -> None:
    deadline = time.monotonic() + within
    while not await check():
        assert time.monotonic() < deadline, "not within the time"
        await asyncio.sleep(0.05)


async def test_an_interval_fires_every_second_until_disabled(flovyn: Flovyn) -> None:
    f = flovyn
    async with f.worker([flow], []):
        made = await f.ok("POST", "P/schedules", interval("every-second", overlapPolicy="allow"))
        assert made["enabled"] and made["nextRunAt"] is not None and made["runCount"] == 0

        async def three() -> bool:
            return len(await runs(f, made["id"])) >= 3

        await until(three)
        fired = await runs(f, made["id"])
        assert {r["status"] for r in fired} == {"started"}
        slots = [datetime.fromisoformat(r["scheduledAt"]) for r in fired]
        assert all(b - a == timedelta(seconds=1) for a, b in itertools.pairwise(slots))
        for r in fired:  # woken by the due time, not by a poll of a second or more
            late = datetime.fromisoformat(r["startedAt"]) - datetime.fromisoformat(r["scheduledAt"])
            assert late < timedelta(milliseconds=900), late
        await wait_status(f, fired[0]["targetId"], "COMPLETED")
        off = await f.ok("POST", f"P/schedules/{made['id']}/disable")
        assert not off["enabled"] and off["nextRunAt"] is None
        count = len(await runs(f, made["id"]))
        await asyncio.sleep(2.2)
        assert len(await runs(f, made["id"])) == count  # no more runs
        on = await f.ok("POST", f"P/schedules/{made['id']}/enable")
        assert on["enabled"] and on["nextRunAt"] > datetime.now(UTC).isoformat()[:19]
        got = await f.ok("GET", f"P/schedules/{made['id']}")
        assert got["runCount"] >= count and got["lastRunAt"] is not None


async def test_cron_trigger_crud_and_a_task_target(flovyn: Flovyn) -> None:
    f = flovyn
    body = {
        "name": "berlin-0230",
        "description": "half past two",
        "scheduleType": {"type": "cron", "cron": "30 2 * * *", "timezone": "Europe/Berlin"},
        "target": {"type": "task", "taskKind": "sched-task", "input": {"n": 1}, "maxRetries": 1},
    }
    made = await f.ok("POST", "P/schedules", body)
    assert made["scheduleType"]["timezone"] == "Europe/Berlin"
    next_run = datetime.fromisoformat(made["nextRunAt"]).astimezone(ZoneInfo("Europe/Berlin"))
    assert (next_run.hour, next_run.minute) in ((2, 30), (3, 0))  # 03:00 on the night of DST
    status, answer = await f.call("POST", "P/schedules", body)
    assert_error(status, answer, 409)
    async with f.worker([], [job]):
        fired = await f.ok("POST", f"P/schedules/{made['id']}/trigger")
        assert fired["targetType"] == "task" and fired["run"]["status"] == "started"
        got = await f.ok("GET", f"P/tasks/{fired['targetId']}")
        assert got["kind"] == "sched-task" and got["metadata"] == {"scheduleId": made["id"]}

        async def done() -> bool:
            task_ = await f.ok("GET", f"P/tasks/{fired['targetId']}")
            return bool(task_["status"] == "COMPLETED")

        await until(done)
    replaced = await f.ok(
        "PUT", f"P/schedules/{made['id']}", {**body, "name": "renamed", "enabled": False}
    )
    assert replaced["name"] == "renamed" and replaced["nextRunAt"] is None
    listed = await f.ok("GET", "P/schedules")
    assert [s["id"] for s in listed["schedules"]] == [made["id"]]
    status, _ = await f.call("DELETE", f"P/schedules/{made['id']}")
    assert status == 204
    status, answer = await f.call("GET", f"P/schedules/{made['id']}")
    assert_error(status, answer, 404)


async def test_overlap_skip_and_cancel_previous(flovyn: Flovyn) -> None:
    f = flovyn  # no worker: each run's workflow stays PENDING, so the previous one is open
    skip = await f.ok("POST", "P/schedules", interval("overlap-skip"))
    cancel = await f.ok(
        "POST", "P/schedules", interval("overlap-cancel", overlapPolicy="cancel_previous")
    )

    async def enough() -> bool:
        return len(await runs(f, skip["id"])) >= 3 and len(await runs(f, cancel["id"])) >= 3

    await until(enough)
    skipped = await runs(f, skip["id"])
    assert skipped[0]["status"] == "started"
    assert {r["status"] for r in skipped[1:]} == {"skipped"}
    assert "has not ended" in skipped[1]["error"]
    cancelling = await runs(f, cancel["id"])
    assert {r["status"] for r in cancelling} == {"started"}
    first = await f.ok("GET", f"P/workflow-executions/{cancelling[0]['targetId']}")
    assert first["status"] == "CANCELLED"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"scheduleType": {"type": "cron", "cron": "61 * * * *"}}, "is not valid"),
        ({"scheduleType": {"type": "cron", "cron": "* *"}}, "has 2 fields"),
        (
            {"scheduleType": {"type": "cron", "cron": "0 9 * * *", "timezone": "Nowhere/City"}},
            "unknown timezone",
        ),
        ({"scheduleType": {"type": "interval", "everySeconds": 0}}, "everySeconds"),
        ({"scheduleType": {"type": "weekly"}}, "scheduleType"),
        ({"scheduleType": {"type": "once"}}, "runAt"),
        ({"target": {"type": "workflow"}}, "workflowKind"),
        ({"target": {"type": "task", "taskKind": "t", "maxRetries": 11}}, "maxRetries"),
        ({"overlapPolicy": "sometimes"}, "overlapPolicy"),
        ({"name": ""}, "name"),
        ({"name": "a\u0000b"}, "name"),
    ],
)
async def test_bad_input_says_what_is_wrong_and_creates_nothing(
    flovyn: Flovyn, change: dict[str, Any], message: str
) -> None:
    status, answer = await flovyn.call("POST", "P/schedules", interval("bad") | change)
    assert_error(status, answer, 400)
    assert message in str(answer), answer
    assert (await flovyn.ok("GET", "P/schedules"))["schedules"] == []


async def test_missed_slots_after_a_server_stop(server: ServerProcess) -> None:
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(connector=connector) as session:
        f = Flovyn(server.url, session)
        f.slug, f.api_key, f.worker_token = await new_tenant(f)
        skip = await f.ok("POST", "P/schedules", interval("missed-skip", overlapPolicy="allow"))
        once = await f.ok(
            "POST",
            "P/schedules",
            interval("missed-once", overlapPolicy="allow", missedRunPolicy="execute_once"),
        )

        async def started() -> bool:
            return all([len(await runs(f, s["id"])) >= 1 for s in (skip, once)])

        await until(started)
        await asyncio.to_thread(server.stop)
        stopped = datetime.now(UTC)
        await asyncio.sleep(3.5)  # about three slots go by with no server
        await asyncio.to_thread(server.start)

        async def after_restart() -> bool:
            return all(
                [
                    any(
                        datetime.fromisoformat(r["startedAt"]) > stopped
                        for r in await runs(f, s["id"])
                    )
                    for s in (skip, once)
                ]
            )

        await until(after_restart)
        skipped = [
            r for r in await runs(f, skip["id"]) if datetime.fromisoformat(r["startedAt"]) > stopped
        ]
        assert (
            skipped[0]["status"] == "skipped"
            and "missed while the server was down" in skipped[0]["error"]
        )
        ran = [
            r for r in await runs(f, once["id"]) if datetime.fromisoformat(r["startedAt"]) > stopped
        ]
        assert ran[0]["status"] == "started"
        late = datetime.fromisoformat(ran[0]["startedAt"]) - datetime.fromisoformat(
            ran[0]["scheduledAt"]
        )
        assert late > timedelta(seconds=2)  # the missed slot, run once on the way back


async def test_two_servers_fire_each_slot_once(postgres_url: str, tmp_path: Path) -> None:
    servers = [
        ServerProcess(postgres_url, tmp_path / f"server-{n}", admin_key=ADMIN_KEY) for n in "ab"
    ]
    try:
        for s in servers:
            await asyncio.to_thread(s.start)
        async with aiohttp.ClientSession() as session:
            a, b = Flovyn(servers[0].url, session), Flovyn(servers[1].url, session)
            a.slug, a.api_key, a.worker_token = await new_tenant(a)
            b.slug, b.api_key = a.slug, a.api_key
            made = [
                await a.ok("POST", "P/schedules", interval(f"shared-{n}", overlapPolicy="allow"))
                for n in range(3)
            ]
            await asyncio.sleep(60)  # a minute of slots, three schedules firing each second
            for s in made:
                await b.ok("POST", f"P/schedules/{s['id']}/disable")
                fired = await runs(b, s["id"])
                slots = [r["scheduledAt"] for r in fired]
                assert len(slots) == len(set(slots)), "a slot fired twice"
                assert len(slots) >= 50, slots
                starts = await a.ok(
                    "GET", "P/workflow-executions", params={"kind": "sched-flow", "limit": "1000"}
                )
                assert starts["total"] == sum([len(await runs(a, x["id"])) for x in made])
    finally:
        for s in servers:
            await asyncio.to_thread(s.stop)
