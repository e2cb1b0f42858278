"""`flovyn task ...`: standalone tasks (tasks with no workflow)."""

from __future__ import annotations

from typing import Any

import click
from rich.console import Group
from rich.text import Text

from flovyn_tui import watch
from flovyn_tui.commands.base import CONTEXT, EXIT_USAGE, fail, options, run
from flovyn_tui.commands.common import (
    attempt_table,
    confirm,
    emit,
    key_values,
    log_lines,
    log_options,
    parse_json,
    subcommand,
    task_table,
)
from flovyn_tui.output import console, pretty, print_jsonl
from flovyn_worker import Client, TaskFailed

ID = click.argument("task_id", metavar="ID")
STATUSES = click.Choice(
    ["PENDING", "RUNNING", "COMPLETED", "FAILED", "CANCELLED"], case_sensitive=False
)


@click.group(context_settings=CONTEXT)
def task() -> None:
    """Standalone tasks: a task with no workflow, run by any worker of its kind."""


@subcommand(task, "create")
@click.argument("kind")
@click.option("--input", "input_", metavar="JSON", help="JSON, @file.json, or - for stdin.")
@click.option("--queue", help="The queue whose workers run it (default: default).")
@click.option(
    "--max-retries", type=click.IntRange(0, 10), help="Attempts after the first (default 3)."
)
@click.option("--timeout-ms", type=click.IntRange(1), help="An attempt's deadline.")
@click.option("--idempotency-key", help="A second create with this key answers the first.")
@click.option("--metadata", multiple=True, metavar="KEY=VALUE", help="Repeatable.")
@click.option("--wait", is_flag=True, help="Wait for the result: exit 0 completed, 1 otherwise.")
@click.option("--timeout", type=click.FloatRange(0, min_open=True), help="With --wait: seconds.")
def create(
    kind: str,
    input_: str | None,
    queue: str | None,
    max_retries: int | None,
    timeout_ms: int | None,
    idempotency_key: str | None,
    metadata: tuple[str, ...],
    wait: bool,
    timeout: float | None,
) -> None:
    """Run a task of KIND with no workflow.

    \b
    Examples:
      flovyn task create send-invoice --input '{"orderId": "A-1"}' --max-retries 2
      flovyn task create resize-image --input @image.json --wait
    """
    value = None if input_ is None else parse_json(input_, "--input")
    pairs = key_values(metadata, "--metadata")

    async def work(client: Client) -> int:
        handle = await client.start_task(
            kind, value, queue=queue, max_retries=max_retries, timeout_ms=timeout_ms,
            idempotency_key=idempotency_key, metadata=pairs or None,
        )  # fmt: skip
        if not wait:
            what = "created" if handle.created else "already created"
            emit(handle.task, lambda: Text.assemble((f"{what} ", "bold"), f"{kind} {handle.id}"))
            return 0
        out = console(stderr=True)
        with out.status(f"{kind} {handle.id}: waiting for its result...", spinner="dots"):
            try:
                output = await handle.result(timeout=timeout)
            except TaskFailed as exc:
                word = "was cancelled" if exc.cancelled else f"failed: {exc.error}"
                out.print(Text(f"✗ {kind} {handle.id} {word}", style="red"))
                return 1
            except TimeoutError:
                out.print(f"{kind} {handle.id} is still running after {timeout} s")
                return 1
        emit(
            await client.get_task(handle.id),
            lambda: Group(Text(f"✓ {kind} {handle.id} completed", style="green"), pretty(output)),
        )
        return 0

    run(work)


@subcommand(task, "list")
@click.option("--status", "statuses", multiple=True, type=STATUSES, help="Repeatable.")
@click.option("--kind", help="Only this task kind.")
@click.option("--queue", help="Only this queue.")
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True)
@click.option("--cursor", help="The nextCursor a previous page printed.")
@click.option("--all", "every", is_flag=True, help="Every matching task, page after page.")
def list_(
    statuses: tuple[str, ...],
    kind: str | None,
    queue: str | None,
    limit: int,
    cursor: str | None,
    every: bool,
) -> None:
    """Standalone tasks, newest first (a workflow's tasks: `flovyn workflow tasks`).

    \b
    Examples:
      flovyn task list --status FAILED
      flovyn task list --kind send-invoice --all -o jsonl
    """
    status = [s.upper() for s in statuses] or None

    async def work(client: Client) -> None:
        if every:
            if options().output == "json":
                fail("--all prints JSON lines: use -o jsonl or a table", EXIT_USAGE)
            rows = [t async for t in client.list_tasks(status=status, kind=kind, queue=queue)]
            if options().output == "jsonl":
                print_jsonl(rows)
            else:
                console().print(task_table(rows))
            return
        page = await client.task_page(
            status=status, kind=kind, queue=queue, limit=limit, cursor=cursor
        )

        def render() -> Any:
            about = "about " if page["totalIsEstimate"] else ""
            more = f"next page: --cursor {page['nextCursor']}" if page["nextCursor"] else ""
            return Group(
                Text(f"{len(page['tasks'])} of {about}{page['total']} tasks", style="bold"),
                task_table(page["tasks"]),
                Text(more, style="dim"),
            )

        emit(page, render, page["tasks"])

    run(work)


@subcommand(task, "get")
@ID
def get(task_id: str) -> None:
    """One standalone task: status, attempts, input, output and error.

    \b
    Example:
      flovyn task get 3f2a9c1e-4b5d-4e6f-8a7b-9c0d1e2f3a4b
    """

    async def work(client: Client) -> None:
        found = await client.get_task(task_id)

        def render() -> Any:
            parts: list[Any] = [
                task_table([found]),
                Text("input", style="bold"),
                pretty(found["input"]),
            ]
            if found["output"] is not None:
                parts += [Text("output", style="bold"), pretty(found["output"])]
            if found["error"]:
                parts += [Text("error", style="bold red"), Text(found["error"], style="red")]
            return Group(*parts)

        emit(found, render)

    run(work)


@subcommand(task, "cancel", reads=False)
@ID
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
def cancel(task_id: str, yes: bool) -> None:
    """Cancel a PENDING standalone task (one that runs cannot be).

    \b
    Example:
      flovyn task cancel ID --yes
    """
    confirm(yes, f"Cancel task {task_id}?")

    async def work(client: Client) -> None:
        await client.cancel_task(task_id)
        print("CANCELLED")

    run(work)


@subcommand(task, "attempts")
@ID
def attempts(task_id: str) -> None:
    """Each attempt of the task: when, how long, how it ended.

    \b
    Example:
      flovyn task attempts ID
    """

    async def work(client: Client) -> None:
        answer = await client.standalone_task_attempts(task_id)
        emit(answer, lambda: attempt_table(answer["attempts"]), answer["attempts"])

    run(work)


@subcommand(task, "logs")
@ID
@log_options
def logs(
    task_id: str,
    level: str | None,
    search: str | None,
    attempt: int | None,
    limit: int,
    cursor: str | None,
    follow: bool,
) -> None:
    """The task's log lines, oldest first.

    \b
    Examples:
      flovyn task logs ID --level WARN
      flovyn task logs ID --follow
    """

    async def work(client: Client) -> None:
        if follow:
            await watch.follow_logs(
                client, None, task_id, level=level, search=search, output=options().output
            )
            return
        page = await client.standalone_task_log_page(
            task_id, level=level, search=search, attempt=attempt, limit=limit, cursor=cursor
        )
        emit(page, lambda: log_lines(page), page["logs"])

    run(work)


@subcommand(task, "watch")
@ID
@click.option("--logs", "with_logs", is_flag=True, help="Print its log lines too.")
def watch_(task_id: str, with_logs: bool) -> None:
    """Live lines from the task until it ends: attempts, progress, failures, retries
    (and log lines with --logs). Exit 0 when it completed, 1 otherwise.

    \b
    Example:
      flovyn task watch ID --logs
    """

    async def work(client: Client) -> int:
        return await watch.watch_task(client, task_id, logs=with_logs, output=options().output)

    run(work)


COMMANDS = [task]
