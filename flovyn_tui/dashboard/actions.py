"""What the keys do to executions: retry with an undo window, cancel after a
confirmation, and both in bulk (the selected rows, or every one the filter matches)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from textual.app import App
from textual.widgets import Static

from flovyn_tui.dashboard.app import api

UNDO_S = 3  # seconds during which `u` takes a retry back
OPEN = {"PENDING", "RUNNING", "WAITING"}


class Pending:
    """An action sent after a countdown unless `u` comes first: one at a time."""

    def __init__(self, app: App[Any], label: str, act: Callable[[], Awaitable[None]]) -> None:
        self.app = app
        self.label = label
        self.act = act
        self.task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        notice = self.app.screen.query_one("#notice", Static)  # on the screen it began on
        try:
            for left in range(UNDO_S, 0, -1):
                notice.update(f"↻ {self.label} in {left}s: press u to undo")
                notice.display = True
                await asyncio.sleep(1)
        except asyncio.CancelledError:
            notice.update(f"undone: {self.label}")
            await asyncio.sleep(1.5)
            notice.display = False
            raise
        notice.display = False
        try:
            await self.act()
        except Exception as exc:
            self.app.report(exc)  # type: ignore[attr-defined]

    def undo(self) -> bool:
        if self.task.done():
            return False
        self.task.cancel()
        return True


def retry_with_undo(app: App[Any], workflows: list[dict[str, Any]]) -> None:
    failed = [wf for wf in workflows if wf["status"] == "FAILED"]
    if not failed:
        app.notify("only a FAILED execution can be retried", severity="warning")
        return
    current: Pending | None = getattr(app, "pending", None)
    if current is not None:
        current.undo()

    async def act() -> None:
        for wf in failed:
            answer = await api(app).retry_workflow(wf["id"])
            app.notify(
                f"retrying {wf['kind']} {wf['id'][:8]}: attempt {answer['retryAttempt'] + 1}"
            )

    label = f"retry of {failed[0]['kind']} {failed[0]['id'][:8]}"
    if len(failed) > 1:
        label = f"retry of {len(failed)} executions"
    app.pending = Pending(app, label, act)  # type: ignore[attr-defined]


def confirm_cancel(app: App[Any], ids: list[str]) -> None:
    from flovyn_tui.dashboard.dialogs import ConfirmScreen

    async def act() -> None:
        for wf_id in ids:
            answer = await api(app).cancel_workflow(wf_id, reason="cancelled from the dashboard")
            app.notify(f"{wf_id[:8]}: {answer['status']}")

    def answered(yes: bool | None) -> None:
        if yes:
            app.run_worker(_reporting(app, act), group="actions")

    what = f"execution {ids[0]}" if len(ids) == 1 else f"{len(ids)} executions"
    app.push_screen(ConfirmScreen(f"Cancel {what} and its children?"), answered)


def bulk(
    app: App[Any],
    what: str,
    marked: list[dict[str, Any]],
    *,
    status: str | None,
    exact: dict[str, str],
    text: str,
) -> None:
    """Retry or cancel the marked rows, or, when none is marked, every execution the
    filter matches (read from the server, not only the loaded pages)."""
    from flovyn_tui.dashboard.dialogs import ConfirmScreen

    wanted = {"FAILED"} if what == "retry" else OPEN

    async def gather() -> list[dict[str, Any]]:
        if marked:
            return [wf for wf in marked if wf["status"] in wanted]
        found = []
        statuses = sorted(wanted if status is None else wanted & {status})
        if not statuses:
            return []
        kind, queue = exact.get("kind"), exact.get("queue")
        walk = api(app).list_workflows(status=statuses, kind=kind, queue=queue, page_size=1000)
        async for wf in walk:
            if not text or any(text.lower() in str(wf[f]).lower() for f in ("kind", "id", "queue")):
                found.append(dict(wf))
        return found

    async def run() -> None:
        targets = await gather()
        if not targets:
            app.notify(f"nothing to {what}: no {' or '.join(sorted(wanted))} execution here")
            return
        scope = "selected" if marked else "matching the filter"

        async def act() -> None:
            done = 0
            for wf in targets:
                if what == "retry":
                    await api(app).retry_workflow(wf["id"], note="bulk retry from the dashboard")
                else:
                    await api(app).cancel_workflow(
                        wf["id"], reason="bulk cancel from the dashboard"
                    )
                done += 1
            app.notify(f"{what}: {done} of {len(targets)} executions")

        def answered(yes: bool | None) -> None:
            if yes:
                app.run_worker(_reporting(app, act), group="actions")

        question = f"{what.capitalize()} {len(targets)} executions ({scope})?"
        app.push_screen(ConfirmScreen(question), answered)

    app.run_worker(_reporting(app, run), group="actions")


async def _reporting(app: App[Any], act: Callable[[], Awaitable[None]]) -> None:
    try:
        await act()
    except Exception as exc:
        app.report(exc)  # type: ignore[attr-defined]
