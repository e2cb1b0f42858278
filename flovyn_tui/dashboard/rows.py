"""`Rows`: a list of any length that draws only the lines on screen.

The workflow table (tens of thousands of executions, paged in as the cursor nears
the end) and the log pane (a task's 100,000 lines) are both long lists whose items
change in place. Textual's DataTable keeps a widget-side copy of every cell and has
no insert-at-top; this keeps the items as they are (dicts from the API) and asks a
`render` callback for the few lines visible, so an update is a list operation and
a repaint of what shows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, Generic, TypeVar

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.binding import Binding
from textual.geometry import Region, Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

T = TypeVar("T")


class Rows(ScrollView, Generic[T], can_focus=True):
    """Items drawn one line each by `render(item, width)`, with a cursor."""

    DEFAULT_CSS = """
    Rows { height: 1fr; overflow-x: hidden; }
    Rows > .rows--cursor { background: $accent 40%; }
    Rows:focus > .rows--cursor { background: $accent 70%; }
    Rows > .rows--marked { color: $warning; }
    """
    COMPONENT_CLASSES = {"rows--cursor", "rows--marked"}
    BINDINGS = [
        Binding("up,k", "move(-1)", "Up", show=False),
        Binding("down,j", "move(1)", "Down", show=False),
        Binding("pageup", "page(-1)", "Page up", show=False),
        Binding("pagedown", "page(1)", "Page down", show=False),
        Binding("home", "jump(0)", "First", show=False),
        Binding("end", "jump(-1)", "Last", show=False),
        Binding("enter", "choose", "Open", show=False),
    ]

    cursor: reactive[int] = reactive(0, always_update=True, repaint=False)

    class _Message(Message):
        def __init__(self, rows: Rows[Any], item: Any = None) -> None:
            super().__init__()
            self.rows = rows
            self.item = item

        @property
        def control(self) -> Rows[Any]:  # what `@on(..., "#id")` matches
            return self.rows

    class Highlighted(_Message):
        """The cursor moved to `item`."""

    class Chosen(_Message):
        """`enter` (or a click) on `item`."""

    class NearEnd(_Message):
        """The cursor is close to the last item: time to fetch the next page."""

    def __init__(
        self,
        render: Callable[[T, int], Text],
        *,
        key: Callable[[T], str] | None = None,
        near_end: int = 30,
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self._render_item = render
        self._key = key
        self._near_end = near_end
        self.items: list[T] = []
        # key -> a number whose difference with `_top` is the item's index: an insert at
        # the top is O(1) (tens of thousands of rows, changes arriving by hundreds a second)
        self._seq: dict[str, int] = {}
        self._top = 0
        self.marked: set[str] = set()
        self.highlight: str | None = None  # a search term to underline

    # -- content --------------------------------------------------------------------

    def _reindex(self) -> None:
        key = self._key
        self._seq = {} if key is None else {key(item): i for i, item in enumerate(self.items)}
        self._top = 0

    def set_items(self, items: Iterable[T]) -> None:
        self.items = list(items)
        self._reindex()
        self.cursor = min(self.cursor, max(0, len(self.items) - 1))
        self._resized()
        if self.items:
            self.post_message(self.Highlighted(self, self.items[self.cursor]))

    def extend(self, items: Iterable[T]) -> None:
        added = list(items)
        if self._key is not None:
            end = self._top + len(self.items)
            self._seq.update({self._key(item): end + i for i, item in enumerate(added)})
        self.items.extend(added)
        self._resized()

    def insert_top(self, items: list[T]) -> None:
        """New first items (the first one on top); the cursor stays on the row it was on
        (unless at the top), without a Highlighted message for each."""
        self.items[0:0] = items
        if self._key is not None:
            for item in reversed(items):
                self._top -= 1
                self._seq[self._key(item)] = self._top
        self._resized()
        if self.cursor > 0:
            self.set_reactive(Rows.cursor, self.cursor + len(items))
            self.scroll_to(y=self.scroll_y + len(items), animate=False, immediate=True)

    def insert_at(self, index: int, item: T) -> None:
        """An item at `index` (not the top): the cursor stays on its row."""
        self.items.insert(index, item)
        self._reindex()
        if self.cursor >= index and self.cursor > 0:
            self.cursor += 1
        self._resized()

    def replace(self, index: int, item: T) -> None:
        self.items[index] = item
        self.refresh_line(index)

    def remove_at(self, index: int) -> None:
        del self.items[index]
        self._reindex()
        if self.cursor > index:
            self.cursor -= 1
        self._resized()

    def index_of(self, key: str) -> int | None:
        seq = self._seq.get(key)
        return None if seq is None else seq - self._top

    @property
    def current(self) -> T | None:
        return self.items[self.cursor] if 0 <= self.cursor < len(self.items) else None

    def toggle_mark(self) -> None:
        item = self.current
        if item is None or self._key is None:
            return
        key = self._key(item)
        self.marked.symmetric_difference_update({key})
        self.refresh_line(self.cursor)

    @property
    def _width(self) -> int:
        return self.scrollable_content_region.width  # without the vertical scrollbar

    def _resized(self) -> None:
        self.virtual_size = Size(self._width, len(self.items))
        self.refresh()

    def refresh_line(self, index: int) -> None:
        y = index - round(self.scroll_y)
        if 0 <= y < self.size.height:
            self.refresh(Region(0, y, self.size.width, 1))

    # -- drawing --------------------------------------------------------------------

    def render_line(self, y: int) -> Strip:
        index = y + round(self.scroll_y)
        width = self._width
        if index >= len(self.items):
            return Strip.blank(width, self.rich_style)
        item = self.items[index]
        text = self._render_item(item, width)
        if self.highlight:
            text.highlight_words([self.highlight], "underline bold", case_sensitive=False)
        style: Style = self.rich_style
        if self._key is not None and self._key(item) in self.marked:
            style = style + self.get_component_rich_style("rows--marked")
            text = Text("● ") + text
        if index == self.cursor:
            style = style + self.get_component_rich_style("rows--cursor")
        text.truncate(width, pad=True)
        segments = [
            Segment(s.text, style + s.style if s.style else style)
            for s in text.render(self.app.console)
        ]
        return Strip(segments).crop(0, width)

    # -- moving ---------------------------------------------------------------------

    def watch_cursor(self, old: int, new: int) -> None:
        self.refresh_line(old)
        self.refresh_line(new)
        if self.items:
            self.scroll_to_region(Region(0, new, 1, 1), animate=False, immediate=True, force=True)
            self.post_message(self.Highlighted(self, self.items[new]))
            if new >= len(self.items) - self._near_end:
                self.post_message(self.NearEnd(self))

    def on_resize(self) -> None:
        self.virtual_size = Size(self._width, len(self.items))

    def action_move(self, step: int) -> None:
        if self.items:
            self.cursor = max(0, min(len(self.items) - 1, self.cursor + step))

    def action_page(self, direction: int) -> None:
        self.action_move(direction * max(1, self.size.height - 1))

    def action_jump(self, where: int) -> None:
        if self.items:
            self.cursor = len(self.items) - 1 if where < 0 else 0

    def action_choose(self) -> None:
        if self.current is not None:
            self.post_message(self.Chosen(self, self.current))

    def on_click(self, event: Any) -> None:
        index = event.y + round(self.scroll_y)
        if 0 <= index < len(self.items):
            self.cursor = index


def columns(cells: Sequence[tuple[Text | str, int]]) -> Text:
    """Cells of fixed widths (the last one takes what is left), two spaces apart."""
    line = Text(no_wrap=True, overflow="ellipsis")
    for n, (cell, width) in enumerate(cells):
        text = cell if isinstance(cell, Text) else Text(str(cell))
        if n < len(cells) - 1:
            text = text.copy()
            text.truncate(width, overflow="ellipsis", pad=True)
            line.append_text(text)
            line.append("  ")
        else:
            line.append_text(text)
    return line
