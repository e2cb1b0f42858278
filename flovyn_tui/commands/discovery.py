"""`flovyn worker ...`, `flovyn definition ...` and `flovyn promise ...`."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import click
from rich.console import Group
from rich.text import Text

from flovyn_tui.commands.base import CONTEXT, run
from flovyn_tui.commands.common import emit, parse_json, subcommand
from flovyn_tui.output import (
    human_seconds,
    local_time,
    parse_time,
    pretty,
    short_ids,
    status,
    table,
)
from flovyn_worker import Client


def age(value: str | None) -> str:
    when = parse_time(value)
    if when is None:
        return "-"
    return human_seconds(max(0.0, (datetime.now(UTC) - when).total_seconds())) + " ago"


@click.group(context_settings=CONTEXT)
def worker() -> None:
    """Workers connected to the tenant, and what they run."""


@subcommand(worker, "list")
@click.option(
    "--type", "type_", type=click.Choice(["WORKFLOW", "TASK", "UNIFIED"], case_sensitive=False)
)
@click.option("--status", type=click.Choice(["ONLINE", "OFFLINE"], case_sensitive=False))
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
@click.option("--cursor", help="The nextCursor a previous page printed.")
def worker_list(type_: str | None, status: str | None, limit: int, cursor: str | None) -> None:
    """Workers, with their status and heartbeat age.

    \b
    Example:
      flovyn worker list --status ONLINE
    """

    async def work(client: Client) -> None:
        page = await client.worker_page(type=type_, status=status, limit=limit, cursor=cursor)
        rows = page["workers"]
        ids = short_ids(w["id"] for w in rows)

        def render() -> Any:
            grid = table(
                ("STATUS", "NAME", "ID", "TYPE", "QUEUES", "HEARTBEAT", "HOST", "VERSION"),
                [
                    (
                        _status(w["status"]),
                        w["name"],
                        ids[w["id"]],
                        w["type"],
                        ",".join(w["queues"]),
                        age(w["lastHeartbeatAt"]),
                        f"{w['hostName'] or '-'}:{w['processId'] or '-'}",
                        w["version"] or "-",
                    )
                    for w in rows
                ],
                title=f"{len(rows)} of {page['total']} workers",
            )
            more = f"next page: --cursor {page['nextCursor']}" if page["nextCursor"] else ""
            return Group(grid, Text(more, style="dim"))

        emit(page, render, rows)

    run(work)


def _status(value: str) -> Text:
    return status(value)


@subcommand(worker, "get")
@click.argument("worker_id", metavar="ID")
def worker_get(worker_id: str) -> None:
    """One worker and the workflow and task kinds it runs.

    \b
    Example:
      flovyn worker get 6b1f...
    """

    async def work(client: Client) -> None:
        answer = await client.get_worker(worker_id)
        w = answer["worker"]
        emit(
            answer,
            lambda: table(
                ("FIELD", "VALUE"),
                [
                    ("id", w["id"]),
                    ("name", w["name"]),
                    ("status", _status(w["status"])),
                    ("type", w["type"]),
                    ("queues", ", ".join(w["queues"])),
                    ("heartbeat", age(w["lastHeartbeatAt"])),
                    ("registered", local_time(w["registeredAt"])),
                    ("host", f"{w['hostName'] or '-'} (pid {w['processId'] or '-'})"),
                    ("version", w["version"] or "-"),
                    ("workflows", ", ".join(answer["workflowCapabilities"]) or "-"),
                    ("tasks", ", ".join(answer["taskCapabilities"]) or "-"),
                ],
            ),
        )

    run(work)


@click.group(context_settings=CONTEXT)
def definition() -> None:
    """Workflow and task kinds, as workers registered them."""


TYPE = click.option(
    "--type",
    "type_",
    type=click.Choice(["workflow", "task"]),
    default="workflow",
    show_default=True,
    help="Workflow kinds or task kinds.",
)


@subcommand(definition, "list")
@TYPE
def definition_list(type_: str) -> None:
    """Kinds and whether a worker runs them now.

    \b
    Examples:
      flovyn definition list
      flovyn definition list --type task
    """

    async def work(client: Client) -> None:
        answer = await (
            client.workflow_definitions() if type_ == "workflow" else client.task_definitions()
        )
        rows = answer["definitions"]
        emit(
            answer,
            lambda: table(
                ("STATUS", "KIND", "WORKERS", "DESCRIPTION", "LAST REGISTERED"),
                [
                    (
                        status(d["availabilityStatus"]),
                        d["kind"],
                        d["workerCount"],
                        d["description"] or "",
                        local_time(d["lastRegisteredAt"]),
                    )
                    for d in rows
                ],
            ),
            rows,
        )

    run(work)


@subcommand(definition, "get")
@click.argument("kind")
@TYPE
def definition_get(kind: str, type_: str) -> None:
    """One kind: its description, schemas, and recent executions by status.

    \b
    Example:
      flovyn definition get order
    """

    async def work(client: Client) -> None:
        d = await (
            client.workflow_definition(kind)
            if type_ == "workflow"
            else client.task_definition(kind)
        )
        rows: list[tuple[str, Any]] = [
            ("kind", d["kind"]),
            ("status", status(d["availabilityStatus"])),
            ("workers", d["workerCount"]),
            ("description", d["description"] or "-"),
            ("tags", ", ".join(d["tags"]) or "-"),
            ("first seen", local_time(d["firstSeenAt"])),
            ("last registered", local_time(d["lastRegisteredAt"])),
        ]
        for key in ("timeoutSeconds", "timeoutMs", "latestVersion", "cancellable", "retryPolicy"):
            if d.get(key) is not None:
                rows.append((key, pretty(d.get(key))))
        for key in ("inputSchema", "outputSchema"):
            if d.get(key):
                rows.append((key, pretty(d.get(key))))
        if d.get("executionCounts"):
            counts = d.get("executionCounts") or {}
            rows.append(
                ("executions", ", ".join(f"{k} {v}" for k, v in counts.items() if v) or "0")
            )
        emit(d, lambda: table(("FIELD", "VALUE"), rows))

    run(work)


@click.group(context_settings=CONTEXT)
def promise() -> None:
    """Settle a promise a workflow waits on.

    IDENTIFIER is the promise's id, `key:<idempotencyKey>`, or
    `<workflowExecutionId>:<promiseName>`.
    """


@subcommand(promise, "resolve", reads=False)
@click.argument("identifier")
@click.option("--value", metavar="JSON", help="JSON, @file.json, or - for stdin.")
def promise_resolve(identifier: str, value: str | None) -> None:
    """Resolve a promise with a value.

    \b
    Example:
      flovyn promise resolve 3f2a...:approval --value '{"approved": true}'
    """
    parsed = None if value is None else parse_json(value, "--value")

    async def work(client: Client) -> None:
        answer = await client.resolve_promise(identifier, parsed)
        print(
            "already settled"
            if answer.get("alreadyResolved")
            else f"resolved {answer['promiseId']}"
        )

    run(work)


@subcommand(promise, "reject", reads=False)
@click.argument("identifier")
@click.option("--error", "error", required=True, metavar="MESSAGE", help="Why.")
def promise_reject(identifier: str, error: str) -> None:
    """Reject a promise with an error.

    \b
    Example:
      flovyn promise reject key:pay-77 --error "card declined"
    """

    async def work(client: Client) -> None:
        answer = await client.reject_promise(identifier, error)
        print(
            "already settled"
            if answer.get("alreadyResolved")
            else f"rejected {answer['promiseId']}"
        )

    run(work)


COMMANDS = [worker, definition, promise]
