"""The timeline: the execution's tree beside a Gantt chart on one time axis.

One line per node shown in the tree (collapsed nodes show their aggregate bar), one
bar per attempt: completed green, failed red, running yellow and growing with a
spinner (filled as far as its progress says), and what is waited for dotted (timers,
promises, the back-off before a retry). `+`/`-` zoom, `h`/`l` scroll, `Home` goes
to the start, `End` and `f` (follow) keep now in view.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.binding import Binding
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

from flovyn_tui.dashboard.model import Node
from flovyn_tui.output import STATUS, human_seconds

LABEL_WIDTH = 34
SCALES = [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 900, 3600]  # seconds a cell
SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
COLOURS = {
    "COMPLETED": "green",
    "FAILED": "red",
    "TIMEOUT": "red",
    "RUNNING": "yellow",
    "CANCELLED": "bright_black",
    "WAITING": "cyan",
    "PENDING": "bright_black",
}


class Timeline(ScrollView, can_focus=True):
    class Moved(Message):
        """The cursor is on `node` now."""

        def __init__(self, node: Node) -> None:
            super().__init__()
            self.node = node

    BINDINGS = [
        Binding("plus,equals_sign", "zoom(-1)", "Zoom in"),
        Binding("minus", "zoom(1)", "Zoom out"),
        Binding("h,left", "pan(-8)", "Earlier", show=False),
        Binding("l,right", "pan(8)", "Later", show=False),
        Binding("k,up", "move(-1)", "Up", show=False),
        Binding("j,down", "move(1)", "Down", show=False),
        Binding("pageup", "move(-10)", "Page up", show=False),
        Binding("pagedown", "move(10)", "Page down", show=False),
        Binding("home", "start", "Start", show=False),
        Binding("end", "now", "Now", show=False),
        Binding("f", "follow", "Follow"),
    ]

    follow: reactive[bool] = reactive(True)
    scale: reactive[int] = reactive(4)  # an index in SCALES
    cursor: reactive[int] = reactive(0)

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.lines: list[tuple[int, Node]] = []  # (depth, node) as shown
        self.origin: datetime | None = None
        self.offset_cells = 0
        self.frame = 0

    def show(self, lines: list[tuple[int, Node]]) -> None:
        first = [n.started for _, n in lines if n.started]
        self.lines = lines
        self.origin = min(first) if first else None
        if self.origin is not None and self.follow is True and self.offset_cells == 0:
            self._fit()
        self.virtual_size = Size(self.size.width, len(lines) + 1)
        self.refresh()

    def on_resize(self) -> None:
        # Fitted while hidden (no width yet), the chart is drawn too small: fit again.
        if self.follow and self.origin is not None:
            self._fit()
            self._keep_now()

    def tick(self) -> None:
        """Running bars grow: redraw, and keep now in view when following."""
        self.frame += 1
        if self.follow:
            self._keep_now()
        self.refresh()

    # -- the axis -------------------------------------------------------------------

    @property
    def seconds_per_cell(self) -> float:
        return SCALES[self.scale]

    @property
    def chart_width(self) -> int:
        return max(10, self.size.width - LABEL_WIDTH - 1)

    def _fit(self) -> None:
        """The smallest scale that fits the whole span."""
        if self.origin is None:
            return
        span = (self._end() - self.origin).total_seconds()
        for i, seconds in enumerate(SCALES):
            if span / seconds <= self.chart_width - 2:
                self.scale = i
                return
        self.scale = len(SCALES) - 1

    def _end(self) -> datetime:
        ends = [n.finished for _, n in self.lines if n.finished]
        running = any(n.running for _, n in self.lines)
        now = datetime.now(UTC)
        return now if running or not ends else max(ends)

    def _keep_now(self) -> None:
        """The latest moment (now while something runs, else the last end) in view,
        from the start when the whole span fits."""
        if self.origin is None:
            return
        cell = self._cell(self._end())
        if cell < self.chart_width - 2:
            self.offset_cells = 0
        elif cell >= self.offset_cells + self.chart_width - 1 or cell < self.offset_cells:
            self.offset_cells = max(0, cell - self.chart_width + 4)

    def _cell(self, when: datetime) -> int:
        assert self.origin is not None
        return int((when - self.origin).total_seconds() / self.seconds_per_cell)

    # -- drawing --------------------------------------------------------------------

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        if y == 0:
            return self._axis(width)
        index = y - 1 + round(self.scroll_y)
        if index >= len(self.lines) or self.origin is None:
            return Strip.blank(width)
        depth, node = self.lines[index]
        label = self._label(depth, node)
        chart = self._bars(node)
        line = label + Text(" ") + chart
        if index == self.cursor:
            line.stylize("reverse", 0, LABEL_WIDTH)
        line.truncate(width, pad=True)
        return Strip(list(line.render(self.app.console))).crop(0, width)

    def _axis(self, width: int) -> Strip:
        if self.origin is None:
            return Strip([Segment("no attempts yet".ljust(width), Style(dim=True))])
        step = 10
        text = Text(" " * LABEL_WIDTH, style="dim")
        text.append(" ")
        for cell in range(0, self.chart_width, step):
            at = (self.offset_cells + cell) * self.seconds_per_cell
            mark = f"|{human_seconds(at)}"
            text.append(mark[:step].ljust(step), style="dim")
        scale = (
            f" {human_seconds(self.seconds_per_cell)}/cell{'  following' if self.follow else ''}"
        )
        text.truncate(width - len(scale), pad=True)
        text.append(scale, style="bold dim")
        return Strip(list(text.render(self.app.console))).crop(0, width)

    def _label(self, depth: int, node: Node) -> Text:
        glyph, style = STATUS.get(node.status, ("?", ""))
        if node.retry_at is not None and node.status == "PENDING":
            glyph, style = "↻", "magenta"
        attempts = len(node.attempts)
        count = f" [{attempts}]" if attempts > 1 else ""
        text = Text("  " * depth)
        text.append(f"{glyph} ", style=style)
        text.append(node.label)
        text.append(count, style="bold red" if node.status == "FAILED" else "bold")
        text.truncate(LABEL_WIDTH, pad=True)
        return text

    def _bars(self, node: Node) -> Text:
        cells = [(" ", "")] * self.chart_width
        now = datetime.now(UTC)

        def paint(start: datetime | None, end: datetime | None, char: str, style: str) -> None:
            if start is None:
                return
            first = self._cell(start) - self.offset_cells
            last = self._cell(end or now) - self.offset_cells
            for c in range(max(0, first), min(self.chart_width, max(first, last) + 1)):
                cells[c] = (char, style)

        if node.kind in ("timer", "promise"):
            paint(node.started, node.finished, "┄", COLOURS.get(node.status, "cyan"))
        elif node.kind == "signal":
            paint(node.started, node.started, "◆", "cyan")
        elif node.attempts:
            previous_end: datetime | None = None
            for attempt in node.attempts:
                if previous_end is not None and attempt.started is not None:
                    paint(previous_end, attempt.started - timedelta(microseconds=1), "┄", "magenta")
                colour = COLOURS.get(attempt.status, "white")
                paint(attempt.started, attempt.finished, "█", colour)
                if attempt.finished is None and attempt.started is not None:
                    self._draw_running(cells, attempt.started, node.progress, now)
                previous_end = attempt.finished
            if node.retry_at is not None and previous_end is not None:
                paint(previous_end, node.retry_at, "┄", "magenta")
        else:
            style = COLOURS.get(node.status, "white")
            paint(
                node.started,
                node.finished,
                "▬" if node.kind in ("workflow", "group") else "█",
                style,
            )
        text = Text()
        for char, style in cells:
            text.append(char, style=style)
        return text

    def _draw_running(
        self, cells: list[tuple[str, str]], started: datetime, progress: float | None, now: datetime
    ) -> None:
        """A running attempt: filled as far as its progress, a spinner at its end."""
        first = self._cell(started) - self.offset_cells
        last = self._cell(now) - self.offset_cells
        done = first + int((last - first + 1) * (progress or 0.0))
        for c in range(max(0, first), min(self.chart_width, last + 1)):
            cells[c] = ("█" if c < done else "▒", "yellow")
        if 0 <= last < self.chart_width:
            cells[last] = (SPINNER[self.frame % len(SPINNER)], "bold yellow")

    # -- keys -----------------------------------------------------------------------

    def action_zoom(self, step: int) -> None:
        self.scale = max(0, min(len(SCALES) - 1, self.scale + step))
        self.refresh()

    def action_pan(self, cells: int) -> None:
        self.follow = False
        self.offset_cells = max(0, self.offset_cells + cells)
        self.refresh()

    def action_start(self) -> None:
        self.follow = False
        self.offset_cells = 0
        self.refresh()

    def action_now(self) -> None:
        self.follow = True
        self._keep_now()
        self.refresh()

    def action_follow(self) -> None:
        self.follow = not self.follow
        if self.follow:
            self._keep_now()
        self.refresh()

    def action_move(self, step: int) -> None:
        if self.lines:
            self.cursor = max(0, min(len(self.lines) - 1, self.cursor + step))
            self.scroll_to(y=max(0, self.cursor - self.size.height + 3), animate=False)
            self.refresh()
            self.post_message(self.Moved(self.lines[self.cursor][1]))
