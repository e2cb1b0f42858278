"""Following an execution live from its streams: `watch-tasks`, `events --follow` and
`task-logs --follow`. The SDK's stream readers resume after a network break or a
server restart with `Last-Event-ID`, so a line is never printed twice or skipped.
With `-o json`/`jsonl` each stream event's data is printed as one JSON line."""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Mapping
from typing import Any

from rich.text import Text

from flovyn_tui.output import (
    LEVELS,
    console,
    duration,
    local_time,
    print_jsonl,
)
from flovyn_worker import Client

LEVEL_ORDER = ("DEBUG", "INFO", "WARN", "ERROR")


def first_line(error: Any, width: int = 80) -> str:
    """An error's first line, cut to `width`: a traceback's last line says the most."""
    if not error:
        return ""
    text = str(error).strip().splitlines()
    line = text[-1] if text and text[0].startswith("Traceback") else (text[0] if text else "")
    return line if len(line) <= width else line[: width - 1] + "…"


def brief(data: Any, width: int = 100) -> str:
    """A history event's data on one line."""
    import json

    text = json.dumps(data, ensure_ascii=False, separators=(",", ":")) if data else ""
    return text if len(text) <= width else text[: width - 1] + "…"


def log_line(line: Mapping[str, Any], prefix: str = "") -> Text:
    level = line["level"]
    return Text.assemble(
        (local_time(line["timestamp"]) + " ", "dim"),
        prefix,
        (f"{level:<5} ", LEVELS.get(level, "")),
        (f"#{line['attempt']} ", "dim"),
        line["message"],
    )


class _Tasks:
    """What watch-tasks has seen: attempt starts (for durations) and totals."""

    def __init__(self) -> None:
        self.started: dict[tuple[str, int], str] = {}
        self.counts: Counter[str] = Counter()

    def line(self, data: dict[str, Any], logs: bool) -> Text | None:
        kind, task_id, attempt = data["kind"], data["taskExecutionId"], data["attempt"]
        name = Text.assemble((kind, "bold"), (f" {task_id[:8]}", "dim"))
        at = (local_time(data["timestamp"]) + " ", "dim")
        match data["type"]:
            case "task_created":
                self.counts["tasks"] += 1
                return Text.assemble(at, ("○ ", "bright_black"), name, " scheduled")
            case "task_started":
                self.counts["attempts"] += 1
                self.started[(task_id, attempt)] = data["timestamp"]
                worker = data.get("workerId")
                on = f" on worker {worker[:8]}" if worker else ""
                return Text.assemble(at, ("▶ ", "yellow"), name, f" attempt {attempt} started{on}")
            case "task_progress":
                pct = data.get("progress")
                details = data.get("details")
                text = f" {pct * 100:.0f}%" if isinstance(pct, int | float) else ""
                return Text.assemble(at, ("  ", ""), name, text, f" {details}" if details else "")
            case "task_log":
                if not logs:
                    return None
                return log_line({**data, "message": data.get("message", "")}, prefix="    ")
            case "task_completed":
                took = duration(self.started.get((task_id, attempt)), data["timestamp"])
                self.counts["completed"] += 1
                return Text.assemble(at, ("✓ ", "green"), name, f" completed in {took}")
            case "task_failed":
                took = duration(self.started.get((task_id, attempt)), data["timestamp"])
                final = data["status"] == "FAILED"
                self.counts["failed" if final else "failed attempts"] += 1
                what = "failed" if final else f"attempt {attempt} failed"
                return Text.assemble(
                    at, ("✗ ", "red"), name, f" {what} after {took}: ",
                    (first_line(data.get("error")), "red"),
                )  # fmt: skip
            case "task_retry":
                self.counts["retries"] += 1
                wait = duration(data["timestamp"], data.get("retryAt"))
                return Text.assemble(
                    at, ("↻ ", "magenta"), name,
                    f" retries in {wait}, at {local_time(data.get('retryAt'))} (attempt {attempt + 1})",
                )  # fmt: skip
            case "task_cancelled":
                self.counts["cancelled"] += 1
                return Text.assemble(at, ("⊘ ", "dim"), name, " cancelled")
        return None

    def summary(self) -> str:
        order = (
            "tasks",
            "attempts",
            "completed",
            "failed attempts",
            "retries",
            "failed",
            "cancelled",
        )
        return ", ".join(f"{self.counts[k]} {k}" for k in order if self.counts[k])


async def watch_tasks(client: Client, workflow_id: str, *, logs: bool, output: str) -> int:
    """Print the execution's task events until it ends; 0 if it completed, else 1."""
    wf = await client.get_workflow(workflow_id)  # a clear 404 before any stream
    out = console()
    seen = _Tasks()
    if output == "table":
        out.print(Text.assemble(("watching ", "dim"), (wf["kind"], "bold"), f" {workflow_id}"))
    async with contextlib.aclosing(client.stream_tasks(workflow_id)) as stream:
        async for event in stream:
            if event.event == "end":
                ended = event.data["status"]
                if output != "table":
                    print_jsonl([event.data])
                else:
                    final = await client.get_workflow(workflow_id)
                    took = duration(final["startedAt"] or final["createdAt"], final["completedAt"])
                    glyph, style = {"COMPLETED": ("✓", "green"), "FAILED": ("✗", "red")}.get(
                        ended, ("⊘", "dim")
                    )
                    out.print(
                        Text.assemble(
                            (f"{glyph} {ended}", f"bold {style}"),
                            f" {wf['kind']} {workflow_id} in {took}: {seen.summary() or 'no tasks'}",
                        )
                    )
                return 0 if ended == "COMPLETED" else 1
            if output != "table":
                if event.event != "task_log" or logs:
                    print_jsonl([event.data])
                continue
            line = seen.line(event.data, logs)
            if line is not None:
                out.print(line)
    return 1  # the stream ended without its end event: not reached in practice


async def follow_events(client: Client, workflow_id: str, since: int, output: str) -> None:
    """Print the history from `since` on as it grows, until the execution ends."""
    await client.get_workflow(workflow_id)
    out = console()
    stream = client.stream_workflow(workflow_id, last_event_id=str(since) if since else None)
    async with contextlib.aclosing(stream) as events:
        async for event in events:
            data = event.data
            if event.event == "end":
                if output == "table":
                    out.print(Text(f"— {data['status']}", style="bold"))
                return
            if data.get("type") in ("task_progress", "task_stream"):
                continue  # reports of running tasks are not history
            if output != "table":
                print_jsonl([{k: data[k] for k in ("sequence", "type", "timestamp", "data")}])
                continue
            out.print(
                Text.assemble(
                    (f"{data['sequence']:>5} ", "dim"),
                    (local_time(data["timestamp"]) + " ", "dim"),
                    (data["type"], "bold"),
                    " ",
                    brief(data.get("data")),
                )
            )


async def follow_logs(
    client: Client,
    workflow_id: str,
    task_id: str,
    *,
    level: str | None,
    search: str | None,
    output: str,
) -> None:
    """Print a task's log lines, from the first, as they come, until the task or the
    execution ends. Filters as the logs endpoint has them: `level` a minimum, `search`
    a substring in any case."""
    await client.task_attempts(workflow_id, task_id)  # a 404 for a task not in it
    minimum = LEVEL_ORDER.index(level.upper()) if level else 0
    needle = search.lower() if search else None
    out = console()
    async with contextlib.aclosing(client.stream_tasks(workflow_id)) as stream:
        async for event in stream:
            data = event.data
            if event.event == "end":
                return
            if data.get("taskExecutionId") != task_id:
                continue
            if event.event == "task_log":
                lvl = data.get("level", "INFO")
                message = data.get("message", "")
                if LEVEL_ORDER.index(lvl) < minimum or (needle and needle not in message.lower()):
                    continue
                if output != "table":
                    print_jsonl([data])
                else:
                    out.print(log_line(data))
            elif event.event in ("task_completed", "task_cancelled") or (
                event.event == "task_failed" and data["status"] == "FAILED"
            ):
                return  # the SDK sends an attempt's lines before its end
