"""Standalone tasks over REST: create, list, read, cancel, attempts and logs."""

from __future__ import annotations

from aiohttp import web

from flovyn_server.api.common import P, engine, json, tenant
from flovyn_server.api.routing import Router
from flovyn_server.models.tasks import CreateTask, ListTasks, TaskPage
from flovyn_server.models.workflows import AttemptList, LogPage, LogsQuery, Task

router = Router("Tasks")
T = P + "/tasks/{taskId}"


@router.post(
    P + "/tasks",
    answers={201: Task, 200: Task},
    examples={"invoice": {"kind": "send-invoice", "input": {"orderId": "o-1"}, "maxRetries": 2}},
)
async def create_standalone_task(request: web.Request, body: CreateTask) -> web.Response:
    """Run a task with no workflow on a worker that registered its kind.

    201 with the new task; 200 with the existing one when `idempotencyKey` names a task
    created within its TTL that has not failed or been cancelled. It is retried as a
    workflow's task is (`maxRetries` more attempts, with backoff)."""
    task, created = await engine(request).standalone.create(tenant(request), body)
    return json(task, 201 if created else 200)


@router.get(P + "/tasks", answers={200: TaskPage})
async def list_standalone_tasks(request: web.Request, query: ListTasks) -> web.Response:
    """Standalone tasks (never a workflow's), newest first, filtered and paged."""
    return json(await engine(request).standalone.list(tenant(request), query))


@router.get(T, answers={200: Task})
async def get_standalone_task(request: web.Request, taskId: str) -> web.Response:
    """One standalone task; 404 for a workflow's task."""
    return json(await engine(request).standalone.get(tenant(request), taskId))


@router.route("DELETE", T, answers={204: None}, errors=(409,))
async def cancel_standalone_task(request: web.Request, taskId: str) -> web.Response:
    """Cancel a PENDING standalone task: 204; 409 when it runs or has ended; 400 for a
    workflow's task (cancel its workflow)."""
    await engine(request).standalone.cancel(tenant(request), taskId)
    return web.Response(status=204)


@router.get(T + "/attempts", answers={200: AttemptList})
async def list_standalone_task_attempts(request: web.Request, taskId: str) -> web.Response:
    """Every attempt of the task."""
    eng = engine(request)
    row = await eng.standalone.row(tenant(request), taskId)
    return json(await eng.tasks.attempts(row["id"]))


@router.get(T + "/logs", answers={200: LogPage})
async def list_standalone_task_logs(
    request: web.Request, taskId: str, query: LogsQuery
) -> web.Response:
    """The task's log lines in time order, filtered and paged, as for a workflow's task:
    `level` a minimum, `search` a case-insensitive substring, `attempt` one attempt."""
    eng = engine(request)
    row = await eng.standalone.row(tenant(request), taskId)
    return json(await eng.tasks.logs(row["id"], query))
