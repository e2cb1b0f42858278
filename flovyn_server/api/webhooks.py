"""Webhooks over REST, and the ingest of deliveries (no API key: each webhook verifies
its own provider's signature)."""

from __future__ import annotations

from aiohttp import web

from flovyn_server.api.common import P, engine, json, tenant
from flovyn_server.api.routing import Router
from flovyn_server.domain import Unauthenticated
from flovyn_server.engine.signatures import Refused
from flovyn_server.models.webhooks import (
    Accepted,
    EventPage,
    ListEvents,
    ListWebhooks,
    Webhook,
    WebhookBody,
    WebhookList,
)

router = Router("Webhooks")
W = P + "/webhooks/{webhookId}"
EXAMPLE = {
    "name": "GitHub pushes",
    "slug": "github",
    "provider": "github",
    "verification": {"type": "hmac", "secret": "a-long-shared-secret"},
    "routes": [
        {"eventTypeFilter": "push", "target": {"type": "workflow", "workflowKind": "build"}}
    ],
}


@router.post(P + "/webhooks", answers={201: Webhook}, errors=(409,), examples={"github": EXAMPLE})
async def create_webhook(request: web.Request, body: WebhookBody) -> web.Response:
    """Create a webhook: deliveries to its `url` are verified by its provider's scheme
    and routed by event type. The secret is kept to verify, never returned. 409 when
    the slug is taken."""
    return json(await engine(request).webhooks.create(tenant(request), body), 201)


@router.get(P + "/webhooks", answers={200: WebhookList})
async def list_webhooks(request: web.Request, query: ListWebhooks) -> web.Response:
    """The tenant's webhooks, newest first, paged (without their secrets)."""
    return json(await engine(request).webhooks.listing(tenant(request), query))


@router.get(W, answers={200: Webhook})
async def get_webhook(request: web.Request, webhookId: str) -> web.Response:
    """One webhook (without its secret)."""
    return json(await engine(request).webhooks.get(tenant(request), webhookId))


@router.route("PUT", W, answers={200: Webhook}, errors=(409,), examples={"github": EXAMPLE})
async def replace_webhook(request: web.Request, webhookId: str, body: WebhookBody) -> web.Response:
    """Replace a webhook (send the secret again)."""
    return json(await engine(request).webhooks.replace(tenant(request), webhookId, body))


@router.route("DELETE", W, answers={204: None})
async def delete_webhook(request: web.Request, webhookId: str) -> web.Response:
    """Delete a webhook and its events (what they started stays)."""
    await engine(request).webhooks.delete(tenant(request), webhookId)
    return web.Response(status=204)


@router.get(W + "/events", answers={200: EventPage})
async def list_webhook_events(
    request: web.Request, webhookId: str, query: ListEvents
) -> web.Response:
    """Each delivery received: delivered, unrouted, failed or duplicate, and the ids of
    what it started or resolved; newest first, paged."""
    return json(await engine(request).webhooks.events(tenant(request), webhookId, query))


@router.post(
    "/api/hooks/{slug}/{webhookSlug}",
    answers={202: Accepted, 200: Accepted},
    errors=(401, 413),
    content_type="application/json",
)
async def ingest_webhook(request: web.Request, slug: str, webhookSlug: str) -> web.Response:
    """Receive a delivery (no API key). It is verified by the webhook's own scheme
    before anything is stored (401 otherwise); the body is at most 1 MiB. 202 with
    `{eventId}`; a duplicate delivery (same idempotency key) answers 200 and starts
    nothing."""
    body = await request.read()
    try:
        accepted, new = await engine(request).webhooks.ingest(
            slug, webhookSlug, request.headers, body
        )
    except Refused as exc:
        raise Unauthenticated(f"delivery refused: {exc}") from None
    return json(accepted, 202 if new else 200)
