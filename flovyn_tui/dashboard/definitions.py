"""The Workers and Definitions views. No stream tells of workers or kinds, so these
read their list while shown, every few seconds."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import DataTable, Static

from flovyn_tui.commands.discovery import age
from flovyn_tui.dashboard.app import api, guarded
from flovyn_tui.output import STATUS, local_time

EVERY_S = 5.0


def mark(status: str) -> Text:
    glyph, style = STATUS.get(status, ("?", ""))
    return Text(f"{glyph} {status}", style=style)


class _Listing(Vertical):
    COLUMNS: tuple[str, ...] = ()

    def compose(self) -> ComposeResult:
        yield Static(id="listing-title")
        table: DataTable[Any] = DataTable(cursor_type="row", zebra_stripes=True)
        yield table

    def on_mount(self) -> None:
        self.query_one(DataTable).add_columns(*self.COLUMNS)
        self.set_interval(EVERY_S, self._maybe_load)

    def on_show(self) -> None:
        self.load()

    def _maybe_load(self) -> None:
        if self.display and self.is_on_screen:
            self.load()

    @guarded(exclusive=True)
    async def load(self) -> None:
        if getattr(self.app, "client", None) is None:
            return
        try:
            rows, title = await self.fetch()
        except Exception as exc:
            self.app.report(exc)  # type: ignore[attr-defined]
            return
        table = self.query_one(DataTable)
        at = table.cursor_row
        table.clear()
        for row in rows:
            table.add_row(*row)
        if rows:
            table.move_cursor(row=min(at, len(rows) - 1))
        table.refresh()  # its header keeps the widths it had before the rows, else
        self.query_one("#listing-title", Static).update(title)

    async def fetch(self) -> tuple[list[tuple[Any, ...]], str]:
        raise NotImplementedError


class WorkersView(_Listing):
    COLUMNS = ("STATUS", "NAME", "TYPE", "QUEUES", "HEARTBEAT", "HOST", "WORKFLOWS", "TASKS")

    async def fetch(self) -> tuple[list[tuple[Any, ...]], str]:
        client = api(self.app)
        page = await client.worker_page(limit=200)
        rows = []
        for w in page["workers"]:
            detail = await client.get_worker(w["id"])
            rows.append(
                (
                    mark(w["status"]),
                    w["name"],
                    w["type"],
                    ",".join(w["queues"]),
                    age(w["lastHeartbeatAt"]),
                    f"{w['hostName'] or '-'}:{w['processId'] or '-'}",
                    ", ".join(detail["workflowCapabilities"]),
                    ", ".join(detail["taskCapabilities"]),
                )
            )
        return rows, f"{len(rows)} of {page['total']} workers"


class DefinitionsView(_Listing):
    COLUMNS = ("STATUS", "TYPE", "KIND", "WORKERS", "DESCRIPTION", "LAST REGISTERED")

    async def fetch(self) -> tuple[list[tuple[Any, ...]], str]:
        client = api(self.app)
        rows = []
        for kind, answer in (
            ("workflow", await client.workflow_definitions()),
            ("task", await client.task_definitions()),
        ):
            for d in answer["definitions"]:
                rows.append(
                    (
                        mark(d["availabilityStatus"]),
                        kind,
                        d["kind"],
                        d["workerCount"],
                        d["description"] or "",
                        local_time(d["lastRegisteredAt"]),
                    )
                )
        return rows, f"{len(rows)} kinds"
