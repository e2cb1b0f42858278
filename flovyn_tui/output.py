"""How the `flovyn` command prints: `-o json` (the API's JSON as it came), `-o jsonl`
(one line per item of a list), and tables for people: status glyphs and colours,
local times, ids shortened to the shortest prefix that stays unique on the screen.

Colour only on a terminal and never with NO_COLOR set (rich honours both).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

FORMATS = ("table", "json", "jsonl")

# status -> (glyph, rich style), as the dashboard shows them.
STATUS = {
    "RUNNING": ("▶", "yellow"),
    "COMPLETED": ("✓", "green"),
    "FAILED": ("✗", "red"),
    "PENDING": ("○", "bright_black"),
    "WAITING": ("◐", "cyan"),
    "CANCELLING": ("⊘", "dim"),
    "CANCELLED": ("⊘", "dim"),
    "TIMEOUT": ("✗", "red"),
    "RETRYING": ("↻", "magenta"),
    "ONLINE": ("●", "green"),
    "OFFLINE": ("○", "bright_black"),
    "AVAILABLE": ("●", "green"),
    "UNAVAILABLE": ("○", "bright_black"),
}
LEVELS = {"DEBUG": "bright_black", "INFO": "", "WARN": "yellow", "ERROR": "red"}


def console(stderr: bool = False) -> Console:
    """A console for stdout (or stderr); wide when piped, so that nothing is cut."""
    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() else 200
    return Console(file=stream, width=width, highlight=False, soft_wrap=not stream.isatty())


def status(value: str | None, *, retry_at: str | None = None) -> Text:
    """A status with its glyph and colour; a task waiting to retry shows `↻ <time>`."""
    if retry_at and value in ("PENDING", "RUNNING"):
        return Text(f"↻ retry {local_time(retry_at, seconds=True)}", style="magenta")
    glyph, style = STATUS.get(value or "", ("?", ""))
    return Text(f"{glyph} {value}", style=style)


def parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def local_time(value: str | None, *, seconds: bool = True) -> str:
    """An RFC 3339 time in the local zone: `2026-12-05 23:40:59`; today's as `23:40:59`."""
    when = parse_time(value)
    if when is None:
        return "-"
    local = when.astimezone()
    if local.date() == datetime.now().astimezone().date():
        return local.strftime("%H:%M:%S" if seconds else "%H:%M")
    return local.strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")


def duration(start: str | None, end: str | None) -> str:
    """From start to end (or to now while running): `850ms`, `12.3s`, `4m05s`, `2h13m`."""
    began = parse_time(start)
    if began is None:
        return "-"
    ended = parse_time(end) or datetime.now(UTC)
    return human_seconds(max(0.0, (ended - began).total_seconds()))


def human_seconds(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.1f}s"
    if seconds < 3600:
        return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"
    if seconds < 86400:
        return f"{int(seconds // 3600)}h{int(seconds % 3600 // 60):02d}m"
    return f"{int(seconds // 86400)}d{int(seconds % 86400 // 3600):02d}h"


def short_ids(ids: Iterable[str | None], minimum: int = 8) -> dict[str, str]:
    """Each id's shortest prefix (at least `minimum` characters) that no other id shares."""
    unique = sorted({i for i in ids if i})
    short: dict[str, str] = {}
    for n, value in enumerate(unique):
        length = minimum
        for other in (unique[n - 1] if n else "", unique[n + 1] if n + 1 < len(unique) else ""):
            common = 0
            while common < min(len(value), len(other)) and value[common] == other[common]:
                common += 1
            length = max(length, common + 1)
        short[value] = value[:length]
    return short


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, ensure_ascii=False) + "\n")


def print_jsonl(items: Iterable[Any]) -> None:
    for item in items:
        sys.stdout.write(json.dumps(item, ensure_ascii=False, separators=(",", ":")) + "\n")


def table(
    columns: Sequence[str], rows: Iterable[Sequence[Any]], *, title: str | None = None
) -> Table:
    grid = Table(title=title, title_justify="left", box=None, header_style="bold", pad_edge=False)
    for column in columns:
        grid.add_column(column, no_wrap=column in ("ID", "STATUS", "STARTED", "CREATED"))
    for row in rows:
        grid.add_row(*(cell if isinstance(cell, Text) else Text(str(cell)) for cell in row))
    return grid


def pretty(value: Any) -> str:
    """A JSON value for a person: strings as they are, the rest indented."""
    if isinstance(value, str):
        return value
    return json.dumps(value, indent=2, ensure_ascii=False)


def when(s: dict[str, Any]) -> str:
    """A schedule's timing in a few words."""
    kind = s["scheduleType"]
    if kind["type"] == "cron":
        return f"cron {kind['cron']} {kind.get('timezone', 'UTC')}"
    if kind["type"] == "interval":
        return f"every {kind['everySeconds']}s"
    return f"once at {local_time(kind['runAt'])}"


def what(s: dict[str, Any]) -> str:
    """What a schedule starts."""
    target = s["target"]
    return f"{target['type']} {target.get('workflowKind') or target.get('taskKind')}"
