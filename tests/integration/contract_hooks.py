"""Helpers of the contract fuzz (`test_contract.py`): seed data, credentials, findings.

- `seed(url)` creates a tenant over REST and runs a few workflows with the SDK (a task
  with logs, a child workflow, a promise) and cancels one, so that reads answer with
  real items and streams of ended executions replay and close;
- `Credentials` picks the `Authorization` header each operation declares (or a missing
  or foreign one, to exercise 401/403);
- `Findings` collects every check failure, grouped, and renders them as one report;
- `server_errors(log)` extracts the distinct tracebacks of a server log.
"""

from __future__ import annotations

import asyncio
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from flovyn_worker import TaskContext, WorkflowContext, task, workflow
from tests.integration.conftest import ADMIN_KEY, Flovyn, new_tenant
from tests.integration.helpers import wait_status

SEED_WORKFLOWS = 2
DEMO_WORKFLOWS = 2
PROMISE = "approval"
ENDED = ("COMPLETED", "FAILED", "CANCELLED")


# -- seed data ----------------------------------------------------------------------------


@task(name="contract-echo")
async def contract_echo(ctx: TaskContext, value: Any) -> Any:
    ctx.logger.info("echo %r", value)
    await ctx.report_progress(0.5, {"half": True})
    return value


@workflow(name="contract-child")
async def contract_child(ctx: WorkflowContext, n: int) -> int:
    return n + 1


@workflow(name="contract-seed")
async def contract_seed(ctx: WorkflowContext, n: int) -> dict[str, Any]:
    ctx.set("n", n)
    echoed = await ctx.schedule(contract_echo, {"n": n})
    child = await ctx.schedule_workflow(contract_child, n)
    approval = await ctx.promise(PROMISE)
    return {"echoed": echoed, "child": child, "approval": approval}


@dataclass
class Seeded:
    """A tenant with credentials, and the real values of path variables in it."""

    slug: str
    api_key: str
    worker_token: str
    execution_ids: list[str] = field(default_factory=list)
    ended_ids: list[str] = field(default_factory=list)  # COMPLETED, FAILED or CANCELLED
    task_ids: list[str] = field(default_factory=list)
    task_pairs: list[tuple[str, str]] = field(default_factory=list)  # (execution, task)
    worker_ids: list[str] = field(default_factory=list)
    workflow_kinds: list[str] = field(default_factory=list)
    task_kinds: list[str] = field(default_factory=list)
    promises: list[str] = field(default_factory=list)
    standalone_ids: list[str] = field(default_factory=list)  # ended standalone tasks
    pending_task_ids: list[str] = field(default_factory=list)  # standalone, to cancel
    schedule_ids: list[str] = field(default_factory=list)
    webhook_ids: list[str] = field(default_factory=list)
    webhook_slugs: list[str] = field(default_factory=list)
    # DELETE gets its own: had it the others, the other operations would find them gone
    doomed_schedule_ids: list[str] = field(default_factory=list)
    doomed_webhook_ids: list[str] = field(default_factory=list)


async def _wait_event(f: Flovyn, workflow_id: str, event_type: str, within: float = 30) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while event_type not in [e["eventType"] for e in await f.events(workflow_id)]:
        if loop.time() > deadline:
            raise AssertionError(f"seed workflow {workflow_id} has no {event_type} event")
        await asyncio.sleep(0.05)


async def _seed(url: str) -> Seeded:
    async with aiohttp.ClientSession(trust_env=False) as session:
        f = Flovyn(url, session)
        f.slug, f.api_key, f.worker_token = await new_tenant(f)
        seeded = Seeded(f.slug, f.api_key, f.worker_token)
        async with (
            f.worker([contract_seed, contract_child], [contract_echo], poll_timeout=1.0),
            f.client() as client,
        ):
            handles = [await client.start_workflow(contract_seed, n) for n in range(SEED_WORKFLOWS)]
            for handle in handles:
                await _wait_event(f, handle.id, "PROMISE_CREATED")
            # The first one completes; the others keep waiting on their promise.
            await client.resolve_promise(f"{handles[0].id}:{PROMISE}", {"ok": True})
            await handles[0].result(timeout=30)
            done = await client.start_task("contract-echo", {"standalone": True})
            await done.result(timeout=30)
            seeded.standalone_ids.append(done.id)
        # A cancelled standalone task, and schedules and webhooks (several each: the fuzz
        # deletes some).
        for n in range(6):
            pending = await f.ok("POST", "P/tasks", {"kind": "contract-nobody"})
            if n < 2:
                await f.ok("DELETE", f"P/tasks/{pending['id']}")
                seeded.standalone_ids.append(pending["id"])
            else:
                seeded.pending_task_ids.append(pending["id"])
        for n in range(8):
            made = await f.ok(
                "POST",
                "P/schedules",
                {
                    "name": f"contract-{n}",
                    "scheduleType": {"type": "cron", "cron": "0 3 * * *", "timezone": "UTC"},
                    "target": {"type": "workflow", "workflowKind": "demo"},
                    "enabled": n % 2 == 0,
                },
            )
            (seeded.schedule_ids if n < 4 else seeded.doomed_schedule_ids).append(made["id"])
            hook = await f.ok(
                "POST",
                "P/webhooks",
                {
                    "name": f"contract-{n}",
                    "slug": f"contract-{n}",
                    "verification": {"type": "none"},
                    "routes": [
                        {"eventTypeFilter": "*", "target": {"type": "task", "taskKind": "demo"}}
                    ],
                },
            )
            if n < 4:
                seeded.webhook_ids.append(hook["id"])
                seeded.webhook_slugs.append(hook["slug"])
            else:
                seeded.doomed_webhook_ids.append(hook["id"])
        for n in range(DEMO_WORKFLOWS):  # PENDING: only the fuzz's polls may claim them
            await f.ok("POST", "P/workflows/demo/trigger", {"input": {"n": n}})
        cancelled = await f.ok("POST", "P/workflows/contract-cancelled/trigger", {"input": {}})
        await f.ok("POST", f"P/workflow-executions/{cancelled['workflowExecutionId']}/cancel", {})
        await wait_status(f, cancelled["workflowExecutionId"], "CANCELLED")
        # A worker that stays registered (the SDK's unregistered on exit), for the
        # `workerId` of the worker protocol's bodies.
        registered = await f.ok(
            "POST",
            "P/worker/register",
            {"name": "contract-fuzz", "workflows": [{"kind": "demo"}]},
            key=f.worker_token,
        )

        listed = await f.ok("GET", "P/workflow-executions", params={"limit": 100})
        seeded.execution_ids = [row["id"] for row in listed["workflows"]]
        seeded.ended_ids = [row["id"] for row in listed["workflows"] if row["status"] in ENDED]
        for handle in handles:
            for row in await f.tasks(handle.id):
                seeded.task_ids.append(row["id"])
                seeded.task_pairs.append((handle.id, row["id"]))
            for event in await f.events(handle.id):
                if event["eventType"] == "PROMISE_CREATED":
                    seeded.promises.append(str(event["data"]["promiseId"]))
        seeded.promises += [f"{h.id}:{PROMISE}" for h in handles]
        workers = await f.ok("GET", "P/workers")
        seeded.worker_ids = [registered["workerId"]]
        seeded.worker_ids += [
            w["id"] for w in workers["workers"] if w["id"] not in seeded.worker_ids
        ]
        seeded.workflow_kinds = ["contract-seed", "contract-child", "demo"]
        seeded.task_kinds = ["contract-echo"]
        assert seeded.task_ids and seeded.worker_ids and seeded.promises, seeded
        assert len(seeded.ended_ids) >= 2, seeded  # the completed ones and the cancelled one
        return seeded


def seed(url: str) -> Seeded:
    """Create a tenant and run the seed workflows on the server at `url` (sync)."""
    return asyncio.run(_seed(url))


# -- credentials --------------------------------------------------------------------------


@dataclass(frozen=True)
class Credentials:
    api_key: str
    worker_token: str
    admin_key: str = ADMIN_KEY

    def for_scheme(self, scheme: str) -> str:
        return {"apiKey": self.api_key, "workerToken": self.worker_token}.get(
            scheme, self.admin_key
        )

    def foreign(self, schemes: list[str]) -> str:
        """A valid credential of a kind the operation does not accept (403 expected)."""
        for scheme in ("workerToken", "apiKey", "adminKey"):
            if scheme not in schemes:
                return self.for_scheme(scheme)
        return "not-a-key"  # every kind accepted: an unknown one (401)


def security_schemes(operation: dict[str, Any]) -> list[str]:
    """The scheme names an operation of the document accepts, in its order."""
    names: list[str] = []
    for requirement in operation.get("security") or []:
        names += [name for name in requirement if name not in names]
    return names


# -- findings -----------------------------------------------------------------------------

EXCERPT = 300
EXAMPLES_PER_GROUP = 2


def excerpt(value: object, limit: int = EXCERPT) -> str:
    text = value if isinstance(value, str) else repr(value)
    text = text.replace("\n", "\\n")
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} chars)"


@dataclass
class Finding:
    operation: str
    check: str
    status: int | None
    request: str
    detail: str
    response: str


@dataclass
class Findings:
    """Every failed check, grouped by (operation, check, status), in first-seen order."""

    groups: dict[tuple[str, str, int | None], list[Finding]] = field(
        default_factory=lambda: defaultdict(list)
    )
    counts: Counter[tuple[str, str, int | None]] = field(default_factory=Counter)

    def add(self, finding: Finding) -> None:
        key = (finding.operation, finding.check, finding.status)
        self.counts[key] += 1
        if len(self.groups[key]) < EXAMPLES_PER_GROUP:
            self.groups[key].append(finding)

    def __bool__(self) -> bool:
        return bool(self.counts)

    def report(self) -> str:
        lines = [f"{len(self.counts)} distinct contract failures ({self.counts.total()} in all):"]
        for key, examples in self.groups.items():
            operation, check, status = key
            lines.append(f"\n* {operation}: {check} (status {status}, {self.counts[key]}x)")
            for ex in examples:
                lines.append(f"    request:  {ex.request}")
                lines.append(f"    problem:  {ex.detail}")
                lines.append(f"    response: {ex.response}")
        return "\n".join(lines)


# -- the server's log ---------------------------------------------------------------------

_LEVEL = re.compile(r" (ERROR|CRITICAL) ")
_FRAME = re.compile(r'^\s*File "([^"]+)", line (\d+), in (\S+)$')


def server_errors(log: str) -> list[str]:
    """Each distinct ERROR (or CRITICAL) record and bare traceback of a server log, as
    'message: Exception: text (at file:line in fn) [count]'."""
    lines = log.splitlines()
    found: dict[str, int] = {}
    for i, line in enumerate(lines):
        is_record = _LEVEL.search(line) is not None
        starts_traceback = line.startswith("Traceback (most recent call last):")
        if not is_record and not starts_traceback:
            continue
        if starts_traceback and i > 0 and _LEVEL.search(lines[i - 1]) is not None:
            continue  # already told with its record
        key = line.split(": ", 1)[-1] if is_record else ""
        follow = i + 1 if is_record else i
        if follow < len(lines) and lines[follow].startswith("Traceback"):
            key += (": " if key else "") + _exception(lines[follow + 1 :])
        found[key] = found.get(key, 0) + 1
    return [f"{excerpt(key, 400)} [{n}x]" for key, n in found.items()]


def _exception(lines: list[str]) -> str:
    """'Exception: text (at the innermost server frame)' of a traceback's lines."""
    frame = ""
    for line in lines:
        hit = _FRAME.match(line)
        if hit is not None:
            if "/flovyn_server/" in hit.group(1):
                path = hit.group(1).split("/flovyn_server/", 1)[1]
                frame = f"flovyn_server/{path}:{hit.group(2)} in {hit.group(3)}"
        elif line and not line.startswith((" ", "\t")):
            return f"{excerpt(line, 200)} (at {frame or 'no server frame'})"
    return "(traceback cut short)"
