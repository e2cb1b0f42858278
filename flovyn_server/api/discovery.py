"""What workers are connected and which workflow and task kinds they offer."""

from __future__ import annotations

from aiohttp import web

from flovyn_server.api.common import P, engine, json, tenant
from flovyn_server.api.routing import Router
from flovyn_server.models.discovery import (
    Definition,
    DefinitionList,
    ListWorkers,
    WorkerDetail,
    WorkerList,
)

router = Router("Discovery")


@router.get(P + "/workers", answers={200: WorkerList})
async def list_workers(request: web.Request, query: ListWorkers) -> web.Response:
    """Registered workers, newest first; `type` and `status` filter."""
    return json(await engine(request).workers.list(tenant(request), query))


@router.get(P + "/workers/{workerId}", answers={200: WorkerDetail})
async def get_worker(request: web.Request, workerId: str) -> web.Response:
    """One worker with the workflow and task kinds it runs."""
    return json(await engine(request).workers.get(tenant(request), workerId))


@router.get(P + "/workflow-definitions", answers={200: DefinitionList})
async def list_workflow_definitions(request: web.Request) -> web.Response:
    """Workflow kinds workers registered, AVAILABLE while a worker runs them."""
    return json(await engine(request).definitions.list(tenant(request), "workflow"))


@router.get(P + "/workflow-definitions/{kind}", answers={200: Definition})
async def get_workflow_definition(request: web.Request, kind: str) -> web.Response:
    """One workflow kind, with its executions counted by status."""
    return json(await engine(request).definitions.get(tenant(request), "workflow", kind))


@router.get(P + "/task-definitions", answers={200: DefinitionList})
async def list_task_definitions(request: web.Request) -> web.Response:
    """Task kinds workers registered, with their retry policy."""
    return json(await engine(request).definitions.list(tenant(request), "task"))


@router.get(P + "/task-definitions/{kind}", answers={200: Definition})
async def get_task_definition(request: web.Request, kind: str) -> web.Response:
    """One task kind, with its executions counted by status."""
    return json(await engine(request).definitions.get(tenant(request), "task", kind))
