"""Modal screens: help, a yes/no confirmation, the trigger form and the signal form.
Forms check their input before anything is sent."""

from __future__ import annotations

import json
from typing import Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Select, Static, TextArea

from flovyn_tui.dashboard.app import api, guarded

KEYS = [
    ("Anywhere", [("q", "quit"), ("?", "this help"), ("ctrl+p", "command palette"),
                  ("w T S o d", "workflows, standalone tasks, schedules, workers, definitions")]),
    ("Workflows", [("↑ ↓ j k PgUp PgDn Home End", "move"), ("enter", "open the execution"),
                   ("[ ]", "previous / next status filter"), ("/", "filter by kind, id or queue"),
                   ("r", "retry the selected FAILED execution (u undoes, for 3 s)"),
                   ("c", "cancel (asks first)"), ("t", "trigger a workflow"), ("y", "copy the id"),
                   ("space", "select rows"),
                   ("R / C", "retry / cancel the selected rows, or all matching the filter")]),
    ("Execution", [("1-5", "tree, timeline, logs, events, data"), ("esc", "back"),
                   ("space", "collapse / expand"), ("r c y s", "retry, cancel, copy id, signal"),
                   ("f", "follow (timeline, logs)"), ("+ -", "zoom the timeline"),
                   ("h l", "scroll the timeline"), ("l", "cycle the log level"),
                   ("/", "search the logs")]),
    ("Tasks", [("enter", "open the task: its attempts and live logs"), ("c", "cancel a PENDING task"),
               ("y", "copy the id")]),
    ("Schedules", [("e", "enable or disable the selected schedule"), ("g", "run it now")]),
]  # fmt: skip


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,question_mark", "dismiss", "Close")]

    def compose(self) -> ComposeResult:
        text = Text()
        for section, keys in KEYS:
            text.append(f"{section}\n", style="bold underline")
            for key, what in keys:
                text.append(f"  {key:<28}", style="bold cyan")
                text.append(f"{what}\n")
            text.append("\n")
        with Vertical(classes="dialog"):
            with VerticalScroll(classes="help-keys"):
                yield Static(text)
            yield Label("esc closes", classes="hint")


class ConfirmScreen(ModalScreen[bool]):
    BINDINGS = [Binding("y", "answer(True)", "Yes"), Binding("n,escape", "answer(False)", "No")]

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self.question)
            with Horizontal(classes="buttons"):
                yield Button("Yes (y)", id="yes", variant="error")
                yield Button("No (n)", id="no", variant="primary")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")


def parse(text: str) -> tuple[Any, str | None]:
    """(the JSON value, None), or (None, what is wrong with it)."""
    if not text.strip():
        return {}, None
    try:
        return json.loads(text), None
    except ValueError as exc:
        return None, f"not JSON: {exc}"


class TriggerScreen(ModalScreen[None]):
    """Start a workflow: a kind from the definitions, JSON input checked before send."""

    BINDINGS = [Binding("escape", "dismiss", "Close"), Binding("ctrl+s", "send", "Trigger")]

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog form"):
            yield Label("Trigger a workflow", classes="title")
            yield Select[str]([], prompt="kind", id="kind")
            yield Input(placeholder="queue (default)", id="queue")
            yield Label("input (JSON)")
            yield TextArea("{}", language="json", id="input")
            yield Static("", id="problem")
            with Horizontal(classes="buttons"):
                yield Button("Trigger (ctrl+s)", id="send", variant="primary")
                yield Button("Close (esc)", id="close")

    def on_mount(self) -> None:
        self.kinds()

    @guarded()
    async def kinds(self) -> None:
        try:
            answer = await api(self.app).workflow_definitions()
        except Exception as exc:
            self.app.report(exc)  # type: ignore[attr-defined]
            return
        options = [(d["kind"], d["kind"]) for d in answer["definitions"]]
        self.query_one("#kind", Select).set_options(options)
        if not options:
            self.query_one("#problem", Static).update(
                "no workflow kind registered yet: start a worker"
            )

    @on(Button.Pressed, "#close")
    def _close(self) -> None:
        self.dismiss()

    @on(Button.Pressed, "#send")
    def _send(self) -> None:
        self.action_send()

    def action_send(self) -> None:
        kind = self.query_one("#kind", Select).value
        value, problem = parse(self.query_one("#input", TextArea).text)
        if not isinstance(kind, str):
            problem = "choose a kind"
        if problem:
            self.query_one("#problem", Static).update(Text(problem, style="red"))
            return
        queue = self.query_one("#queue", Input).value.strip() or None
        self.send(str(kind), value, queue)

    @guarded(exclusive=True)
    async def send(self, kind: str, value: Any, queue: str | None) -> None:
        try:
            answer, _ = await api(self.app).trigger_workflow(kind, value, queue=queue)
        except Exception as exc:
            self.app.report(exc)  # type: ignore[attr-defined]
            return
        self.app.notify(f"started {kind} {answer['workflowExecutionId'][:8]}")
        self.dismiss()


class SignalScreen(ModalScreen[None]):
    """Send a signal to an execution, or resolve a promise it waits on."""

    BINDINGS = [Binding("escape", "dismiss", "Close"), Binding("ctrl+s", "send", "Send")]

    def __init__(self, workflow_id: str, promises: list[str]) -> None:
        super().__init__()
        self.workflow_id = workflow_id
        self.promises = promises

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog form"):
            yield Label(f"Signal {self.workflow_id[:8]} or resolve a promise", classes="title")
            options = [("signal", "signal")] + [(f"resolve promise {p}", p) for p in self.promises]
            yield Select[str](options, value="signal", allow_blank=False, id="what")
            yield Input(placeholder="signal name", id="name")
            yield Label("value (JSON)")
            yield TextArea("null", language="json", id="value")
            yield Static("", id="problem")
            with Horizontal(classes="buttons"):
                yield Button("Send (ctrl+s)", id="send", variant="primary")
                yield Button("Close (esc)", id="close")

    @on(Button.Pressed, "#close")
    def _close(self) -> None:
        self.dismiss()

    @on(Button.Pressed, "#send")
    def _send(self) -> None:
        self.action_send()

    def action_send(self) -> None:
        what = str(self.query_one("#what", Select).value)
        name = self.query_one("#name", Input).value.strip()
        value, problem = parse(self.query_one("#value", TextArea).text)
        if what == "signal" and not name:
            problem = "a signal needs a name"
        if problem:
            self.query_one("#problem", Static).update(Text(problem, style="red"))
            return
        self.send(what, name, value)

    @guarded(exclusive=True)
    async def send(self, what: str, name: str, value: Any) -> None:
        client = api(self.app)
        try:
            if what == "signal":
                await client.signal_workflow(self.workflow_id, name, value)
                self.app.notify(f"signal {name} sent")
            else:
                await client.resolve_promise(f"{self.workflow_id}:{what}", value)
                self.app.notify(f"promise {what} resolved")
        except Exception as exc:
            self.app.report(exc)  # type: ignore[attr-defined]
            return
        self.dismiss()


class Prompt(ModalScreen[str | None]):
    """One line of text: enter answers it, esc answers None."""

    BINDINGS = [Binding("escape", "dismiss(None)", "Close")]

    def __init__(self, question: str, value: str = "") -> None:
        super().__init__()
        self.question = question
        self.value = value

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self.question)
            yield Input(value=self.value, id="answer")

    @on(Input.Submitted, "#answer")
    def _answered(self, event: Input.Submitted) -> None:
        self.dismiss(event.value)
