"""`flovyn workflow ...`: workflow executions, one command per endpoint."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import click
from rich.console import Group
from rich.text import Text

from flovyn_server.models.workflows import WorkflowSummary
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
from flovyn_tui.output import (
    console,
    duration,
    local_time,
    pretty,
    print_jsonl,
    short_ids,
    status,
    table,
)
from flovyn_worker import Client, FlovynApiError, WorkflowCancelled, WorkflowFailed

ID = click.argument("workflow_id", metavar="ID")


@click.group(context_settings=CONTEXT)
def workflow() -> None:
    """Workflow executions: list, inspect, start, follow and repair them."""


def summaries(rows: Sequence[WorkflowSummary], title: str | None = None) -> Any:
    ids = short_ids([r["id"] for r in rows] + [r.get("parentWorkflowExecutionId") for r in rows])
    return table(
        ("STATUS", "KIND", "ID", "STARTED", "DURATION", "ATTEMPTS", "QUEUE"),
        (
            (
                status(r["status"]),
                r["kind"],
                ids[r["id"]],
                local_time(r["startedAt"] or r["createdAt"]),
                duration(r["startedAt"], r["completedAt"]) if r["startedAt"] else "-",
                r["retryAttempts"] + 1,
                r["queue"],
            )
            for r in rows
        ),
        title=title,
    )


@subcommand(workflow, "list")
@click.option("--status", "statuses", multiple=True, help="Repeatable, or a comma list.")
@click.option("--kind", help="Only this workflow kind.")
@click.option("--queue", help="Only this queue.")
@click.option("--parent", "parent_id", metavar="ID", help="Only the children of this execution.")
@click.option("--created-after", metavar="TIME", help="RFC 3339, exclusive.")
@click.option("--created-before", metavar="TIME", help="RFC 3339, exclusive.")
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True)
@click.option("--cursor", help="The nextCursor a previous page printed.")
@click.option("--offset", type=click.IntRange(0), help="Rows to skip (slow when deep).")
@click.option("--all", "every", is_flag=True, help="Every matching row, page after page.")
def list_(
    statuses: tuple[str, ...],
    kind: str | None,
    queue: str | None,
    parent_id: str | None,
    created_after: str | None,
    created_before: str | None,
    limit: int,
    cursor: str | None,
    offset: int | None,
    every: bool,
) -> None:
    """Executions, newest first.

    \b
    Examples:
      flovyn workflow list --status FAILED --kind order
      flovyn workflow list --status RUNNING,WAITING -o jsonl | jq .id
    """
    filters: dict[str, Any] = {
        "status": list(statuses) or None,
        "kind": kind,
        "queue": queue,
        "parent_id": parent_id,
        "created_after": created_after,
        "created_before": created_before,
    }

    async def work(client: Client) -> None:
        if every:
            if options().output == "json":
                fail("--all prints JSON lines: use -o jsonl or a table", EXIT_USAGE)
            rows: list[WorkflowSummary] = []
            async for row in client.list_workflows(**filters, page_size=limit):
                if options().output == "jsonl":
                    print_jsonl([row])
                else:
                    rows.append(row)
            if options().output == "table":
                console().print(summaries(list(rows), title=f"{len(rows)} executions"))
            return
        page = await client.workflow_page(**filters, limit=limit, cursor=cursor, offset=offset)
        rows = list(page["workflows"])

        def render() -> Any:
            about = "about " if page["totalIsEstimate"] else ""
            title = f"{len(rows)} of {about}{page['total']} executions"
            more = (
                Text(f"next page: --cursor {page['nextCursor']}", style="dim")
                if page["nextCursor"]
                else Text("")
            )
            return Group(summaries(rows, title=title), more)

        emit(page, render, rows)

    run(work)


@subcommand(workflow, "counts")
@click.option("--kind", help="Only this workflow kind.")
@click.option("--queue", help="Only this queue.")
def counts(kind: str | None, queue: str | None) -> None:
    """Executions per status (estimates past 1,000 are marked `~`).

    \b
    Example:
      flovyn workflow counts --kind order
    """

    async def work(client: Client) -> None:
        answer = await client.workflow_counts(kind=kind, queue=queue)
        guessed = set(answer["estimated"])
        emit(
            answer,
            lambda: table(
                ("STATUS", "COUNT"),
                [
                    (status(name), ("~" if name in guessed else "") + str(n))
                    for name, n in answer["counts"].items()
                ],
            ),
        )

    run(work)


@subcommand(workflow, "get")
@ID
def get(workflow_id: str) -> None:
    """One execution: status, times, input, output and error.

    \b
    Example:
      flovyn workflow get 3f2a9c1e-4b5d-4e6f-8a7b-9c0d1e2f3a4b
    """

    async def work(client: Client) -> None:
        wf = await client.get_workflow(workflow_id)

        def render() -> Any:
            fields = table(
                ("FIELD", "VALUE"),
                [
                    ("id", wf["id"]),
                    ("kind", wf["kind"]),
                    ("status", status(wf["status"])),
                    ("queue", wf["queue"]),
                    ("created", local_time(wf["createdAt"])),
                    ("started", local_time(wf["startedAt"])),
                    ("completed", local_time(wf["completedAt"])),
                    ("duration", duration(wf["startedAt"], wf["completedAt"])),
                    ("attempts", wf["retryAttempts"] + 1),
                    ("parent", wf["parentWorkflowExecutionId"] or "-"),
                    ("worker", wf["workerId"] or "-"),
                    ("events", wf["currentSequence"]),
                    ("metadata", pretty(wf["metadata"]) if wf["metadata"] else "-"),
                ],
            )
            parts: list[Any] = [fields, Text("input", style="bold"), pretty(wf["input"])]
            if wf["output"] is not None:
                parts += [Text("output", style="bold"), pretty(wf["output"])]
            if wf["error"]:
                parts += [Text("error", style="bold red"), Text(wf["error"], style="red")]
            return Group(*parts)

        emit(wf, render)

    run(work)


@subcommand(workflow, "trigger")
@click.argument("kind")
@click.option("--input", "input_", metavar="JSON", help="JSON, @file.json, or - for stdin.")
@click.option("--queue", help="The queue whose workers run it (default: default).")
@click.option("--idempotency-key", help="A second trigger with this key answers the first.")
@click.option("--metadata", multiple=True, metavar="KEY=VALUE", help="Repeatable.")
@click.option("--wait", is_flag=True, help="Wait for the result: exit 0 completed, 1 otherwise.")
@click.option("--timeout", type=click.FloatRange(0, min_open=True), help="With --wait: seconds.")
def trigger(
    kind: str,
    input_: str | None,
    queue: str | None,
    idempotency_key: str | None,
    metadata: tuple[str, ...],
    wait: bool,
    timeout: float | None,
) -> None:
    """Start a workflow of KIND.

    \b
    Examples:
      flovyn workflow trigger order --input '{"orderId": "A-1", "amount": 30}'
      flovyn workflow trigger order --input @order.json --wait
    """
    value = None if input_ is None else parse_json(input_, "--input")
    pairs = key_values(metadata, "--metadata")

    async def work(client: Client) -> int:
        answer, created = await client.trigger_workflow(
            kind, value, queue=queue, idempotency_key=idempotency_key, metadata=pairs or None
        )
        wf_id = answer["workflowExecutionId"]
        try:
            await client.workflow_definition(kind)
        except FlovynApiError as exc:
            if exc.status != 404:
                raise
            console(stderr=True).print(
                Text(
                    f"note: no worker has registered {kind!r} yet: it waits for one", style="yellow"
                )
            )
        if not wait:
            emit(
                answer,
                lambda: Text.assemble(
                    ("started " if created else "already started ", "bold"),
                    f"{kind} {wf_id}",
                ),
            )
            return 0
        out = console(stderr=True)
        with out.status(f"{kind} {wf_id}: waiting for its result...", spinner="dots"):
            try:
                output = await client.get_handle(wf_id).result(timeout=timeout)
            except WorkflowFailed as exc:
                out.print(Text(f"✗ {kind} {wf_id} failed: {exc.error}", style="red"))
                return 1
            except WorkflowCancelled:
                out.print(Text(f"⊘ {kind} {wf_id} was cancelled", style="dim"))
                return 1
            except TimeoutError:
                out.print(f"{kind} {wf_id} is still running after {timeout} s")
                return 1
        emit(
            await client.get_workflow(wf_id),
            lambda: Group(Text(f"✓ {kind} {wf_id} completed", style="green"), pretty(output)),
        )
        return 0

    run(work)


@subcommand(workflow, "events")
@ID
@click.option("--since", type=click.IntRange(0), default=0, help="After this sequence.")
@click.option("--follow", "-f", is_flag=True, help="Keep printing new events until it ends.")
def events(workflow_id: str, since: int, follow: bool) -> None:
    """The execution's history, in sequence order.

    \b
    Examples:
      flovyn workflow events ID
      flovyn workflow events ID --follow -o jsonl
    """

    async def work(client: Client) -> None:
        if follow:
            await watch.follow_events(client, workflow_id, since, options().output)
            return
        history = await client.all_workflow_events(workflow_id, since_sequence=since)
        emit(
            {"events": history},
            lambda: table(
                ("SEQ", "TIME", "TYPE", "DATA"),
                [
                    (
                        e["sequence"],
                        local_time(e["timestamp"]),
                        e["eventType"],
                        watch.brief(e["data"]),
                    )
                    for e in history
                ],
            ),
            history,
        )

    run(work)


@subcommand(workflow, "cancel", reads=False)
@ID
@click.option("--reason", help="Kept in the history.")
@click.option("--no-cascade", is_flag=True, help="Leave its child executions running.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
def cancel(workflow_id: str, reason: str | None, no_cascade: bool, yes: bool) -> None:
    """Cancel an execution (and its children unless --no-cascade).

    \b
    Example:
      flovyn workflow cancel ID --reason "customer withdrew" --yes
    """
    confirm(
        yes, f"Cancel workflow execution {workflow_id}{'' if no_cascade else ' and its children'}?"
    )

    async def work(client: Client) -> None:
        answer = await client.cancel_workflow(
            workflow_id, reason=reason, cascade_to_children=not no_cascade
        )
        children = len(answer["cancelledChildren"])
        print(f"{answer['status']}" + (f" ({children} children cancelled)" if children else ""))

    run(work)


@subcommand(workflow, "tasks")
@ID
def tasks(workflow_id: str) -> None:
    """The execution's tasks, in scheduling order.

    \b
    Example:
      flovyn workflow tasks ID
    """

    async def work(client: Client) -> None:
        answer = await client.workflow_tasks(workflow_id)
        emit(answer, lambda: task_table(answer["tasks"]), answer["tasks"])

    run(work)


@subcommand(workflow, "retry", reads=False)
@ID
@click.option("--note", help="Why: kept in the history.")
def retry(workflow_id: str, note: str | None) -> None:
    """Run a FAILED execution again from where it failed.

    \b
    Example:
      flovyn workflow retry ID --note "card limit raised"
    """

    async def work(client: Client) -> None:
        answer = await client.retry_workflow(workflow_id, note=note)
        print(f"{answer['status']}: {answer['message']} (attempt {answer['retryAttempt'] + 1})")

    run(work)


@subcommand(workflow, "children")
@ID
def children(workflow_id: str) -> None:
    """The child executions it started.

    \b
    Example:
      flovyn workflow children ID
    """

    async def work(client: Client) -> None:
        answer = await client.workflow_children(workflow_id)
        rows = answer["children"]
        ids = short_ids(c["childWorkflowExecutionId"] for c in rows)
        emit(
            answer,
            lambda: table(
                ("STATUS", "NAME", "KIND", "ID", "CREATED", "COMPLETED"),
                [
                    (
                        status(c["status"]),
                        c["childExecutionName"] or "-",
                        c["kind"],
                        ids[c["childWorkflowExecutionId"]],
                        local_time(c["createdAt"]),
                        local_time(c["completedAt"]),
                    )
                    for c in rows
                ],
            ),
            rows,
        )

    run(work)


@subcommand(workflow, "task-attempts")
@ID
@click.argument("task_id", metavar="TASK_ID")
def task_attempts(workflow_id: str, task_id: str) -> None:
    """Each attempt of one of its tasks: when, how long, how it ended.

    \b
    Example:
      flovyn workflow task-attempts ID TASK_ID
    """

    async def work(client: Client) -> None:
        answer = await client.task_attempts(workflow_id, task_id)
        emit(answer, lambda: attempt_table(answer["attempts"]), answer["attempts"])

    run(work)


@subcommand(workflow, "task-logs")
@ID
@click.argument("task_id", metavar="TASK_ID")
@log_options
def task_logs(
    workflow_id: str,
    task_id: str,
    level: str | None,
    search: str | None,
    attempt: int | None,
    limit: int,
    cursor: str | None,
    follow: bool,
) -> None:
    """A task's log lines, oldest first.

    \b
    Examples:
      flovyn workflow task-logs ID TASK_ID --level WARN
      flovyn workflow task-logs ID TASK_ID --follow
    """

    async def work(client: Client) -> None:
        if follow:
            await watch.follow_logs(
                client, workflow_id, task_id, level=level, search=search, output=options().output
            )
            return
        page = await client.task_log_page(
            workflow_id,
            task_id,
            level=level,
            search=search,
            attempt=attempt,
            limit=limit,
            cursor=cursor,
        )
        emit(page, lambda: log_lines(page), page["logs"])

    run(work)


@subcommand(workflow, "watch-tasks")
@ID
@click.option("--logs", is_flag=True, help="Print the tasks' log lines too.")
def watch_tasks(workflow_id: str, logs: bool) -> None:
    """Live lines from the execution's tasks until it ends: starts, attempts,
    progress, failures, retries (and log lines with --logs), then a summary.
    Exit 0 when it completed, 1 when it failed or was cancelled.

    \b
    Example:
      flovyn workflow watch-tasks ID --logs
    """

    async def work(client: Client) -> int:
        return await watch.watch_tasks(client, workflow_id, logs=logs, output=options().output)

    run(work)


@subcommand(workflow, "signal", reads=False)
@ID
@click.argument("name")
@click.option("--value", metavar="JSON", help="JSON, @file.json, or - for stdin.")
def signal(workflow_id: str, name: str, value: str | None) -> None:
    """Send signal NAME to a running execution.

    \b
    Example:
      flovyn workflow signal ID approve --value '{"by": "ada"}'
    """
    parsed = None if value is None else parse_json(value, "--value")

    async def work(client: Client) -> None:
        answer = await client.signal_workflow(workflow_id, name, parsed)
        print(f"signal {name} recorded (event {answer['signalEventSequence']})")

    run(work)


@subcommand(workflow, "state")
@ID
def state(workflow_id: str) -> None:
    """The state the workflow keeps (its key-value store).

    \b
    Example:
      flovyn workflow state ID -o json
    """

    async def work(client: Client) -> None:
        answer = await client.workflow_state(workflow_id)
        emit(
            answer,
            lambda: table(("KEY", "VALUE"), [(k, pretty(v)) for k, v in answer["state"].items()]),
        )

    run(work)


COMMANDS = [workflow]
