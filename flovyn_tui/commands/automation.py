"""`flovyn schedule ...` and `flovyn webhook ...`."""

from __future__ import annotations

from typing import Any

import click
from rich.console import Group
from rich.text import Text

from flovyn_tui.commands.base import CONTEXT, EXIT_USAGE, fail, run
from flovyn_tui.commands.common import confirm, emit, parse_json, subcommand
from flovyn_tui.output import local_time, pretty, short_ids, status, table, what, when
from flovyn_worker import Client

SCHEDULE_ID = click.argument("schedule_id", metavar="ID")
WEBHOOK_ID = click.argument("webhook_id", metavar="ID")
RUN_STATUS = {"started": "COMPLETED", "skipped": "CANCELLED", "failed": "FAILED"}


@click.group(context_settings=CONTEXT)
def schedule() -> None:
    """Schedules: start a workflow or a standalone task by cron, at an interval, or once."""


def schedule_options(f: Any) -> Any:
    for option in reversed(
        [
            click.option("--cron", metavar="EXPR", help="5 fields, or 6 with seconds first."),
            click.option("--timezone", default="UTC", show_default=True, help="An IANA name."),
            click.option("--every", type=click.IntRange(1), metavar="SECONDS", help="An interval."),
            click.option("--at", "run_at", metavar="TIME", help="Once, at this RFC 3339 time."),
            click.option(
                "--workflow", "workflow_kind", metavar="KIND", help="Start this workflow."
            ),
            click.option("--task", "task_kind", metavar="KIND", help="Or this standalone task."),
            click.option("--input", "input_", metavar="JSON", help="JSON, @file.json, or -."),
            click.option("--queue", default="default", show_default=True),
            click.option(
                "--overlap",
                type=click.Choice(["skip", "allow", "cancel_previous"]),
                default="skip",
                show_default=True,
                help="While the previous run has not ended.",
            ),
            click.option(
                "--missed",
                type=click.Choice(["skip", "execute_once"]),
                default="skip",
                show_default=True,
                help="Slots missed while the server was down.",
            ),
            click.option("--description"),
            click.option("--disabled", is_flag=True, help="Create it disabled."),
        ]
    ):
        f = option(f)
    return f


def schedule_body(name: str, o: dict[str, Any]) -> dict[str, Any]:
    """The API's body from the options; a usage error unless one timing and one target."""
    timings = [k for k in ("cron", "every", "run_at") if o[k] is not None]
    targets = [k for k in ("workflow_kind", "task_kind") if o[k] is not None]
    if len(timings) != 1:
        fail("give one of --cron, --every or --at", EXIT_USAGE)
    if len(targets) != 1:
        fail("give one of --workflow KIND or --task KIND", EXIT_USAGE)
    if o["cron"] is not None:
        kind: dict[str, Any] = {"type": "cron", "cron": o["cron"], "timezone": o["timezone"]}
    elif o["every"] is not None:
        kind = {"type": "interval", "everySeconds": o["every"]}
    else:
        kind = {"type": "once", "runAt": o["run_at"]}
    value = {} if o["input_"] is None else parse_json(o["input_"], "--input")
    if o["workflow_kind"] is not None:
        target = {
            "type": "workflow",
            "workflowKind": o["workflow_kind"],
            "queue": o["queue"],
            "input": value,
        }
    else:
        target = {"type": "task", "taskKind": o["task_kind"], "queue": o["queue"], "input": value}
    body = {
        "name": name,
        "scheduleType": kind,
        "target": target,
        "overlapPolicy": o["overlap"],
        "missedRunPolicy": o["missed"],
        "enabled": not o["disabled"],
    }
    if o["description"]:
        body["description"] = o["description"]
    return body


def schedules_table(rows: list[Any]) -> Any:
    ids = short_ids(s["id"] for s in rows)
    return table(
        ("", "NAME", "ID", "WHEN", "STARTS", "NEXT RUN", "LAST RUN", "RUNS"),
        [
            (
                "●" if s["enabled"] else "○",
                s["name"],
                ids[s["id"]],
                when(s),
                what(s),
                local_time(s["nextRunAt"]),
                local_time(s["lastRunAt"]),
                s["runCount"],
            )
            for s in rows
        ],
    )


@subcommand(schedule, "create", reads=True)
@click.argument("name")
@schedule_options
def schedule_create(name: str, **o: Any) -> None:
    """Create schedule NAME.

    \b
    Examples:
      flovyn schedule create nightly --cron "0 2 * * *" --timezone Europe/Berlin --workflow report
      flovyn schedule create heartbeat --every 60 --task ping --overlap allow
    """
    body = schedule_body(name, o)

    async def work(client: Client) -> None:
        made = await client.create_schedule(body)
        emit(made, lambda: schedules_table([made]))

    run(work)


@subcommand(schedule, "list")
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
@click.option("--cursor", help="The nextCursor a previous page printed.")
def schedule_list(limit: int, cursor: str | None) -> None:
    """The schedules, with their next and last run.

    \b
    Example:
      flovyn schedule list
    """

    async def work(client: Client) -> None:
        page = await client.schedule_page(limit=limit, cursor=cursor)
        emit(page, lambda: schedules_table(list(page["schedules"])), page["schedules"])

    run(work)


@subcommand(schedule, "get")
@SCHEDULE_ID
def schedule_get(schedule_id: str) -> None:
    """One schedule.

    \b
    Example:
      flovyn schedule get ID -o json
    """

    async def work(client: Client) -> None:
        found = await client.get_schedule(schedule_id)
        emit(found, lambda: Group(schedules_table([found]), pretty(found["target"])))

    run(work)


@subcommand(schedule, "update")
@SCHEDULE_ID
@click.option("--name", help="A new name (default: the same).")
@schedule_options
def schedule_update(schedule_id: str, name: str | None, **o: Any) -> None:
    """Replace a schedule's timing, target and policies (its next run is computed again).

    \b
    Example:
      flovyn schedule update ID --every 300 --workflow report
    """

    async def work(client: Client) -> None:
        old = await client.get_schedule(schedule_id)
        body = schedule_body(name or old["name"], o)
        changed = await client.replace_schedule(schedule_id, body)
        emit(changed, lambda: schedules_table([changed]))

    run(work)


@subcommand(schedule, "delete", reads=False)
@SCHEDULE_ID
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
def schedule_delete(schedule_id: str, yes: bool) -> None:
    """Delete a schedule and its runs (what it started stays).

    \b
    Example:
      flovyn schedule delete ID --yes
    """
    confirm(yes, f"Delete schedule {schedule_id}?")

    async def work(client: Client) -> None:
        await client.delete_schedule(schedule_id)
        print("deleted")

    run(work)


def _toggle(schedule_id: str, on: bool) -> None:
    async def work(client: Client) -> None:
        changed = await client.enable_schedule(schedule_id, on)
        emit(changed, lambda: schedules_table([changed]))

    run(work)


@subcommand(schedule, "enable")
@SCHEDULE_ID
def schedule_enable(schedule_id: str) -> None:
    """Enable a schedule: its next run is computed from now.

    \b
    Example:
      flovyn schedule enable ID
    """
    _toggle(schedule_id, True)


@subcommand(schedule, "disable")
@SCHEDULE_ID
def schedule_disable(schedule_id: str) -> None:
    """Disable a schedule: no run until it is enabled.

    \b
    Example:
      flovyn schedule disable ID
    """
    _toggle(schedule_id, False)


@subcommand(schedule, "trigger")
@SCHEDULE_ID
def schedule_trigger(schedule_id: str) -> None:
    """Run a schedule now; prints what it started.

    \b
    Example:
      flovyn schedule trigger ID
    """

    async def work(client: Client) -> None:
        fired = await client.trigger_schedule(schedule_id)
        emit(fired, lambda: Text(f"started {fired['targetType']} {fired['targetId']}"))

    run(work)


@subcommand(schedule, "runs")
@SCHEDULE_ID
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
@click.option("--cursor", help="The nextCursor a previous page printed.")
def schedule_runs(schedule_id: str, limit: int, cursor: str | None) -> None:
    """Each run: started (and what), skipped (and why) or failed.

    \b
    Example:
      flovyn schedule runs ID
    """

    async def work(client: Client) -> None:
        page = await client.schedule_runs(schedule_id, limit=limit, cursor=cursor)
        emit(
            page,
            lambda: table(
                ("STATUS", "SLOT", "STARTED", "TARGET", "ERROR"),
                [
                    (
                        Text(r["status"], style=status(RUN_STATUS[r["status"]]).style),
                        local_time(r["scheduledAt"]),
                        local_time(r["startedAt"]),
                        f"{r['targetType']} {r['targetId'] or '-'}",
                        r["error"] or "",
                    )
                    for r in page["runs"]
                ],
            ),
            page["runs"],
        )

    run(work)


@click.group(context_settings=CONTEXT)
def webhook() -> None:
    """Webhooks: receive a provider's deliveries and start work from them."""


def route(text: str) -> dict[str, Any]:
    """`GLOB=workflow:KIND`, `GLOB=task:KIND` or `GLOB=promise:NAME_PATH[@WORKFLOW_PATH]`."""
    glob, _, target = text.partition("=")
    kind, _, rest = target.partition(":")
    if not glob or not rest or kind not in ("workflow", "task", "promise"):
        raise click.BadParameter(
            f"{text!r}: use GLOB=workflow:KIND, GLOB=task:KIND or GLOB=promise:NAME_PATH[@WF_PATH]",
            param_hint="--route",
        )
    if kind == "workflow":
        return {"eventTypeFilter": glob, "target": {"type": "workflow", "workflowKind": rest}}
    if kind == "task":
        return {"eventTypeFilter": glob, "target": {"type": "task", "taskKind": rest}}
    name, _, workflow_path = rest.partition("@")
    promise: dict[str, Any] = {"type": "promise", "promiseNamePath": name}
    if workflow_path:
        promise["workflowIdPath"] = workflow_path
    return {"eventTypeFilter": glob, "target": promise}


def webhook_options(f: Any) -> Any:
    for option in reversed(
        [
            click.option("--slug", required=True, help="The last part of its URL."),
            click.option(
                "--provider",
                type=click.Choice(["github", "stripe", "shopify", "slack", "generic"]),
                default="generic",
                show_default=True,
            ),
            click.option("--secret", help="The shared secret its deliveries are signed with."),
            click.option("--no-verification", is_flag=True, help="Accept unsigned deliveries."),
            click.option(
                "--route",
                "routes",
                multiple=True,
                metavar="GLOB=TARGET",
                help="Repeatable: push=workflow:build, invoice.*=task:receipt, *=promise:data.name@data.workflowId.",
            ),
            click.option("--disabled", is_flag=True),
        ]
    ):
        f = option(f)
    return f


def webhook_body(name: str, o: dict[str, Any]) -> dict[str, Any]:
    if bool(o["secret"]) == bool(o["no_verification"]):
        fail("give --secret SECRET, or --no-verification", EXIT_USAGE)
    verification = (
        {"type": "none"} if o["no_verification"] else {"type": "hmac", "secret": o["secret"]}
    )
    return {
        "name": name,
        "slug": o["slug"],
        "provider": o["provider"],
        "verification": verification,
        "routes": [route(r) for r in o["routes"]],
        "enabled": not o["disabled"],
    }


def webhooks_table(rows: list[Any]) -> Any:
    ids = short_ids(w["id"] for w in rows)
    return table(
        ("", "NAME", "ID", "PROVIDER", "URL", "ROUTES"),
        [
            (
                "●" if w["enabled"] else "○",
                w["name"],
                ids[w["id"]],
                w["provider"],
                w["url"],
                ", ".join(f"{r['eventTypeFilter']}→{r['target']['type']}" for r in w["routes"]),
            )
            for w in rows
        ],
    )


@subcommand(webhook, "create")
@click.argument("name")
@webhook_options
def webhook_create(name: str, **o: Any) -> None:
    """Create webhook NAME; its URL is printed (no API key: deliveries are verified by
    the provider's signature).

    \b
    Example:
      flovyn webhook create pushes --slug github --provider github --secret "$SECRET" \\
        --route push=workflow:build
    """
    body = webhook_body(name, o)

    async def work(client: Client) -> None:
        made = await client.create_webhook(body)
        emit(made, lambda: webhooks_table([made]))

    run(work)


@subcommand(webhook, "list")
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
@click.option("--cursor", help="The nextCursor a previous page printed.")
def webhook_list(limit: int, cursor: str | None) -> None:
    """The webhooks (their secrets are never shown).

    \b
    Example:
      flovyn webhook list
    """

    async def work(client: Client) -> None:
        page = await client.webhook_page(limit=limit, cursor=cursor)
        emit(page, lambda: webhooks_table(list(page["webhooks"])), page["webhooks"])

    run(work)


@subcommand(webhook, "get")
@WEBHOOK_ID
def webhook_get(webhook_id: str) -> None:
    """One webhook, its verification (without the secret) and routes.

    \b
    Example:
      flovyn webhook get ID -o json
    """

    async def work(client: Client) -> None:
        found = await client.get_webhook(webhook_id)
        emit(found, lambda: Group(webhooks_table([found]), pretty(found["routes"])))

    run(work)


@subcommand(webhook, "update")
@WEBHOOK_ID
@click.option("--name", help="A new name (default: the same).")
@webhook_options
def webhook_update(webhook_id: str, name: str | None, **o: Any) -> None:
    """Replace a webhook (give its secret again).

    \b
    Example:
      flovyn webhook update ID --slug github --provider github --secret "$SECRET" \\
        --route "pull_request*=workflow:review"
    """

    async def work(client: Client) -> None:
        old = await client.get_webhook(webhook_id)
        changed = await client.replace_webhook(webhook_id, webhook_body(name or old["name"], o))
        emit(changed, lambda: webhooks_table([changed]))

    run(work)


@subcommand(webhook, "delete", reads=False)
@WEBHOOK_ID
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
def webhook_delete(webhook_id: str, yes: bool) -> None:
    """Delete a webhook and its events (what they started stays).

    \b
    Example:
      flovyn webhook delete ID --yes
    """
    confirm(yes, f"Delete webhook {webhook_id}?")

    async def work(client: Client) -> None:
        await client.delete_webhook(webhook_id)
        print("deleted")

    run(work)


@subcommand(webhook, "events")
@WEBHOOK_ID
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
@click.option("--cursor", help="The nextCursor a previous page printed.")
def webhook_events(webhook_id: str, limit: int, cursor: str | None) -> None:
    """The deliveries it received: delivered, unrouted, failed or duplicate.

    \b
    Example:
      flovyn webhook events ID
    """

    async def work(client: Client) -> None:
        page = await client.webhook_events(webhook_id, limit=limit, cursor=cursor)
        styles = {"delivered": "green", "unrouted": "dim", "failed": "red", "duplicate": "yellow"}
        emit(
            page,
            lambda: table(
                ("STATUS", "RECEIVED", "EVENT", "KEY", "STARTED", "ERROR"),
                [
                    (
                        Text(e["status"], style=styles.get(e["status"], "")),
                        local_time(e["receivedAt"]),
                        e["eventType"] or "-",
                        e["idempotencyKey"] or "-",
                        ", ".join(f"{t['type']} {t['id'][:8]}" for t in e["targets"]) or "-",
                        e["error"] or "",
                    )
                    for e in page["events"]
                ],
            ),
            page["events"],
        )

    run(work)


COMMANDS = [schedule, webhook]
