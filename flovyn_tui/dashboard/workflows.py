"""The Workflows view: the tenant's executions, newest first, live from the feed.

Pages come from the list's cursor as the cursor nears the end of what is loaded, so
a tenant of 100,000 executions opens as fast as one of 100. Feed events update rows
in place and add new ones at the top; counts per status sit above the table.
"""

from __future__ import annotations

import time
from typing import Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import Input, Static

from flovyn_tui.dashboard.app import api, guarded
from flovyn_tui.dashboard.rows import Rows, columns
from flovyn_tui.output import STATUS, duration, local_time
from flovyn_worker.sse import StreamEvent

PAGE = 200
FILTERS = ["ALL", "RUNNING", "WAITING", "PENDING", "FAILED", "COMPLETED", "CANCELLED"]
WIDTHS = (13, 22, 10, 19, 9, 8)
HEADINGS = ("STATUS", "KIND", "ID", "STARTED", "DURATION", "ATTEMPTS", "QUEUE")
COUNTS_EVERY_S = 1.0  # the counts are read again at most this often while events arrive


def glyph(status: str) -> Text:
    mark, style = STATUS.get(status, ("?", ""))
    return Text(f"{mark} {status}", style=style)


def workflow_line(wf: dict[str, Any], width: int) -> Text:
    return columns(
        [
            (glyph(wf["status"]), WIDTHS[0]),
            (wf["kind"], WIDTHS[1]),
            (wf["id"][:8], WIDTHS[2]),
            (local_time(wf["startedAt"] or wf["createdAt"]), WIDTHS[3]),
            (duration(wf["startedAt"], wf["completedAt"]) if wf["startedAt"] else "-", WIDTHS[4]),
            (str(wf["retryAttempts"] + 1), WIDTHS[5]),
            (wf["queue"], 0),
        ]
    )


class WorkflowsView(Vertical):
    BINDINGS = [
        Binding("left_square_bracket", "cycle(-1)", "Prev status", key_display="["),
        Binding("right_square_bracket", "cycle(1)", "Next status", key_display="]"),
        Binding("slash", "filter", "Filter", key_display="/"),
        Binding("r", "retry", "Retry"),
        Binding("c", "cancel", "Cancel"),
        Binding("t", "trigger", "Trigger"),
        Binding("s", "signal", "Signal"),
        Binding("y", "copy", "Copy id"),
        Binding("space", "mark", "Select", show=False),
        Binding("R", "bulk('retry')", "Retry selected"),
        Binding("C", "bulk('cancel')", "Cancel selected"),
        Binding("escape", "clear", "Clear filter", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.status = "ALL"
        self.text = ""
        self.next_cursor: str | None = None
        self._fetching = False
        self.total: tuple[int, bool] = (0, False)
        self._counts_at = 0.0
        self._counts_due = False

    def compose(self) -> ComposeResult:
        yield Static(id="counts")
        yield Static(id="filters")
        yield Static(
            columns([(h, w) for h, w in zip(HEADINGS, (*WIDTHS, 0), strict=True)]), id="headings"
        )
        yield Rows(workflow_line, key=lambda wf: wf["id"], id="workflow-rows")
        yield Input(
            placeholder="kind:NAME queue:NAME (on the server); other words match kind, id or queue",
            id="text-filter",
        )

    def on_mount(self) -> None:
        self.query_one("#text-filter").display = False
        self._show_filters()
        self.set_interval(1.0, self._tick)

    @property
    def rows(self) -> Rows[dict[str, Any]]:
        return self.query_one("#workflow-rows", Rows)

    def start(self) -> None:
        self.reload()
        self.refresh_counts()
        self.rows.focus()

    # -- loading ------------------------------------------------------------------

    @guarded(exclusive=True, group="page")
    async def reload(self) -> None:
        self._fetching = True
        try:
            page = await api(self.app).workflow_page(**self._server_filters(), limit=PAGE)
        except Exception as exc:
            self.app.report(exc)  # type: ignore[attr-defined]
            return
        finally:
            self._fetching = False
        self.next_cursor = page["nextCursor"]
        self.total = (page["total"], page["totalIsEstimate"])
        self.rows.set_items(self._visible(page["workflows"]))
        self._show_filters()

    @guarded(exclusive=True, group="page")
    async def more(self) -> None:
        if self.next_cursor is None:
            return
        self._fetching = True
        try:
            page = await api(self.app).workflow_page(
                **self._server_filters(), limit=PAGE, cursor=self.next_cursor
            )
        except Exception as exc:
            self.app.report(exc)  # type: ignore[attr-defined]
            return
        finally:
            self._fetching = False
        self.next_cursor = page["nextCursor"]
        self.rows.extend(self._visible(page["workflows"]))

    @on(Rows.NearEnd, "#workflow-rows")
    def _near_end(self) -> None:
        if not self._fetching and self.next_cursor:
            self.more()

    @guarded(exclusive=True, group="counts")
    async def refresh_counts(self) -> None:
        self._counts_at = time.monotonic()
        self._counts_due = False
        try:
            answer = await api(self.app).workflow_counts()
        except Exception:
            return  # the next event tries again; the table matters more
        guessed = set(answer["estimated"])
        line = Text()
        for status, n in answer["counts"].items():
            mark, style = STATUS.get(status, ("?", ""))
            line.append(f"{mark} {status} ", style=style)
            line.append(("~" if status in guessed else "") + f"{n}   ", style="bold")
        self.query_one("#counts", Static).update(line)

    def _tick(self) -> None:
        if self._counts_due and time.monotonic() - self._counts_at >= COUNTS_EVERY_S:
            self.refresh_counts()
        self.rows.refresh()  # running durations grow

    # -- live ---------------------------------------------------------------------

    def feed(self, events: list[StreamEvent]) -> None:
        """Feed events: rows updated in place, new ones at the top (all of a batch at
        once), rows whose status came to fit the filter in their place."""
        rows = self.rows
        fresh: dict[str, dict[str, Any]] = {}  # new at the top, in arrival order
        for event in events:
            wf = event.data.get("workflow") if isinstance(event.data, dict) else None
            if not isinstance(wf, dict):
                continue
            self._counts_due = True
            fits = self._fits(wf)
            if wf["id"] in fresh:
                if fits:
                    fresh[wf["id"]] = wf
                else:
                    del fresh[wf["id"]]
                continue
            index = rows.index_of(wf["id"])
            if index is not None:
                if fits:
                    rows.replace(index, wf)
                else:
                    rows.remove_at(index)
                    total, guessed = self.total
                    self.total = (max(0, total - 1), guessed)
            elif fits and event.event == "workflow_created":
                fresh[wf["id"]] = wf
            elif fits:
                self._insert(wf)
        if fresh:
            rows.insert_top(list(fresh.values())[::-1])  # the newest on top
            total, guessed = self.total
            self.total = (total + len(fresh), guessed)
        self._show_filters()

    def _insert(self, wf: dict[str, Any]) -> None:
        """A row whose status came to fit the filter, in its place by creation time; one
        older than all loaded comes with its page."""
        items = self.rows.items
        at = next(
            (
                i
                for i, r in enumerate(items)
                if (r["createdAt"], r["id"]) < (wf["createdAt"], wf["id"])
            ),
            None,
        )
        if at is None and self.next_cursor is not None:
            return
        if at == 0 or not items:
            self.rows.insert_top([wf])
        else:
            self.rows.insert_at(len(items) if at is None else at, wf)
        total, guessed = self.total
        self.total = (total + 1, guessed)

    def _status(self) -> str | None:
        return None if self.status == "ALL" else self.status

    def _parts(self) -> tuple[dict[str, str], str]:
        """The `/` filter: `kind:X` and `queue:Y` go to the server; the rest matches
        the kind, id or queue of the rows loaded."""
        exact: dict[str, str] = {}
        words = []
        for word in self.text.split():
            name, colon, value = word.partition(":")
            if colon and name in ("kind", "queue") and value:
                exact[name] = value
            else:
                words.append(word)
        return exact, " ".join(words)

    def _server_filters(self) -> dict[str, Any]:
        return {"status": self._status(), **self._parts()[0]}

    def _fits(self, wf: dict[str, Any]) -> bool:
        if self.status != "ALL" and wf["status"] != self.status:
            return False
        exact, _ = self._parts()
        if any(wf[name] != value for name, value in exact.items()):
            return False
        return self._matches_text(wf)

    def _matches_text(self, wf: dict[str, Any]) -> bool:
        _, text = self._parts()
        if not text:
            return True
        needle = text.lower()
        return any(needle in str(wf[f]).lower() for f in ("kind", "id", "queue"))

    def _visible(self, rows: list[Any]) -> list[dict[str, Any]]:
        return [dict(r) for r in rows if self._matches_text(r)]

    def _show_filters(self) -> None:
        line = Text()
        for name in FILTERS:
            style = "reverse bold" if name == self.status else "dim"
            line.append(f" {name} ", style=style)
            line.append(" ")
        total, guessed = self.total
        line.append(f"   {'~' if guessed else ''}{total} executions", style="dim")
        if self.text:
            line.append(f"   filter: {self.text!r}", style="bold yellow")
        line.append("   [ ] status  / filter  enter open", style="dim")
        self.query_one("#filters", Static).update(line, layout=False)  # one line, always

    # -- actions ------------------------------------------------------------------

    def action_cycle(self, step: int) -> None:
        self.status = FILTERS[(FILTERS.index(self.status) + step) % len(FILTERS)]
        self._show_filters()
        self.reload()

    def action_filter(self) -> None:
        box = self.query_one("#text-filter", Input)
        box.display = True
        box.value = self.text
        box.focus()

    @on(Input.Submitted, "#text-filter")
    def _filtered(self, event: Input.Submitted) -> None:
        self.text = event.value.strip()
        event.input.display = False
        self.rows.highlight = self._parts()[1] or None
        self._show_filters()
        self.reload()
        self.rows.focus()

    def action_clear(self) -> None:
        box = self.query_one("#text-filter", Input)
        if box.display:
            box.display = False
            self.rows.focus()
        elif self.text:
            self.text = ""
            self.rows.highlight = None
            self._show_filters()
            self.reload()

    @on(Rows.Chosen, "#workflow-rows")
    def _open(self, event: Rows.Chosen) -> None:
        from flovyn_tui.dashboard.detail import ExecutionScreen

        self.app.push_screen(ExecutionScreen(event.item["id"]))

    def action_copy(self) -> None:
        wf = self.rows.current
        if wf is not None:
            self.app.copy_to_clipboard(wf["id"])
            self.app.notify(f"copied {wf['id']}")

    def action_mark(self) -> None:
        self.rows.toggle_mark()
        self.rows.action_move(1)

    def action_retry(self) -> None:
        from flovyn_tui.dashboard.actions import retry_with_undo

        wf = self.rows.current
        if wf is not None:
            retry_with_undo(self.app, [wf])

    def action_cancel(self) -> None:
        from flovyn_tui.dashboard.actions import confirm_cancel

        wf = self.rows.current
        if wf is not None:
            confirm_cancel(self.app, [wf["id"]])

    def action_trigger(self) -> None:
        from flovyn_tui.dashboard.dialogs import TriggerScreen

        self.app.push_screen(TriggerScreen())

    def action_signal(self) -> None:
        from flovyn_tui.dashboard.dialogs import SignalScreen

        wf = self.rows.current
        if wf is not None:
            self.app.push_screen(SignalScreen(wf["id"], []))

    def action_bulk(self, what: str) -> None:
        from flovyn_tui.dashboard.actions import bulk

        marked = [wf for wf in self.rows.items if wf["id"] in self.rows.marked]
        exact, text = self._parts()
        bulk(self.app, what, marked, status=self._status(), exact=exact, text=text)
        self.rows.marked.clear()
        self.rows.refresh()
