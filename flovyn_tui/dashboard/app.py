"""`flovyn tui`: the dashboard.

The app owns the connection (a `Client` of a remote server, or of a server it
embeds), the tenant feed (one stream for every view of it) and the header; the
views and screens own their state and talk to the server only through the client.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Static, TabbedContent, TabPane

from flovyn_worker import Client, FlovynApiError
from flovyn_worker.sse import StreamEvent

if TYPE_CHECKING:  # the embedded server is imported only by those who embed one
    from flovyn_tui.dashboard.embedded import EmbeddedServer, Local


def guarded(**options: Any) -> Callable[[Callable[..., Awaitable[Any]]], Any]:
    """`@work` for a method of a widget or screen, whose errors become notifications:
    a server that refuses or goes away never ends the dashboard with a traceback."""

    def wrap(fn: Callable[..., Awaitable[Any]]) -> Any:
        @functools.wraps(fn)
        async def run(self: Any, *args: Any, **kwargs: Any) -> Any:
            try:
                return await fn(self, *args, **kwargs)
            except Exception as exc:
                self.app.report(exc)
                return None

        return work(exit_on_error=False, **options)(run)

    return wrap


@dataclass(frozen=True)
class Target:
    """Where the dashboard connects: a server, or None to embed one."""

    server: str | None
    tenant: str | None
    api_key: str | None


FEED_BATCH_S = 0.05  # feed events applied together: one repaint and layout per batch


class FeedEvent(Message):
    """Changes of executions from the tenant feed: those since the previous message."""

    def __init__(self, events: list[StreamEvent]) -> None:
        super().__init__()
        self.events = events


class Connection(Message):
    """The feed connected (True) or lost its connection (False)."""

    def __init__(self, live: bool) -> None:
        super().__init__()
        self.live = live


class Header(Static):
    """Where the dashboard is connected, whether it is live, and how a worker joins."""

    def show(self, target: str, tenant: str, live: bool | None, local: Local | None) -> None:
        mark = (
            Text("● LIVE", style="bold green")
            if live
            else Text("◌ connecting" if live is None else "◌ reconnecting…", style="bold yellow")
        )
        line = Text.assemble(("Flovyn ", "bold"), mark, "  ", target, "  tenant ", (tenant, "bold"))
        if local is not None:
            line.append("\nworker: ", style="dim")
            line.append(local.worker_line())
        self.update(line)


class FlovynApp(App[int]):
    CSS_PATH = "app.tcss"
    TITLE = "Flovyn"
    BINDINGS = [
        Binding("q", "quit", "Quit"),
        Binding("question_mark", "help", "Help", key_display="?"),
        Binding("w", "show('workflows')", "Workflows"),
        Binding("T", "show('tasks')", "Tasks"),
        Binding("S", "show('schedules')", "Schedules"),
        Binding("o", "show('workers')", "Workers"),
        Binding("d", "show('definitions')", "Definitions"),
        Binding("u", "undo", "Undo", show=False),
    ]

    def __init__(
        self,
        target: Target,
        *,
        embedded: EmbeddedServer | None = None,
        feed: bool = True,
        on_ready: Callable[[Local], Awaitable[None]] | None = None,
    ) -> None:
        super().__init__()
        self.target = target
        self.embedded = embedded
        self.local: Local | None = None
        self.client: Client | None = None
        self.live: bool | None = None
        self.connection_changes: list[bool] = []  # for tests: what the header went through
        self._feed = feed
        self._on_ready = on_ready
        self.ready = asyncio.Event()
        self.pending: Any = None  # an action waiting out its undo window (actions.py)

    # -- start and stop -----------------------------------------------------------

    def compose(self) -> ComposeResult:
        from flovyn_tui.dashboard.definitions import DefinitionsView, WorkersView
        from flovyn_tui.dashboard.tasks import SchedulesView, TasksView
        from flovyn_tui.dashboard.workflows import WorkflowsView

        yield Header(id="header")
        with TabbedContent(id="main"):
            with TabPane("Workflows", id="workflows"):
                yield WorkflowsView()
            with TabPane("Tasks", id="tasks"):
                yield TasksView()
            with TabPane("Schedules", id="schedules"):
                yield SchedulesView()
            with TabPane("Workers", id="workers"):
                yield WorkersView()
            with TabPane("Definitions", id="definitions"):
                yield DefinitionsView()
        yield Static(id="notice")
        yield Footer()

    async def on_mount(self) -> None:
        self.connect()

    @guarded(exclusive=True, group="connect")
    async def connect(self) -> None:
        key: str | None
        if self.embedded is not None:
            self.local = await self.embedded.start()
            url, tenant, key = self.local.url, self.local.tenant, self.local.api_key
        else:
            url = self.target.server or "http://127.0.0.1:8000"
            tenant, key = self.target.tenant or "", self.target.api_key
        self.client = Client(url, tenant=tenant, api_key=key)
        self._header()
        try:
            await self.client.get_tenant()
        except FlovynApiError as exc:
            self.notify(f"{exc.message} (HTTP {exc.status})", severity="error", timeout=30)
            return
        except OSError as exc:
            self.notify(f"cannot reach {url}: {exc}", severity="error", timeout=30)
            return
        self.ready.set()
        from flovyn_tui.dashboard.workflows import WorkflowsView

        self.query_one(WorkflowsView).start()
        if self._feed:
            self.follow_feed()
        if self._on_ready is not None and self.local is not None:
            self.run_worker(self._on_ready(self.local), group="on-ready")

    def _header(self) -> None:
        if self.client is None:
            return
        transport = self.client._transport
        self.query_one(Header).show(
            transport.server_url, transport.tenant or "-", self.live, self.local
        )

    async def on_unmount(self) -> None:
        # The demo's worker and the streams end before the server they talk to.
        running = list(self.workers)
        self.workers.cancel_all()
        with contextlib.suppress(Exception):  # each one's end, cancelled or not
            await asyncio.wait_for(
                asyncio.gather(*(w.wait() for w in running), return_exceptions=True), 10
            )
        if self.client is not None:
            await self.client.close()
        if self.embedded is not None:
            await self.embedded.stop()

    # -- the tenant feed ----------------------------------------------------------

    @guarded(exclusive=True, group="feed")
    async def follow_feed(self) -> None:
        assert self.client is not None

        def state(live: bool) -> None:
            self.post_message(Connection(live))

        stream = self.client.stream_feed(on_connection=state)
        batch: list[StreamEvent] = []

        def flush() -> None:
            if batch:
                self.post_message(FeedEvent(batch[:]))
                batch.clear()

        async with contextlib.aclosing(stream) as events:
            async for event in events:
                if not batch:
                    self.set_timer(FEED_BATCH_S, flush)
                batch.append(event)

    def on_connection(self, message: Connection) -> None:
        if message.live != self.live:
            self.live = message.live
            self.connection_changes.append(message.live)
            self._header()
            if message.live is False:
                self.notify("connection lost: reconnecting", severity="warning")

    def on_feed_event(self, message: FeedEvent) -> None:
        from flovyn_tui.dashboard.workflows import WorkflowsView

        for screen in self.screen_stack:  # the list may sit under an execution's screen
            for view in screen.query(WorkflowsView):
                view.feed(message.events)
            on_feed = getattr(screen, "on_feed", None)
            if on_feed is not None:
                for event in message.events:
                    on_feed(event)

    # -- actions ------------------------------------------------------------------

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        """The palette (ctrl+p) offers every key of the screen as well."""
        yield from super().get_system_commands(screen)
        seen: set[str] = set()
        for key, active in screen.active_bindings.items():
            binding = active.binding
            if not binding.description or binding.description in seen or key in ("ctrl+p",):
                continue
            seen.add(binding.description)
            node, action = active.node, binding.action

            def run(node: Any = node, action: str = action) -> None:
                self.call_later(self.run_action, action, node)

            yield SystemCommand(
                f"{binding.description} ({binding.key_display or key})", action, run
            )

    def action_show(self, tab: str) -> None:
        self.query_one("#main", TabbedContent).active = tab
        target = self.query_one(f"#{tab}").query("Rows, DataTable").first()
        target.focus()  # the keys of the view shown, not of the one left

    def action_undo(self) -> None:
        if self.pending is not None and self.pending.undo():
            return
        self.notify("nothing to undo")

    def action_help(self) -> None:
        from flovyn_tui.dashboard.dialogs import HelpScreen

        self.push_screen(HelpScreen())

    def report(self, exc: BaseException) -> None:
        """A server's refusal as a notification, never a traceback."""
        if isinstance(exc, FlovynApiError):
            self.notify(f"{exc.message} (HTTP {exc.status})", severity="error")
        else:
            self.notify(f"{type(exc).__name__}: {exc}", severity="error")


def log_to(path: Path) -> None:
    """Log lines (the embedded server's, the demo worker's tasks') to a file: on the
    terminal they would tear through the dashboard."""
    path.parent.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(
        filename=path,
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        force=True,
    )


def api(app: Any) -> Client:
    """The app's client, for its views."""
    client = app.client
    if client is None:
        raise RuntimeError("not connected yet")
    assert isinstance(client, Client)
    return client
