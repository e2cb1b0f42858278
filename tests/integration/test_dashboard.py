"""The dashboard, driven with Textual's pilot against a real server and a real worker
on both stores: the list updates live, `enter` opens an execution, the tree and the
timeline show a retried task's attempts, the log filter and search, `r` with undo,
bulk retry of what a filter matches, and reconnecting after a server restart."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import aiohttp
import pytest
from textual.pilot import Pilot
from textual.widgets import DataTable, Tree

from flovyn_tui.dashboard.app import FlovynApp, Target
from flovyn_tui.dashboard.detail import ExecutionScreen
from flovyn_tui.dashboard.dialogs import ConfirmScreen, Prompt
from flovyn_tui.dashboard.rows import Rows
from flovyn_tui.dashboard.tasks import SchedulesView, TaskScreen, TasksView
from flovyn_tui.dashboard.timeline import Timeline
from flovyn_tui.dashboard.workflows import WorkflowsView
from flovyn_worker import RetryPolicy, TaskContext, WorkflowContext, task, workflow
from tests.integration.conftest import Flovyn, new_tenant
from tests.integration.helpers import trigger, wait_status
from tests.serverproc import ServerProcess

SIZE = (140, 40)
fail_first: set[str] = set()  # workflow ids whose `tui-flaky` task has failed once


@task(
    name="tui-flaky",
    retry_policy=RetryPolicy(max_attempts=3, initial_interval=timedelta(milliseconds=50)),
)
async def flaky(ctx: TaskContext, key: str) -> str:
    ctx.logger.info("working on %s", key)
    ctx.logger.warning("this is a warning about %s", key)
    if ctx.attempt == 1:
        ctx.logger.error("first attempt of %s fails", key)
        raise RuntimeError("first attempt fails")
    return f"done {key}"


@task(name="tui-once", retry_policy=RetryPolicy(max_attempts=1))
async def fails_once(ctx: TaskContext, key: str) -> str:
    if key not in fail_first:
        fail_first.add(key)
        raise RuntimeError(f"{key}: broken until retried")
    return key


@workflow(name="tui-flow")
async def flow(ctx: WorkflowContext, key: str) -> str:
    return await ctx.schedule(flaky, key)


@workflow(name="tui-repair")
async def repair(ctx: WorkflowContext, key: str) -> str:
    return await ctx.schedule(fails_once, key)


async def until(pilot: Pilot[Any], check: Callable[[], bool], within: float = 15.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within}s")
        await pilot.pause(0.05)


@asynccontextmanager
async def dashboard(f: Flovyn) -> AsyncIterator[tuple[FlovynApp, Pilot[Any]]]:
    app = FlovynApp(Target(f.url, f.slug, f.api_key))
    async with app.run_test(size=SIZE) as pilot:
        await asyncio.wait_for(app.ready.wait(), 10)
        yield app, pilot


def rows_of(app: FlovynApp) -> Rows[dict[str, Any]]:
    return app.screen_stack[0].query_one(WorkflowsView).rows


def status_of(app: FlovynApp, wf_id: str) -> str | None:
    rows = rows_of(app)
    index = rows.index_of(wf_id)
    return None if index is None else str(rows.items[index]["status"])


async def test_list_is_live_and_enter_opens_the_tree_and_timeline(flovyn: Flovyn) -> None:
    f = flovyn
    async with f.worker([flow], [flaky]), dashboard(f) as (app, pilot):
        wf_id = await trigger(f, "tui-flow", {"input": "a"})
        await until(pilot, lambda: status_of(app, wf_id) == "COMPLETED")  # from the feed
        rows = rows_of(app)
        assert rows.items[0]["id"] == wf_id  # newest first
        await until(
            pilot, lambda: "COMPLETED ~" not in str(app.screen.query_one("#counts").render())
        )
        rows.focus()
        await pilot.press("enter")
        await until(
            pilot, lambda: isinstance(app.screen, ExecutionScreen) and app.screen.root is not None
        )
        screen = app.screen
        assert isinstance(screen, ExecutionScreen) and screen.root is not None
        (task_node,) = [n for n in screen.root.walk() if n.kind == "task"]
        assert [a.status for a in task_node.attempts] == ["FAILED", "COMPLETED"]
        labels = [str(n.label) for n in screen.query_one("#node-tree", Tree).root.children]
        assert any("tui-flaky [2]" in label for label in labels), labels
        await pilot.press("2")
        timeline = screen.query_one(Timeline)
        assert [node.label for _, node in timeline.lines] == [screen.root.label, "tui-flaky"]
        await pilot.press("escape")
        assert isinstance(app.screen.query_one(WorkflowsView), WorkflowsView)


async def test_log_level_filter_and_search(flovyn: Flovyn) -> None:
    f = flovyn
    async with f.worker([flow], [flaky]), dashboard(f) as (app, pilot):
        wf_id = await trigger(f, "tui-flow", {"input": "logs"})
        await wait_status(f, wf_id, "COMPLETED")
        app.push_screen(ExecutionScreen(wf_id))
        await until(
            pilot, lambda: isinstance(app.screen, ExecutionScreen) and app.screen.root is not None
        )
        screen = app.screen
        await pilot.press("3")
        logs = screen.query_one("#log-rows", Rows)
        await until(pilot, lambda: len(logs.items) == 7)  # 3 + 2 lines, a separator per attempt
        assert [i.get("separator") for i in logs.items if "separator" in i] == [1, 2]
        await pilot.press("l")  # INFO and up: the same
        await pilot.press("l")  # WARN and up
        await until(
            pilot, lambda: {i.get("level") for i in logs.items if "level" in i} == {"WARN", "ERROR"}
        )
        await pilot.press("l", "l")  # back to all
        await until(pilot, lambda: len(logs.items) == 7)
        await pilot.press("slash")
        await until(pilot, lambda: isinstance(app.screen, Prompt))
        await pilot.press(*"fails", "enter")
        await until(
            pilot,
            lambda: (
                [i.get("message") for i in logs.items if "message" in i]
                == ["first attempt of logs fails"]
            ),
        )
        assert logs.highlight == "fails"


async def test_r_retries_after_its_undo_window(flovyn: Flovyn) -> None:
    f = flovyn
    async with f.worker([repair], [fails_once]), dashboard(f) as (app, pilot):
        wf_id = await trigger(f, "tui-repair", {"input": f"undo-{f.slug}"})
        await until(pilot, lambda: status_of(app, wf_id) == "FAILED")
        rows = rows_of(app)
        rows.focus()
        rows.cursor = rows.index_of(wf_id) or 0
        await pilot.press("r")
        notice = app.screen.query_one("#notice")
        await until(pilot, lambda: notice.display and "press u to undo" in str(notice.render()))
        await pilot.press("u")
        await pilot.pause(3.5)
        assert (await f.ok("GET", f"P/workflow-executions/{wf_id}"))["status"] == "FAILED"
        await pilot.press("r")
        await until(pilot, lambda: status_of(app, wf_id) == "COMPLETED", within=20)


async def test_bulk_retry_of_what_the_filter_matches(flovyn: Flovyn) -> None:
    f = flovyn
    async with f.worker([repair], [fails_once]), dashboard(f) as (app, pilot):
        ids = [await trigger(f, "tui-repair", {"input": f"bulk-{f.slug}-{n}"}) for n in range(3)]
        for wf_id in ids:
            await wait_status(f, wf_id, "FAILED")
        view = app.screen.query_one(WorkflowsView)
        view.rows.focus()
        while view.status != "FAILED":
            await pilot.press("right_square_bracket")
        await until(pilot, lambda: {w["id"] for w in view.rows.items} == set(ids))
        await pilot.press("R")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        assert "Retry 3 executions (matching the filter)?" in app.screen.question  # type: ignore[attr-defined]
        await pilot.press("y")
        for wf_id in ids:
            await wait_status(f, wf_id, "COMPLETED")


async def test_reconnects_after_a_server_restart(server: ServerProcess) -> None:
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(connector=connector) as session:
        f = Flovyn(server.url, session)
        f.slug, f.api_key, f.worker_token = await new_tenant(f)
        async with dashboard(f) as (app, pilot):
            await until(pilot, lambda: app.live is True)
            await asyncio.to_thread(server.restart)
            await until(pilot, lambda: False in app.connection_changes)  # "reconnecting" shown
            wf_id = await trigger(f, "tui-nobody")  # while the dashboard reconnects
            await until(pilot, lambda: status_of(app, wf_id) == "PENDING", within=30)
            assert app.live is True
            assert [w["id"] for w in rows_of(app).items].count(wf_id) == 1


pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")


async def test_a_refusal_is_a_notification_not_a_traceback(flovyn: Flovyn) -> None:
    app = FlovynApp(Target(flovyn.url, flovyn.slug, "flovyn_sk_wrong"))
    async with app.run_test(size=SIZE) as pilot:
        await until(
            pilot, lambda: any("unknown or revoked key" in n.message for n in app._notifications)
        )
        assert app.is_running and not app.ready.is_set()
        await pilot.press("question_mark")  # still answers keys
        await until(pilot, lambda: type(app.screen).__name__ == "HelpScreen")


async def test_kind_filter_on_the_server_and_words_on_the_rows(flovyn: Flovyn) -> None:
    f = flovyn
    async with dashboard(f) as (app, pilot):
        a = [await trigger(f, "tui-a") for _ in range(3)]
        b = await trigger(f, "tui-b")
        view = app.screen.query_one(WorkflowsView)
        await until(pilot, lambda: len(view.rows.items) == 4)
        view.rows.focus()
        await pilot.press("slash", *"kind:tui-a", "enter")
        await until(pilot, lambda: {w["id"] for w in view.rows.items} == set(a))
        later_b, later_a = await trigger(f, "tui-b"), await trigger(f, "tui-a")
        await until(pilot, lambda: view.rows.items[0]["id"] == later_a)  # live, filtered
        assert later_b not in {w["id"] for w in view.rows.items} and b not in {
            w["id"] for w in view.rows.items
        }
        await pilot.press("slash", *"kind:tui-b", "space", *b[:8], "enter")
        await until(pilot, lambda: [w["id"] for w in view.rows.items] == [b])


async def test_tasks_view_and_a_task_live(flovyn: Flovyn) -> None:
    f = flovyn
    async with f.worker([], [flaky]), dashboard(f) as (app, pilot), f.client() as client:
        handle = await client.start_task("tui-flaky", "solo", max_retries=2)
        await handle.result(timeout=20)
        await pilot.press("T")
        view = app.screen.query_one(TasksView)
        await until(pilot, lambda: getattr(view, "ids", []) == [handle.id])
        view.query_one(DataTable).focus()
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, TaskScreen))
        logs = app.screen.query_one("#task-logs", Rows)
        await until(pilot, lambda: len(logs.items) == 5)  # both attempts' lines, from the stream
        screen = app.screen
        assert isinstance(screen, TaskScreen)
        await until(pilot, lambda: "attempt 2" in screen.summary)
        assert "attempt 1" in screen.summary and "COMPLETED" in screen.summary


async def test_r_in_an_execution_and_it_comes_back_to_life(flovyn: Flovyn) -> None:
    f = flovyn
    async with f.worker([repair], [fails_once]), dashboard(f) as (app, pilot):
        wf_id = await trigger(f, "tui-repair", {"input": f"detail-{f.slug}"})
        await wait_status(f, wf_id, "FAILED")
        app.push_screen(ExecutionScreen(wf_id))
        screen = app.screen
        assert isinstance(screen, ExecutionScreen)
        await until(pilot, lambda: screen.ended and screen.root is not None)
        assert isinstance(screen, ExecutionScreen) and screen.root is not None
        assert screen.root.status == "FAILED"
        await pilot.press("r")
        notice = screen.query_one("#notice")
        await until(pilot, lambda: notice.display and "retry of tui-repair" in str(notice.render()))
        await pilot.press("u")
        await until(pilot, lambda: "undone" in str(notice.render()))
        await pilot.press("r")
        # Retried after its window; the screen follows the execution again to its end.
        await until(
            pilot, lambda: screen.root is not None and screen.root.status == "COMPLETED", within=20
        )


async def test_schedules_view_enables_and_disables_with_one_key(flovyn: Flovyn) -> None:
    f = flovyn
    body = {
        "name": "tui-hourly",
        "scheduleType": {"type": "interval", "everySeconds": 3600},
        "target": {"type": "workflow", "workflowKind": "tui-nobody"},
    }
    made = await f.ok("POST", "P/schedules", body)
    async with dashboard(f) as (app, pilot):
        await pilot.press("S")
        view = app.screen.query_one(SchedulesView)
        await until(
            pilot, lambda: [s["id"] for s in getattr(view, "rows_data", [])] == [made["id"]]
        )
        await pilot.press("e")
        await until(pilot, lambda: view.rows_data[0]["enabled"] is False)
        assert (await f.ok("GET", f"P/schedules/{made['id']}"))["nextRunAt"] is None
        await pilot.press("e")
        await until(pilot, lambda: view.rows_data[0]["enabled"] is True)
        await pilot.press("g")
        await until(pilot, lambda: view.rows_data[0]["runCount"] == 1)
