"""One execution: its tree, timeline, logs, events and data, live.

The screen follows the execution's consolidated stream (its history and its
descendants') and re-reads the tree when something changed (a quarter of a second
after the first change, so a burst costs one read); the log pane follows the task
stream of the selected task's execution and appends its lines as they come.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from rich.json import JSON
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Static, TabbedContent, TabPane, Tree
from textual.widgets.tree import TreeNode

from flovyn_tui.dashboard.app import Connection, api, guarded
from flovyn_tui.dashboard.model import Node, build, summarize, workflow_node
from flovyn_tui.dashboard.rows import Rows, columns
from flovyn_tui.dashboard.timeline import Timeline
from flovyn_tui.output import LEVELS, STATUS, duration, human_seconds, local_time
from flovyn_worker import Client

DEPTH = 2  # child executions read at once, below the root; deeper ones on expand
DEBOUNCE_S = 0.25
LOG_LEVELS = [None, "INFO", "WARN", "ERROR"]
WIDE = 120  # columns from which tree and details sit side by side


def _glyph(node: Node) -> Text:
    glyph, style = STATUS.get(node.status, ("?", ""))
    if node.retry_at is not None and node.status == "PENDING":
        glyph, style = "↻", "magenta"
    return Text(glyph, style=style)


def _span(node: Node) -> str:
    if node.started is None:
        return ""
    return duration(node.started.isoformat(), node.finished.isoformat() if node.finished else None)


def node_label(node: Node) -> Text:
    text = Text.assemble(_glyph(node), " ", node.label)
    if len(node.attempts) > 1:
        text.append(
            f" [{len(node.attempts)}]", style="bold red" if node.status == "FAILED" else "bold"
        )
    if node.progress is not None and node.running:
        text.append(f" {node.progress * 100:.0f}%", style="yellow")
    if span := _span(node):
        text.append(f"  {span}", style="dim")
    if not node.loaded:
        text.append("  (expand to load)", style="dim italic")
    return text


def log_line(item: dict[str, Any], width: int) -> Text:
    if "separator" in item:
        return Text(f"──── attempt {item['separator']} " + "─" * max(0, width), style="bold dim")
    level = item["level"]
    return Text.assemble(
        (local_time(item["timestamp"]) + " ", "dim"),
        (f"{level:<5} ", LEVELS.get(level, "")),
        item["message"],
    )


def event_line(item: dict[str, Any], width: int) -> Text:
    return columns(
        [
            (str(item["sequence"]), 5),
            (local_time(item["timestamp"]), 19),
            (item.get("workflowExecutionId", "")[:8], 8),
            (Text(item["eventType"], style="bold"), 0),
        ]
    )


class NodeTree(Tree[Node]):
    """The execution's tree, with vi keys as everywhere else."""

    BINDINGS = [
        Binding("j", "cursor_down", "Down", show=False),
        Binding("k", "cursor_up", "Up", show=False),
        Binding("h", "cursor_parent", "Parent", show=False),
    ]


class ExecutionScreen(Screen[None]):
    CSS_PATH = "detail.tcss"
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("1", "tab('tree')", "Tree"),
        Binding("2", "tab('timeline')", "Timeline"),
        Binding("3", "tab('logs')", "Logs"),
        Binding("4", "tab('events')", "Events"),
        Binding("5", "tab('data')", "Data"),
        Binding("r", "retry", "Retry"),
        Binding("c", "cancel", "Cancel"),
        Binding("s", "signal", "Signal"),
        Binding("y", "copy", "Copy id"),
        Binding("L", "layout", "Layout", show=False),
        Binding("l", "level", "Log level", show=False),
        Binding("slash", "search", "Search logs", show=False),
        Binding("f", "follow", "Follow", show=False),
    ]

    def __init__(self, workflow_id: str) -> None:
        super().__init__()
        self.workflow_id = workflow_id
        self.root: Node | None = None
        self.selected: Node | None = None
        self.collapsed: set[str] = set()
        self.expanded_children: set[str] = set()
        self.level_index = 0
        self.search = ""
        self.follow_logs = True
        self.log_task: str | None = None
        self._reload_due = False
        self.live: bool | None = None
        self.ended = False  # its stream said `end` (a retry may re-open it)
        self.stacked: bool | None = None

    def compose(self) -> ComposeResult:
        yield Static(id="summary")
        with TabbedContent(id="tabs", initial="tree"):
            with TabPane("1 Tree", id="tree"):
                with Horizontal(id="overview"):
                    yield NodeTree("execution", id="node-tree")
                    yield Static(id="node-detail")
            with TabPane("2 Timeline", id="timeline"):
                yield Timeline(id="gantt")
                yield Static(id="gantt-detail")
            with TabPane("3 Logs", id="logs"):
                yield Static(id="log-header")
                yield Rows(log_line, id="log-rows", near_end=0)
            with TabPane("4 Events", id="events"):
                with Horizontal():
                    yield Rows(event_line, id="event-rows", near_end=0)
                    with VerticalScroll(id="event-json-box"):
                        yield Static(id="event-json")
            with TabPane("5 Data", id="data"):
                with VerticalScroll(id="data-box"):
                    yield Static(id="node-data")
        yield Static(id="notice")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#node-tree", Tree).show_root = True
        self.load()
        self.follow_execution()
        self.set_interval(DEBOUNCE_S, self._maybe_reload)
        self.set_interval(0.5, self._tick)
        self._arrange()
        self.query_one("#node-tree").focus()

    @property
    def client(self) -> Client:
        return api(self.app)

    # -- reading the execution --------------------------------------------------

    @guarded(exclusive=True, group="load")
    async def load(self) -> None:
        try:
            root = await self._read(self.workflow_id, 0)
        except Exception as exc:
            self.app.report(exc)  # type: ignore[attr-defined]
            return
        self.root = root
        self._show()

    async def _read(self, workflow_id: str, depth: int) -> Node:
        client = self.client
        wf, tasks, children, events = await asyncio.gather(
            client.get_workflow(workflow_id),
            client.workflow_tasks(workflow_id),
            client.workflow_children(workflow_id),
            client.all_workflow_events(workflow_id),
        )
        retried = [t for t in tasks["tasks"] if t["executionCount"] > 1]
        attempts = dict(
            zip(
                [t["id"] for t in retried],
                [
                    a["attempts"]
                    for a in await asyncio.gather(
                        *(client.task_attempts(workflow_id, t["id"]) for t in retried)
                    )
                ],
                strict=True,
            )
        )
        child_nodes: list[Node] = []
        for child in children["children"]:
            cid = child["childWorkflowExecutionId"]
            if depth + 1 < DEPTH or cid in self.expanded_children:
                node = await self._read(cid, depth + 1)
            else:
                node = workflow_node(
                    {"id": cid, "kind": child["kind"], "status": child["status"],
                     "createdAt": child["createdAt"], "completedAt": child["completedAt"]}
                )  # fmt: skip
                node.loaded = False
            node.label = f"{child['childExecutionName'] or child['kind']} ({child['kind']})"
            child_nodes.append(node)
        node = build(dict(wf), list(tasks["tasks"]), attempts, list(events), child_nodes)
        node.detail["events"] = list(events)
        return node

    def _maybe_reload(self) -> None:
        if self._reload_due:
            self._reload_due = False
            self.load()

    def _tick(self) -> None:
        self.query_one("#gantt", Timeline).tick()
        if self.root is not None and self.root.running:
            self._summary()
            self._relabel()

    def _relabel(self) -> None:
        """Running nodes' durations grow between two reads."""
        tree = self.query_one("#node-tree", Tree)
        stack = [tree.root]
        while stack:
            item = stack.pop()
            if item.data is not None and item.data.running:
                item.set_label(node_label(item.data))
            stack.extend(item.children)

    # -- live -----------------------------------------------------------------------

    @guarded(exclusive=True, group="stream")
    async def follow_execution(self) -> None:
        def state(live: bool) -> None:
            self.post_message(Connection(live))

        stream = self.client.stream_consolidated(self.workflow_id, on_connection=state)
        async with contextlib.aclosing(stream) as events:
            async for event in events:
                self._reload_due = True
                if event.event == "end":
                    self.live = None
                    self.ended = True
                    self._summary()
                    return
                data = event.data if isinstance(event.data, dict) else {}
                if "sequence" in data:
                    self._event_arrived(data)

    def on_feed(self, event: Any) -> None:
        """The tenant feed: an execution of this tree changed after its stream ended (a
        retry re-opens it): follow it again."""
        data = event.data if isinstance(event.data, dict) else {}
        ids = {n.key for n in self.root.walk() if n.kind == "workflow"} if self.root else set()
        if data.get("workflowExecutionId") in ids:
            self._reload_due = True
            if self.live is None and self.ended:
                self.ended = False
                self.follow_execution()

    def on_connection(self, message: Connection) -> None:
        message.stop()
        if self.ended:  # a late "connected" after the end: not live any more
            return
        self.live = message.live
        self._summary()
        if message.live:
            self._reload_due = True  # what happened while away

    def _event_arrived(self, data: dict[str, Any]) -> None:
        rows = self.query_one("#event-rows", Rows)
        item = {
            "sequence": data["sequence"],
            "timestamp": data["timestamp"],
            "eventType": data["type"],
            "data": data.get("data"),
            "workflowExecutionId": data["workflowExecutionId"],
        }
        keys = {(i["workflowExecutionId"], i["sequence"]) for i in rows.items[-50:]}
        if (item["workflowExecutionId"], item["sequence"]) not in keys:
            rows.extend([item])

    # -- showing ----------------------------------------------------------------------

    def _show(self) -> None:
        root = self.root
        if root is None:
            return
        self._summary()
        tree = self.query_one("#node-tree", Tree)
        selected_key = self.selected.key if self.selected else root.key
        tree.clear()
        tree.root.set_label(node_label(root))
        tree.root.data = root
        cursor: TreeNode[Node] | None = tree.root if selected_key == root.key else None

        def add(parent: TreeNode[Node], node: Node) -> None:
            nonlocal cursor
            for child in node.children:
                if child.children:
                    branch = parent.add(
                        node_label(child), data=child, expand=child.key not in self.collapsed
                    )
                    add(branch, child)
                    leaf = branch
                else:
                    leaf = parent.add_leaf(node_label(child), data=child)
                if child.key == selected_key:
                    cursor = leaf

        add(tree.root, root)
        tree.root.expand()
        if cursor is not None:
            tree.move_cursor(cursor)
            self.selected = cursor.data
        else:
            self.selected = root
        self._lines()
        self._details()
        events = self.query_one("#event-rows", Rows)
        if not events.items:
            events.set_items(
                [dict(e, workflowExecutionId=root.key) for e in root.detail.get("events", [])]
            )

    def _summary(self) -> None:
        root = self.root
        if root is None:
            return
        live = (
            Text(" ● LIVE", style="bold green")
            if self.live
            else Text(" ◌ reconnecting…", style="bold yellow")
            if self.live is False
            else Text("")
        )
        self.query_one("#summary", Static).update(
            Text.assemble(
                _glyph(root),
                " ",
                (root.status, "bold"),
                "  ",
                (root.label, "bold"),
                f"  {self.workflow_id}  ",
                (_span(root), "dim"),
                live,
            )
        )

    def _lines(self) -> None:
        """The tree as the timeline shows it: expanded nodes' children, collapsed ones
        as one aggregate line."""
        if self.root is None:
            return
        lines: list[tuple[int, Node]] = []

        def walk(node: Node, depth: int) -> None:
            lines.append((depth, node))
            if node.key in self.collapsed:
                return
            for child in node.children:
                walk(child, depth + 1)

        walk(self.root, 0)
        self.query_one("#gantt", Timeline).show(lines)

    def _details(self) -> None:
        node = self.selected
        if node is None:
            return
        rows = [("status", Text.assemble(_glyph(node), f" {node.status}")), ("type", node.kind)]
        rows.append(("id", node.key.split(":")[-1]))
        if node.started:
            rows.append(("started", local_time(node.started.isoformat())))
            rows.append(("duration", _span(node)))
        if node.attempts:
            rows.append(("attempts", str(len(node.attempts))))
            worker = node.attempts[-1].worker
            if worker:
                rows.append(("worker", worker[:8]))
        if node.progress is not None:
            rows.append(("progress", f"{node.progress * 100:.0f}%"))
        if node.retry_at is not None:
            rows.append(("next try", local_time(node.retry_at.isoformat())))
        text = Text()
        for key, value in rows:
            text.append(f"{key:<10}", style="bold")
            text.append_text(value if isinstance(value, Text) else Text(str(value)))
            text.append("\n")
        error = node.detail.get("error")
        if error:
            text.append("\nerror\n", style="bold red")
            text.append(str(error).strip().splitlines()[-1] + "\n", style="red")
        text.append("\n3 logs  5 input/output/error  r retry  c cancel  y copy id", style="dim")
        self.query_one("#node-detail", Static).update(text)
        inline = Text.assemble(_glyph(node), " ", (node.label, "bold"))
        for key, value in rows[2:]:
            inline.append(f"  {key} ", style="dim")
            inline.append_text(value if isinstance(value, Text) else Text(str(value)))
        inline.append("   3 logs  5 data", style="dim")
        self.query_one("#gantt-detail", Static).update(inline)
        self._data()
        task = self._log_node()
        if task is not None and task.key != self.log_task:
            self.log_task = task.key
            self.load_logs()

    def _log_node(self) -> Node | None:
        """The task whose logs show: the selected one, else the one most worth reading
        (the first that failed, else the last that runs, else the first)."""
        if self.selected is not None and self.selected.kind == "task":
            return self.selected
        tasks = [n for n in (self.root.walk() if self.root else []) if n.kind == "task"]
        failed = [n for n in tasks if n.status == "FAILED" or len(n.attempts) > 1]
        running = [n for n in tasks if n.running]
        best = failed or running[-1:] or tasks
        return best[0] if best else None

    def _data(self) -> None:
        node = self.selected
        if node is None:
            return
        parts: list[Any] = []
        for key in ("input", "output"):
            if key in node.detail:
                parts.append(Text(key, style="bold"))
                parts.append(JSON(json.dumps(node.detail[key])))
        error = node.detail.get("error")
        if error:
            parts.append(Text("error", style="bold red"))
            parts.append(Text(str(error), style="red"))
        extra = {
            k: v for k, v in node.detail.items() if k not in ("input", "output", "error", "events")
        }
        if extra:
            parts.append(Text("details", style="bold"))
            parts.append(JSON(json.dumps(extra, default=str)))
        from rich.console import Group

        self.query_one("#node-data", Static).update(Group(*parts) if parts else "nothing here")

    @on(Timeline.Moved)
    def _moved(self, event: Timeline.Moved) -> None:
        self.selected = event.node
        self._details()

    @on(Tree.NodeHighlighted, "#node-tree")
    def _highlighted(self, event: Tree.NodeHighlighted[Node]) -> None:
        if event.node.data is not None:
            self.selected = event.node.data
            self._details()

    @on(Tree.NodeCollapsed, "#node-tree")
    def _collapsed(self, event: Tree.NodeCollapsed[Node]) -> None:
        if event.node.data is not None:
            self.collapsed.add(event.node.data.key)
            summarize_if_group(event.node.data)
            self._lines()

    @on(Tree.NodeExpanded, "#node-tree")
    def _expanded(self, event: Tree.NodeExpanded[Node]) -> None:
        node = event.node.data
        if node is None:
            return
        self.collapsed.discard(node.key)
        self._lines()

    @on(Tree.NodeSelected, "#node-tree")
    def _selected(self, event: Tree.NodeSelected[Node]) -> None:
        node = event.node.data
        if node is not None and not node.loaded:
            self.expanded_children.add(node.key)
            self.load()

    @on(Rows.Highlighted, "#event-rows")
    def _event_highlighted(self, event: Rows.Highlighted) -> None:
        item = event.item
        self.query_one("#event-json", Static).update(
            JSON(json.dumps({k: item[k] for k in ("sequence", "eventType", "timestamp", "data")}))
        )

    # -- logs -------------------------------------------------------------------------

    @guarded(exclusive=True, group="logs")
    async def load_logs(self) -> None:
        node = self._log_node()
        rows = self.query_one("#log-rows", Rows)
        if node is None or node.kind != "task":
            return
        level = LOG_LEVELS[self.level_index]
        self._log_header(node, 0)
        rows.set_items([])
        rows.highlight = self.search or None
        attempt = 0
        count = 0
        batch: list[dict[str, Any]] = []
        async for line in self.client.task_logs(
            node.workflow_id, node.key, level=level, search=self.search or None
        ):
            if line["attempt"] != attempt:
                attempt = line["attempt"]
                batch.append({"separator": attempt})
            batch.append(dict(line))
            count += 1
            if len(batch) >= 1000:
                rows.extend(batch)
                batch = []
                self._log_header(node, count)
        rows.extend(batch)
        self._log_header(node, count)
        if self.follow_logs:
            rows.action_jump(-1)
        if node.running:
            await self._follow_logs(node, attempt, level)

    async def _follow_logs(self, node: Node, attempt: int, level: str | None) -> None:
        rows = self.query_one("#log-rows", Rows)
        minimum = LOG_LEVELS.index(level) if level else 0
        seen = {(i.get("attempt"), i.get("message"), i.get("timestamp")) for i in rows.items[-200:]}
        stream = self.client.stream_tasks(node.workflow_id)
        async with contextlib.aclosing(stream) as events:
            async for event in events:
                data = event.data if isinstance(event.data, dict) else {}
                if event.event == "end":
                    return
                if event.event != "task_log" or data.get("taskExecutionId") != node.key:
                    continue
                lvl = data.get("level", "INFO")
                if lvl in LOG_LEVELS and LOG_LEVELS.index(lvl) < minimum and lvl != "DEBUG":
                    continue
                if self.search and self.search.lower() not in data.get("message", "").lower():
                    continue
                key = (data["attempt"], data.get("message"), data["timestamp"])
                if key in seen:  # the stream replays what the list already gave
                    continue
                if data["attempt"] != attempt:
                    attempt = data["attempt"]
                    rows.extend([{"separator": attempt}])
                rows.extend([data])
                if self.follow_logs:
                    rows.action_jump(-1)

    def _log_header(self, node: Node, count: int) -> None:
        level = LOG_LEVELS[self.level_index] or "all"
        text = Text.assemble(
            (node.label, "bold"), f"  {count} lines  level ≥ ", (level, "bold"),
            f"  search {self.search!r}" if self.search else "",
            "  following" if self.follow_logs else "",
            ("   l level  / search  f follow", "dim"),
        )  # fmt: skip
        self.query_one("#log-header", Static).update(text)

    def action_level(self) -> None:
        self.level_index = (self.level_index + 1) % len(LOG_LEVELS)
        self.load_logs()

    def action_search(self) -> None:
        from flovyn_tui.dashboard.dialogs import Prompt

        def done(value: str | None) -> None:
            if value is not None:
                self.search = value.strip()
                self.load_logs()

        self.app.push_screen(Prompt("search the logs", self.search), done)

    def action_follow(self) -> None:
        tabs = self.query_one("#tabs", TabbedContent)
        if tabs.active == "timeline":
            self.query_one("#gantt", Timeline).action_follow()
            return
        self.follow_logs = not self.follow_logs
        if self.follow_logs:
            self.query_one("#log-rows", Rows).action_jump(-1)
        task = self._log_node()
        if task is not None:
            self._log_header(task, len(self.query_one("#log-rows", Rows).items))

    # -- actions ------------------------------------------------------------------------

    def action_tab(self, tab: str) -> None:
        self.query_one("#tabs", TabbedContent).active = tab
        target = {
            "tree": "#node-tree",
            "timeline": "#gantt",
            "logs": "#log-rows",
            "events": "#event-rows",
        }
        if tab in target:
            self.query_one(target[tab]).focus()

    def _target(self) -> Node | None:
        """The execution the action is for: the selected child execution, else the root."""
        node = self.selected
        if node is not None and node.kind == "workflow":
            return node
        return self.root

    def action_retry(self) -> None:
        from flovyn_tui.dashboard.actions import retry_with_undo

        node = self._target()
        if node is not None:
            kind = node.detail.get("kind") or node.label
            retry_with_undo(self.app, [{"id": node.key, "kind": kind, "status": node.status}])

    def action_cancel(self) -> None:
        from flovyn_tui.dashboard.actions import confirm_cancel

        node = self._target()
        if node is not None:
            confirm_cancel(self.app, [node.key])

    def action_copy(self) -> None:
        node = self.selected or self.root
        if node is not None:
            ident = node.key.split(":")[-1]
            self.app.copy_to_clipboard(ident)
            self.app.notify(f"copied {ident}")

    def action_signal(self) -> None:
        from flovyn_tui.dashboard.dialogs import SignalScreen

        node = self._target()
        if node is None:
            return
        waiting = [
            n.label.removeprefix("promise ")
            for n in node.walk()
            if n.kind == "promise" and n.status == "WAITING" and n.workflow_id == node.key
        ]
        self.app.push_screen(SignalScreen(node.key, waiting))

    def action_layout(self) -> None:
        self.stacked = not self._is_stacked()
        self._arrange()

    def _is_stacked(self) -> bool:
        return self.stacked if self.stacked is not None else self.app.size.width < WIDE

    def on_resize(self) -> None:
        self._arrange()

    def _arrange(self) -> None:
        self.query_one("#overview").set_class(self._is_stacked(), "stacked")


def summarize_if_group(node: Node) -> None:
    if node.kind == "group":
        summarize(node)


__all__ = ["ExecutionScreen", "human_seconds"]
