"""Acting on executions: cancel, retry, signal, and settling promises."""

from __future__ import annotations

from aiohttp import web

from flovyn_server.api.common import P, engine, json, tenant
from flovyn_server.api.routing import Router
from flovyn_server.models.workflows import (
    CancelAnswer,
    CancelWorkflow,
    PromiseAnswer,
    RejectPromise,
    ResolvePromise,
    RetryAnswer,
    RetryWorkflow,
    SignalAnswer,
    SignalWorkflow,
)

router = Router("Control")
E = P + "/workflow-executions/{id}"


@router.post(E + "/cancel", answers={200: CancelAnswer})
async def cancel_execution(request: web.Request, id: str, body: CancelWorkflow) -> web.Response:
    """Cancel an execution and, by default, its open descendants.

    One that no worker has run ends CANCELLED at once; one that has run is CANCELLING
    until its code has seen the cancellation. A terminal one answers ALREADY_TERMINAL.
    """
    return json(await engine(request).control.cancel(tenant(request), id, body))


@router.post(E + "/retry", answers={200: RetryAnswer}, errors=(409,))
async def retry_execution(request: web.Request, id: str, body: RetryWorkflow) -> web.Response:
    """Run a FAILED execution again: it replays from its history. 409 unless FAILED."""
    return json(await engine(request).control.retry(tenant(request), id, body))


@router.post(
    E + "/signal",
    answers={200: SignalAnswer},
    errors=(409,),
    examples={"approve": {"signalName": "approved", "value": {"by": "ops"}}},
)
async def signal_execution(request: web.Request, id: str, body: SignalWorkflow) -> web.Response:
    """Send a named signal with a value; 409 when the execution has ended."""
    return json(await engine(request).control.signal(tenant(request), id, body))


@router.post(P + "/promises/{identifier}/resolve", answers={200: PromiseAnswer}, errors=(409,))
async def resolve_promise(
    request: web.Request, identifier: str, body: ResolvePromise
) -> web.Response:
    """Resolve a pending promise with a value (a second settle answers alreadyResolved)."""
    return json(await engine(request).control.resolve_promise(tenant(request), identifier, body))


@router.post(P + "/promises/{identifier}/reject", answers={200: PromiseAnswer}, errors=(409,))
async def reject_promise(
    request: web.Request, identifier: str, body: RejectPromise
) -> web.Response:
    """Reject a pending promise with an error (a second settle answers alreadyResolved)."""
    return json(await engine(request).control.reject_promise(tenant(request), identifier, body))
