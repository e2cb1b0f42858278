"""Workflow executions over REST: trigger, list, read, events, tasks, attempts, logs."""

from __future__ import annotations

from aiohttp import web

from flovyn_server.api.common import P, engine, json, tenant
from flovyn_server.api.routing import Router
from flovyn_server.domain import iso
from flovyn_server.models.workflows import (
    AttemptList,
    ChildList,
    CountWorkflows,
    EventList,
    EventsQuery,
    ListWorkflows,
    LogPage,
    LogsQuery,
    StateAnswer,
    TaskList,
    TriggerAnswer,
    TriggerWorkflow,
    Workflow,
    WorkflowCounts,
    WorkflowList,
)

router = Router("Workflows")
E = P + "/workflow-executions/{id}"


@router.post(
    P + "/workflows/{kind}/trigger",
    answers={201: TriggerAnswer, 200: TriggerAnswer},
    errors=(409,),
    examples={"order": {"input": {"orderId": "o-1", "amount": 10}, "idempotencyKey": "o-1"}},
)
async def trigger_workflow(request: web.Request, kind: str, body: TriggerWorkflow) -> web.Response:
    """Start a workflow execution of `kind`.

    201 with the new execution; 200 with the existing one when `idempotencyKey` names
    an execution started within its TTL that has not failed. With `signal`
    (signal-with-start) the key's open execution, or a new one, receives the signal.
    """
    done = await engine(request).workflows.trigger(tenant(request), kind, body)
    url = f"/api/tenants/{request.match_info['slug']}/workflow-executions/{done.execution_id}"
    answer: TriggerAnswer = {
        "workflowExecutionId": done.execution_id,
        "status": done.status,
        "kind": done.kind,
        "createdAt": iso(done.created_at),
        "idempotencyKeyUsed": done.key_used,
        "idempotencyKeyNew": done.key_used and done.created,
        "links": {"self": url, "events": f"{url}/events"},
    }
    if done.signalled:
        answer["signalEventSequence"] = done.signal_sequence
    return json(answer, 201 if done.created else 200)


@router.get(P + "/workflow-executions", answers={200: WorkflowList})
async def list_executions(request: web.Request, query: ListWorkflows) -> web.Response:
    """List executions, newest first, with filters and paging.

    `status` is repeatable or a comma list; CANCELLING matches executions whose
    cancellation is requested and not finished.
    """
    return json(await engine(request).workflows.list(tenant(request), query))


@router.get(P + "/workflow-executions/counts", answers={200: WorkflowCounts})
async def count_executions(request: web.Request, query: CountWorkflows) -> web.Response:
    """Executions per status, for a dashboard's header: each exact up to 1,000, past
    that an estimate (listed in `estimated`). `kind` and `queue` narrow them."""
    return json(await engine(request).workflows.counts(tenant(request), query))


@router.get(E, answers={200: Workflow})
async def get_execution(request: web.Request, id: str) -> web.Response:
    """One execution with its input, output and error."""
    return json(await engine(request).workflows.get(tenant(request), id))


@router.get(E + "/events", answers={200: EventList})
async def list_events(request: web.Request, id: str, query: EventsQuery) -> web.Response:
    """The execution's history after `since_sequence`, in sequence order."""
    return json(
        await engine(request).workflows.events(
            tenant(request), id, query.since_sequence, query.limit
        )
    )


@router.get(E + "/tasks", answers={200: TaskList})
async def list_tasks(request: web.Request, id: str) -> web.Response:
    """The execution's tasks in scheduling order."""
    eng = engine(request)
    row = await eng.workflows.row(tenant(request), id)
    return json(await eng.tasks.of_workflow(row["id"]))


@router.get(E + "/state", answers={200: StateAnswer})
async def get_state(request: web.Request, id: str) -> web.Response:
    """The key-value state the workflow set."""
    return json(await engine(request).workflows.state(tenant(request), id))


@router.get(E + "/children", answers={200: ChildList})
async def list_children(request: web.Request, id: str) -> web.Response:
    """The child executions the workflow started, oldest first."""
    return json(await engine(request).workflows.children(tenant(request), id))


@router.get(E + "/tasks/{taskId}/attempts", answers={200: AttemptList})
async def list_attempts(request: web.Request, id: str, taskId: str) -> web.Response:
    """Every attempt of one task of the execution; 404 if the task is not in it."""
    eng = engine(request)
    task = await eng.tasks.owned(tenant(request), taskId, id)
    return json(await eng.tasks.attempts(task["id"]))


@router.get(E + "/tasks/{taskId}/logs", answers={200: LogPage})
async def list_logs(
    request: web.Request,
    id: str,
    taskId: str,
    query: LogsQuery,
) -> web.Response:
    """The task's log lines in time order, filtered and paged.

    `level` is a minimum (WARN gives WARN and ERROR), `search` a case-insensitive
    substring, `attempt` one attempt."""
    eng = engine(request)
    task = await eng.tasks.owned(tenant(request), taskId, id)
    return json(await eng.tasks.logs(task["id"], query))
