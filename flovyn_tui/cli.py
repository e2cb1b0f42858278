"""The `flovyn` command: `flovyn <noun> <verb> [args] [flags]`.

Built on click (nested command groups, typed options, help on every command, shell
completion and exit status 2 for usage errors come with it) and rich (tables,
colour only on a terminal). The commands live in `flovyn_tui/commands/`, one module
per area; `commands/base.py` has what they share.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import click

from flovyn_tui.commands import admin, automation, discovery, local, task, workflow
from flovyn_tui.commands.base import CONTEXT, connection_options


@click.group(context_settings=CONTEXT)
@connection_options
@click.version_option(package_name="flovyn", prog_name="flovyn")
def main() -> None:
    """Durable workflow orchestration: server, CLI and dashboard.

    \b
    Examples:
      flovyn server                      # a server on SQLite in ~/.local/share/flovyn
      flovyn workflow list --status FAILED
      flovyn workflow trigger order --input '{"orderId": "A-1"}' --wait
      flovyn workflow watch-tasks 3f2a9c1e-...

    Connection settings come from flags, then FLOVYN_SERVER, FLOVYN_TENANT,
    FLOVYN_API_KEY (and FLOVYN_PROFILE), then the profile in
    ~/.config/flovyn/config.toml (`flovyn config --help`).
    """


for module in (local, workflow, task, automation, discovery, admin):
    for command in module.COMMANDS:
        main.add_command(command)


def entry(argv: Sequence[str] | None = None) -> int:
    """The console script: click's exit status (2 for usage errors), never a traceback
    for a user's mistake."""
    try:
        main.main(args=list(argv) if argv is not None else None, prog_name="flovyn")
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return 0


if __name__ == "__main__":
    sys.exit(entry())
