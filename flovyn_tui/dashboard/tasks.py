"""Standalone tasks: a list (no stream tells of a tenant's tasks, so it is read again
every few seconds while shown) and, on `enter`, one task live from its own stream:
its state, attempts and logs."""

from __future__ import annotations

import contextlib
import json
from typing import Any

from rich.console import Group
from rich.json import JSON
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

from flovyn_tui.dashboard.app import api, guarded
from flovyn_tui.dashboard.definitions import _Listing
from flovyn_tui.dashboard.rows import Rows
from flovyn_tui.output import duration, local_time, status, what, when
from flovyn_tui.watch import first_line, log_line

ENDED = ("COMPLETED", "FAILED", "CANCELLED")


class TasksView(_Listing):
    COLUMNS = ("STATUS", "KIND", "ID", "ATTEMPTS", "PROGRESS", "CREATED", "DURATION", "ERROR")
    BINDINGS = [Binding("c", "cancel", "Cancel task"), Binding("y", "copy", "Copy id")]

    async def fetch(self) -> tuple[list[tuple[Any, ...]], str]:
        page = await api(self.app).task_page(limit=200)
        self.ids = [t["id"] for t in page["tasks"]]
        rows = [
            (
                status(t["status"], retry_at=t["retryAt"]),
                t["kind"],
                t["id"][:8],
                f"{t['executionCount']}/{t['maxRetries'] + 1}",
                "-" if t["progress"] is None else f"{t['progress'] * 100:.0f}%",
                local_time(t["createdAt"]),
                duration(t["startedAt"], t["completedAt"]) if t["startedAt"] else "-",
                first_line(t["error"], 60),
            )
            for t in page["tasks"]
        ]
        about = "about " if page["totalIsEstimate"] else ""
        return (
            rows,
            f"{len(rows)} of {about}{page['total']} standalone tasks   enter open  c cancel",
        )

    def _current(self) -> str | None:
        table = self.query_one(DataTable)
        ids: list[str] = getattr(self, "ids", [])
        return ids[table.cursor_row] if 0 <= table.cursor_row < len(ids) else None

    @on(DataTable.RowSelected)
    def _open(self) -> None:
        task_id = self._current()
        if task_id is not None:
            self.app.push_screen(TaskScreen(task_id))

    def action_copy(self) -> None:
        task_id = self._current()
        if task_id is not None:
            self.app.copy_to_clipboard(task_id)
            self.app.notify(f"copied {task_id}")

    def action_cancel(self) -> None:
        task_id = self._current()
        if task_id is not None:
            cancel_task(self.app, task_id)


def cancel_task(app: Any, task_id: str) -> None:
    from flovyn_tui.dashboard.dialogs import ConfirmScreen

    async def act() -> None:
        try:
            await api(app).cancel_task(task_id)
        except Exception as exc:
            app.report(exc)
            return
        app.notify(f"task {task_id[:8]} cancelled")

    def answered(yes: bool | None) -> None:
        if yes:
            app.run_worker(act(), group="actions")

    app.push_screen(ConfirmScreen(f"Cancel task {task_id}? (only a PENDING one can be)"), answered)


class TaskScreen(Screen[None]):
    """One standalone task, live: its state and attempts above, its logs below."""

    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("c", "cancel", "Cancel"),
        Binding("y", "copy", "Copy id"),
    ]
    DEFAULT_CSS = """
    TaskScreen #task-top { height: 2fr; }
    TaskScreen #task-state { width: 1fr; padding: 0 1; }
    TaskScreen #task-data { width: 1fr; padding: 0 1; border-left: solid $panel-lighten-2; }
    TaskScreen #task-logs { height: 1fr; border-top: solid $panel-lighten-2; padding: 0 1; }
    """

    def __init__(self, task_id: str) -> None:
        super().__init__()
        self.task_id = task_id
        self.live: bool | None = None
        self.summary = ""

    def compose(self) -> ComposeResult:
        with Horizontal(id="task-top"):
            with VerticalScroll(id="task-state"):
                yield Static(id="task-summary")
            with VerticalScroll(id="task-data"):
                yield Static(id="task-io")
        yield Rows(lambda item, width: log_line(item), id="task-logs", near_end=0)
        yield Static(id="notice")
        yield Footer()

    def on_mount(self) -> None:
        self.load()
        self.follow()

    @guarded(exclusive=True, group="load")
    async def load(self) -> None:
        client = api(self.app)
        task = await client.get_task(self.task_id)
        attempts = (await client.standalone_task_attempts(self.task_id))["attempts"]
        live = (
            Text(" ● LIVE", style="bold green")
            if self.live
            else Text(" ◌ reconnecting…", style="bold yellow")
            if self.live is False
            else Text("")
        )
        head = Text.assemble(
            status(task["status"], retry_at=task["retryAt"]), "  ", (task["kind"], "bold"),
            f"  {task['id']}  ", (duration(task["startedAt"], task["completedAt"]), "dim"), live,
        )  # fmt: skip
        lines = [head, Text("")]
        for a in attempts:
            lines.append(
                Text.assemble(
                    f"attempt {a['attempt']}  ",
                    status(a["status"]),
                    f"  {local_time(a['startedAt'])}  {duration(a['startedAt'], a['finishedAt'])}  ",
                    (first_line(a["error"], 70), "red"),
                )
            )
        self.summary = "\n".join(line.plain for line in lines)  # what shows, for tests
        self.query_one("#task-summary", Static).update(Group(*lines))
        parts: list[Any] = [Text("input", style="bold"), JSON(json.dumps(task["input"]))]
        if task["output"] is not None:
            parts += [Text("output", style="bold"), JSON(json.dumps(task["output"]))]
        if task["error"]:
            parts += [Text("error", style="bold red"), Text(task["error"], style="red")]
        self.query_one("#task-io", Static).update(Group(*parts))

    @guarded(exclusive=True, group="stream")
    async def follow(self) -> None:
        """The task's stream: log lines as they come, and its state again on a change."""
        logs = self.query_one("#task-logs", Rows)

        def state(live: bool) -> None:
            self.live = live

        stream = api(self.app).stream_task(self.task_id, on_connection=state)
        async with contextlib.aclosing(stream) as events:
            async for event in events:
                if event.event == "task_log":
                    logs.extend([event.data])
                    logs.action_jump(-1)
                elif event.event in ("task_created", "task_started", "task_completed",
                                     "task_failed", "task_retry", "task_cancelled", "end"):  # fmt: skip
                    self.load()
                if event.event == "end":
                    self.live = None
                    return

    def action_cancel(self) -> None:
        cancel_task(self.app, self.task_id)

    def action_copy(self) -> None:
        self.app.copy_to_clipboard(self.task_id)
        self.app.notify(f"copied {self.task_id}")


class SchedulesView(_Listing):
    """Schedules: next run, last run, runs; `e` enables or disables the selected one, `g`
    runs it now."""

    COLUMNS = ("", "NAME", "WHEN", "STARTS", "NEXT RUN", "LAST RUN", "RUNS")
    BINDINGS = [
        Binding("e", "toggle", "Enable/disable"),
        Binding("g", "run_now", "Run now"),
    ]

    async def fetch(self) -> tuple[list[tuple[Any, ...]], str]:
        page = await api(self.app).schedule_page(limit=200)
        self.rows_data = list(page["schedules"])
        rows = [
            (
                Text("●", style="green") if s["enabled"] else Text("○", style="bright_black"),
                s["name"],
                when(dict(s)),
                what(dict(s)),
                local_time(s["nextRunAt"]),
                local_time(s["lastRunAt"]),
                s["runCount"],
            )
            for s in page["schedules"]
        ]
        return rows, f"{len(rows)} schedules   e enable/disable  g run now"

    def _current(self) -> Any:
        table = self.query_one(DataTable)
        rows = getattr(self, "rows_data", [])
        return rows[table.cursor_row] if 0 <= table.cursor_row < len(rows) else None

    @guarded(group="schedule-actions")
    async def action_toggle(self) -> None:
        chosen = self._current()
        if chosen is None:
            return
        changed = await api(self.app).enable_schedule(chosen["id"], not chosen["enabled"])
        word = "enabled" if changed["enabled"] else "disabled"
        self.app.notify(f"{changed['name']} {word}; next run {local_time(changed['nextRunAt'])}")
        self.load()

    @guarded(group="schedule-actions")
    async def action_run_now(self) -> None:
        chosen = self._current()
        if chosen is None:
            return
        fired = await api(self.app).trigger_schedule(chosen["id"])
        self.app.notify(f"{chosen['name']}: started {fired['targetType']} {fired['targetId'][:8]}")
        self.load()
