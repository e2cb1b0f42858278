"""What the commands share: JSON arguments, and printing an answer in the chosen format."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import click
from rich.console import RenderableType

from flovyn_tui.commands.base import CONTEXT, connection_options, options, output_option
from flovyn_tui.output import console, print_json, print_jsonl


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
