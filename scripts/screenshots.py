#!/usr/bin/env python3
"""Screenshots of the dashboard, for the README: `screenshots/<screen>.svg` and `.png`.

The real app (`flovyn demo`'s setup: an embedded server on SQLite in a temporary
folder, the demo worker, a trickle of triggers) driven with Textual's pilot, the keys a
person would press: the list; the first order, whose card was charged on the third
attempt (tree, timeline, logs); the import whose item 7 failed (tree, events, data);
workers, definitions and help. The PNGs come from the SVGs, drawn by headless Chromium.

    python3 scripts/screenshots.py                 # into screenshots/
    python3 scripts/screenshots.py --out /tmp/shots --chromium /usr/bin/chromium

The data is live, so two runs differ in ids, times and the rows of the list.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import math
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from textual.pilot import Pilot  # noqa: E402
from textual.widgets import DataTable, TabbedContent, Tree  # noqa: E402

from flovyn_tui.dashboard.app import FlovynApp, Target, log_to  # noqa: E402
from flovyn_tui.dashboard.definitions import DefinitionsView, WorkersView  # noqa: E402
from flovyn_tui.dashboard.detail import ExecutionScreen  # noqa: E402
from flovyn_tui.dashboard.dialogs import HelpScreen  # noqa: E402
from flovyn_tui.dashboard.embedded import EmbeddedServer, Local  # noqa: E402
from flovyn_tui.dashboard.rows import Rows  # noqa: E402
from flovyn_tui.dashboard.timeline import SCALES, Timeline  # noqa: E402
from flovyn_tui.dashboard.workflows import WorkflowsView  # noqa: E402
from flovyn_tui.demo import demo_worker, trickle  # noqa: E402
from flovyn_worker import Client  # noqa: E402

SIZE = (140, 40)  # columns, lines
EVERY_S = 0.5  # between two triggers of the trickle
WARM_S = 8.0  # of trickle before the list is shot: a screenful of rows


class Shooter:
    """Drives the app and saves what it shows."""

    def __init__(self, app: FlovynApp, pilot: Pilot[Any], out: Path) -> None:
        self.app, self.pilot, self.out = app, pilot, out
        self.saved: list[Path] = []

    async def until(self, check: Callable[[], bool], what: str, within: float = 30.0) -> None:
        deadline = time.monotonic() + within
        while not check():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what}: not within {within:.0f}s")
            await self.pilot.pause(0.05)

    def busy(self, node: object, groups: set[str] | None = None) -> bool:
        return any(
            w.node is node and not w.is_finished and (groups is None or w.group in groups)
            for w in self.app.workers
        )

    async def press(self, *keys: str) -> None:
        await self.pilot.press(*keys)
        await self.pilot.pause(0.2)

    async def shot(self, name: str) -> None:
        await self.pilot.pause(0.3)
        await self.pilot.wait_for_scheduled_animations()
        path = self.out / f"{name}.svg"
        path.write_text(self.app.export_screenshot())
        self.saved.append(path)
        print(f"  {path}", flush=True)

    @property
    def client(self) -> Client:
        assert self.app.client is not None
        return self.app.client

    @property
    def view(self) -> WorkflowsView:
        return self.app.screen_stack[0].query_one(WorkflowsView)

    # -- finding the executions worth showing -------------------------------------

    async def retried_order(self) -> str | None:
        """The first order whose charge-card took more than one attempt, once ended."""
        page = await self.client.workflow_page(kind="order", status="COMPLETED", limit=200)
        for wf in reversed(page["workflows"]):  # oldest first
            if wf["parentWorkflowExecutionId"]:
                continue
            tasks = (await self.client.workflow_tasks(wf["id"]))["tasks"]
            if any(t["kind"] == "charge-card" and t["executionCount"] > 1 for t in tasks):
                return str(wf["id"])
        return None

    async def failed_import(self) -> str | None:
        page = await self.client.workflow_page(kind="import", status="FAILED", limit=20)
        return str(page["workflows"][-1]["id"]) if page["workflows"] else None

    async def find(self, look: Callable[[], Any], what: str) -> str:
        deadline = time.monotonic() + 60
        while (found := await look()) is None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {what} within 60s")
            await asyncio.sleep(0.5)
        return str(found)

    # -- the screens --------------------------------------------------------------

    async def open(self, workflow_id: str) -> ExecutionScreen:
        """`/` and the id's first characters filter the list to it; `enter` opens it."""
        await self.press("slash", *workflow_id[:8], "enter")
        rows = self.view.rows
        await self.until(
            lambda: [wf["id"] for wf in rows.items] == [workflow_id], "the list filtered"
        )
        await self.press("enter")
        await self.until(lambda: isinstance(self.app.screen, ExecutionScreen), "the screen opens")
        screen = self.app.screen
        assert isinstance(screen, ExecutionScreen)
        await self.until(lambda: screen.root is not None, "the execution is read")
        await self.until(lambda: not self.busy(screen, {"stream"}), "its stream ends")
        await self.pilot.pause(0.6)  # the reload the stream's last events asked for
        await self.until(lambda: not self.busy(screen, {"load", "logs"}), "it is shown")
        return screen

    async def back(self) -> None:
        """`esc` leaves the execution, `esc` again clears the filter."""
        await self.press("escape")
        await self.press("escape")
        await self.until(lambda: not self.view.text, "the filter cleared")

    async def tree_to(self, screen: ExecutionScreen, wanted: Callable[[Any], bool]) -> None:
        """`1` (the tree pane, focused), then `j` down until the node `wanted` is selected."""
        await self.press("1")
        tree = screen.query_one("#node-tree", Tree)
        for _ in range(60):
            node = tree.cursor_node
            if node is not None and node.data is not None and wanted(node.data):
                return
            await self.press("j")
        raise LookupError("no such node in the tree")

    async def zoom_to_fit(self, screen: ExecutionScreen) -> None:
        """`+` while the whole execution still fits the chart at the finer scale."""
        timeline = screen.query_one("#gantt", Timeline)
        starts = [n.started for _, n in timeline.lines if n.started]
        ends = [n.finished for _, n in timeline.lines if n.finished]
        if not starts or not ends:
            return
        span = (max(ends) - min(starts)).total_seconds()
        while timeline.scale > 0 and span / SCALES[timeline.scale - 1] <= timeline.chart_width - 2:
            await self.press("plus")

    async def run(self) -> None:
        app, view = self.app, self.view
        await self.until(app.ready.is_set, "the embedded server starts", 60)
        order_id = await self.find(self.retried_order, "order with a retried charge")
        import_id = await self.find(self.failed_import, "failed import")
        await self.pilot.pause(max(0.0, WARM_S - 2))
        await self.until(lambda: len(view.rows.items) > 0, "the list shows rows")
        view.rows.focus()
        await self.press("home")
        await self.shot("list")

        await self.press("question_mark")
        await self.until(lambda: isinstance(app.screen, HelpScreen), "help shows")
        await self.shot("help")
        await self.press("escape")

        screen = await self.open(order_id)
        await self.tree_to(screen, lambda n: n.label == "charge-card")
        await self.shot("tree")
        await self.press("2")
        await self.zoom_to_fit(screen)
        await self.press("j", "j")  # the timeline's cursor to charge-card, as in the tree
        await self.shot("timeline")
        await self.press("3")
        logs = screen.query_one("#log-rows", Rows)
        await self.until(lambda: len(logs.items) > 0, "the logs are read")
        await self.shot("logs")
        await self.back()

        screen = await self.open(import_id)
        await self.tree_to(screen, lambda n: n.kind == "task" and n.status == "FAILED")
        await self.shot("failed-import")
        await self.press("4")
        events = screen.query_one("#event-rows", Rows)
        tabs = screen.query_one("#tabs", TabbedContent)
        for _ in range(len(events.items)):
            current = events.current
            if current is not None and current["eventType"] == "TASK_FAILED":
                break
            await self.press("j")
        await self.shot("events")
        # From the events list `5` does not leave the Events tab (the focus falls to the
        # event's JSON beside it, which takes the tab back): by way of the tree.
        await self.press("1", "5")
        await self.until(lambda: tabs.active == "data", "the Data tab shows")
        await self.shot("data")
        await self.back()

        for key, name, listing in (
            ("o", "workers", WorkersView),
            ("d", "definitions", DefinitionsView),
        ):
            await self.press(key)
            shown = app.query_one(listing)
            table = shown.query_one(DataTable)
            await self.until(
                lambda: table.row_count > 0 and not self.busy(shown),  # noqa: B023
                f"the {name} are read",
            )
            table.refresh()  # its header line may keep the widths from before the rows
            await self.shot(name)
        await self.press("w")


async def stop_demo(app: FlovynApp) -> None:
    """The demo worker and trickle, ended before the app stops its server. (The app's
    own shutdown waits for its workers until the first of them is done, not for all.)"""
    for worker in list(app.workers):
        if worker.group == "on-ready":
            worker.cancel()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(worker.wait(), 15)


async def shoot(out: Path) -> list[Path]:
    """The SVGs, in `out`."""
    with tempfile.TemporaryDirectory(prefix="flovyn-screenshots-") as folder:
        data = Path(folder)
        log_to(data / "flovyn.log")  # the server's and the tasks' log lines: not on stdout

        async def start(local: Local) -> None:
            async with demo_worker(local):
                await trickle(local, every=EVERY_S)

        app = FlovynApp(Target(None, None, None), embedded=EmbeddedServer(data), on_ready=start)
        try:
            async with app.run_test(size=SIZE) as pilot:
                shooter = Shooter(app, pilot, out)
                await shooter.run()
                await stop_demo(app)
        finally:
            logging.shutdown()  # the log file's folder goes next
            logging.getLogger().handlers.clear()
        return shooter.saved


def svg_size(svg: Path) -> tuple[int, int]:
    """The SVG's width and height in pixels (its viewBox), rounded up."""
    found = re.search(r'viewBox="0 0 ([\d.]+) ([\d.]+)"', svg.read_text())
    if found is None:
        raise ValueError(f"{svg}: no viewBox")
    return math.ceil(float(found[1])), math.ceil(float(found[2]))


def to_png(svg: Path, chromium: str) -> Path:
    """`svg` drawn by headless Chromium into a PNG of the same size beside it."""
    png = svg.with_suffix(".png")
    width, height = svg_size(svg)
    subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            f"--window-size={width},{height}",
            f"--screenshot={png.resolve()}",
            svg.resolve().as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    print(f"  {png}", flush=True)
    return png


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "screenshots", help="where to write")
    parser.add_argument(
        "--chromium",
        default=shutil.which("chromium") or shutil.which("chromium-browser") or "/usr/bin/chromium",
        help="the Chromium that draws the PNGs",
    )
    parser.add_argument("--no-png", action="store_true", help="the SVGs only")
    args = parser.parse_args(argv)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    print(f"dashboard screenshots into {out}")
    saved = asyncio.run(shoot(out))
    if not args.no_png:
        if not Path(args.chromium).exists():
            print(f"no Chromium at {args.chromium}: pass --chromium, or --no-png", file=sys.stderr)
            return 1
        for svg in saved:
            to_png(svg, args.chromium)
    return 0


if __name__ == "__main__":
    sys.exit(main())
