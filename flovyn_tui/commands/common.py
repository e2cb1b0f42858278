"""What the commands share: JSON arguments, and printing an answer in the chosen format."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import click
from rich.console import Group, RenderableType
from rich.text import Text

from flovyn_tui.commands.base import (
    CONTEXT,
    EXIT_USAGE,
    connection_options,
    fail,
    options,
    output_option,
)
from flovyn_tui.output import (
    console,
    duration,
    local_time,
    print_json,
    print_jsonl,
    short_ids,
    status,
    table,
)
from flovyn_tui.watch import first_line, log_line


def subcommand(group: click.Group, name: str, *, reads: bool = True) -> Any:
    """A command of `group` with the connection flags, and `-o` when it reads."""

    def wrap(f: Any) -> Any:
        f = connection_options(f)
        if reads:
            f = output_option(f)
        return group.command(name, context_settings=CONTEXT)(f)

    return wrap


def parse_json(text: str, what: str) -> Any:
    """A JSON value given inline, as `@file.json`, or as `-` (stdin)."""
    source = "inline"
    if text == "-":
        text, source = sys.stdin.read(), "stdin"
    elif text.startswith("@"):
        path = Path(text[1:])
        try:
            text, source = path.read_text(), str(path)
        except OSError as exc:
            raise click.BadParameter(
                f"cannot read {path}: {exc.strerror}", param_hint=what
            ) from None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise click.BadParameter(f"not JSON ({source}): {exc}", param_hint=what) from None


def key_values(pairs: Sequence[str], what: str) -> dict[str, str]:
    """`k=v` pairs as a dict."""
    found: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint=what)
        found[key] = value
    return found


def emit(
    answer: Any,
    render: Callable[[], RenderableType | str],
    items: Sequence[Any] | None = None,
) -> None:
    """Print `answer` as JSON (as the API gave it), as JSON lines (`items`, each on its
    own line: a list's rows), or as what `render` makes for people."""
    fmt = options().output
    if fmt == "json":
        print_json(answer)
    elif fmt == "jsonl":
        print_jsonl(items if items is not None else [answer])
    else:
        console().print(render())


def task_table(rows: Sequence[Any]) -> RenderableType:
    """Tasks (a workflow's, or standalone ones): a waiting retry shows as `↻`."""
    ids = short_ids(t["id"] for t in rows)
    return table(
        ("STATUS", "KIND", "ID", "ATTEMPTS", "PROGRESS", "STARTED", "DURATION", "ERROR"),
        [
            (
                status(t["status"], retry_at=t["retryAt"]),
                t["kind"],
                ids[t["id"]],
                f"{t['executionCount']}/{t['maxRetries'] + 1}",
                "-" if t["progress"] is None else f"{t['progress'] * 100:.0f}%",
                local_time(t["startedAt"]),
                duration(t["startedAt"], t["completedAt"]) if t["startedAt"] else "-",
                first_line(t["error"]),
            )
            for t in rows
        ],
    )


def attempt_table(rows: Sequence[Any]) -> RenderableType:
    return table(
        ("#", "STATUS", "STARTED", "DURATION", "WORKER", "ERROR"),
        [
            (
                a["attempt"],
                status(a["status"]),
                local_time(a["startedAt"]),
                duration(a["startedAt"], a["finishedAt"]),
                (a["workerId"] or "-")[:8],
                first_line(a["error"]),
            )
            for a in rows
        ],
    )


def log_lines(page: Any) -> RenderableType:
    """A page of log lines, and how to get the next."""
    lines: list[Any] = [log_line(line) for line in page["logs"]]
    if page["nextCursor"]:
        lines.append(Text(f"next page: --cursor {page['nextCursor']}", style="dim"))
    return Group(*lines) if lines else Text("no log lines", style="dim")


def confirm(yes: bool, question: str) -> None:
    """Ask before something that cannot be undone; without a terminal, `--yes` must say so."""
    if yes:
        return
    if not sys.stdin.isatty():
        fail("this cannot be undone: pass --yes to confirm without a terminal", EXIT_USAGE)
    if not click.confirm(question, default=False):
        raise SystemExit(1)


def log_options(f: Any) -> Any:
    """The filters and paging of a task's logs (a workflow's task or a standalone one)."""
    options = [
        click.option(
            "--level",
            type=click.Choice(["DEBUG", "INFO", "WARN", "ERROR"], case_sensitive=False),
            help="A minimum: WARN shows WARN and ERROR.",
        ),
        click.option("--search", help="Only lines containing this (any case)."),
        click.option("--attempt", type=click.IntRange(1), help="Only this attempt."),
        click.option("--limit", type=click.IntRange(1, 1000), default=100, show_default=True),
        click.option("--cursor", help="The nextCursor a previous page printed."),
        click.option("--follow", "-f", is_flag=True, help="Keep printing new lines until it ends."),
    ]
    for option in reversed(options):
        f = option(f)
    return f
