"""Following an execution live from its streams: `watch-tasks`, `events --follow` and
`task-logs --follow`. The SDK's stream readers resume after a network break or a
server restart with `Last-Event-ID`, so a line is never printed twice or skipped.
With `-o json`/`jsonl` each stream event's data is printed as one JSON line."""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
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
from flovyn_worker.sse import StreamEvent

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

    async def span() -> str:
        final = await client.get_workflow(workflow_id)
        return duration(final["startedAt"] or final["createdAt"], final["completedAt"])

    title = f"{wf['kind']} {workflow_id}"
    return await _watch(client.stream_tasks(workflow_id), title, span, logs=logs, output=output)


async def watch_task(client: Client, task_id: str, *, logs: bool, output: str) -> int:
    """Print a standalone task's events until it ends; 0 if it completed, else 1."""
    task = await client.get_task(task_id)

    async def span() -> str:
        final = await client.get_task(task_id)
        return duration(final["startedAt"] or final["createdAt"], final["completedAt"])

    title = f"{task['kind']} {task_id}"
    return await _watch(client.stream_task(task_id), title, span, logs=logs, output=output)


async def _watch(
    stream: AsyncGenerator[StreamEvent, None],
    title: str,
    span: Callable[[], Awaitable[str]],
    *,
    logs: bool,
    output: str,
) -> int:
    out = console()
    seen = _Tasks()
    if output == "table":
        out.print(Text.assemble(("watching ", "dim"), (title, "bold")))
    async with contextlib.aclosing(stream) as events:
        async for event in events:
            if event.event == "end":
                ended = event.data["status"]
                if output != "table":
                    print_jsonl([event.data])
                else:
                    took = await span()
                    glyph, style = {"COMPLETED": ("✓", "green"), "FAILED": ("✗", "red")}.get(
                        ended, ("⊘", "dim")
                    )
                    out.print(
                        Text.assemble(
                            (f"{glyph} {ended}", f"bold {style}"),
                            f" {title} in {took}: {seen.summary() or 'no tasks'}",
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
    workflow_id: str | None,
    task_id: str,
    *,
    level: str | None,
    search: str | None,
    output: str,
) -> None:
    """Print a task's log lines (a workflow's, or with `workflow_id` None a standalone
    one's), from the first, as they come, until the task or the execution ends. Filters
    as the logs endpoint has them: `level` a minimum, `search` a substring in any case."""
    if workflow_id is None:
        await client.get_task(task_id)  # a 404 for an unknown task
        stream = client.stream_task(task_id)
    else:
        await client.task_attempts(workflow_id, task_id)  # a 404 for a task not in it
        stream = client.stream_tasks(workflow_id)
    minimum = LEVEL_ORDER.index(level.upper()) if level else 0
    needle = search.lower() if search else None
    out = console()
    async with contextlib.aclosing(stream) as events:
        async for event in events:
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
