"""Webhooks: their definitions, and the ingest of deliveries.

A delivery is verified by the webhook's own scheme (`signatures.py`) before anything
is stored. Then, in one transaction: a delivery whose idempotency key (the route's
`idempotencyKeyPath`, else the provider's delivery id) was seen before is recorded as
a duplicate; otherwise each route whose glob matches the event type starts its
workflow or standalone task, with `{eventType, payload, headers}` as input (headers
of note: the provider's event type and delivery id, and the content type). Promise
targets are resolved after it, each in its own transaction, as the REST call does.
"""

from __future__ import annotations

import fnmatch
import uuid
from collections.abc import Mapping
from typing import Any, cast

from flovyn_server.domain import Conflict, DomainError, iso, not_found, now_ms
from flovyn_server.engine import signatures
from flovyn_server.engine.control import Control
from flovyn_server.engine.paging import Filters, Order, page
from flovyn_server.engine.tasks import insert_task
from flovyn_server.engine.tenants import Tenant, Tenants
from flovyn_server.engine.workflows import create_execution
from flovyn_server.jsonio import dumps, loads
from flovyn_server.models.webhooks import (
    Accepted,
    EventPage,
    ListEvents,
    ListWebhooks,
    Webhook,
    WebhookBody,
    WebhookEvent,
    WebhookList,
)
from flovyn_server.models.worker import RetryPolicy, ScheduleTask
from flovyn_server.models.workflows import ResolvePromise
from flovyn_server.store.base import Row, Store, Tx

WEBHOOK_ORDER = Order("webhooks", ("created_at", "id"))
EVENT_ORDER = Order("webhook-events", ("received_at", "id"))
NOTED = ("content-type", "user-agent")


def _shape(row: Row, tenant_slug: str) -> Webhook:
    verification = loads(row["verification"])
    verification.pop("secret", None)
    return {
        "id": row["id"],
        "name": row["name"],
        "slug": row["slug"],
        "provider": row["provider"],
        "url": f"/api/hooks/{tenant_slug}/{row['slug']}",
        "verification": verification,
        "routes": loads(row["routes"]),
        "enabled": bool(row["enabled"]),
        "createdAt": iso(row["created_at"]),
        "updatedAt": iso(row["updated_at"]),
    }


def _event(row: Row) -> WebhookEvent:
    return {
        "id": row["id"],
        "receivedAt": iso(row["received_at"]),
        "eventType": row["event_type"],
        "idempotencyKey": row["idempotency_key"],
        "status": row["status"],
        "targets": loads(row["targets"]),
        "error": row["error"],
    }


class Webhooks:
    def __init__(self, store: Store, tenants: Tenants, control: Control) -> None:
        self.store = store
        self.tenants = tenants
        self.control = control

    # -- definitions ------------------------------------------------------------------

    def _fields(self, body: WebhookBody) -> tuple[str, str]:
        verification = body.verification.model_dump(mode="json", by_alias=True, exclude_none=True)
        routes = [r.model_dump(mode="json", by_alias=True, exclude_none=True) for r in body.routes]
        return dumps(verification), dumps(routes)

    async def create(self, tenant: Tenant, body: WebhookBody) -> Webhook:
        verification, routes = self._fields(body)
        now, webhook_id = now_ms(), str(uuid.uuid4())
        async with self.store.transaction() as tx:
            inserted = await tx.execute(
                "INSERT INTO webhooks (id, tenant_id, name, slug, provider, verification, routes, "
                "enabled, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9) "
                "ON CONFLICT (tenant_id, slug) DO NOTHING",
                webhook_id, tenant.id, body.name, body.slug, body.provider, verification, routes,
                int(body.enabled), now,
            )  # fmt: skip
        if not inserted:
            raise Conflict(f"a webhook with slug {body.slug!r} exists", code="SLUG_TAKEN")
        return await self.get(tenant, webhook_id)

    async def row(self, tenant: Tenant, webhook_id: str) -> Row:
        async with self.store.read() as tx:
            row = await tx.fetchrow(
                "SELECT * FROM webhooks WHERE id = $1 AND tenant_id = $2", webhook_id, tenant.id
            )
        if row is None:
            raise not_found(f"webhook {webhook_id}")
        return row

    async def get(self, tenant: Tenant, webhook_id: str) -> Webhook:
        return _shape(await self.row(tenant, webhook_id), tenant.slug)

    async def listing(self, tenant: Tenant, q: ListWebhooks) -> WebhookList:
        found = await page(
            self.store, columns="*", table="webhooks", filters=Filters("tenant_id = ?", tenant.id),
            order=WEBHOOK_ORDER, limit=q.limit, offset=q.offset, cursor=q.cursor,
            shape=lambda row: _shape(row, tenant.slug),
        )  # fmt: skip
        return cast(WebhookList, found.answer("webhooks", q.limit, q.offset))

    async def replace(self, tenant: Tenant, webhook_id: str, body: WebhookBody) -> Webhook:
        verification, routes = self._fields(body)
        await self.row(tenant, webhook_id)
        async with self.store.transaction() as tx:
            taken = await tx.fetchval(
                "SELECT id FROM webhooks WHERE tenant_id = $1 AND slug = $2 AND id <> $3",
                tenant.id,
                body.slug,
                webhook_id,
            )
            if taken:
                raise Conflict(f"a webhook with slug {body.slug!r} exists", code="SLUG_TAKEN")
            await tx.execute(
                "UPDATE webhooks SET name = $2, slug = $3, provider = $4, verification = $5, "
                "routes = $6, enabled = $7, updated_at = $8 WHERE id = $1",
                webhook_id, body.name, body.slug, body.provider, verification, routes,
                int(body.enabled), now_ms(),
            )  # fmt: skip
        return await self.get(tenant, webhook_id)

    async def delete(self, tenant: Tenant, webhook_id: str) -> None:
        await self.row(tenant, webhook_id)
        async with self.store.transaction() as tx:
            await tx.execute("DELETE FROM webhook_events WHERE webhook_id = $1", webhook_id)
            await tx.execute("DELETE FROM webhooks WHERE id = $1", webhook_id)

    async def events(self, tenant: Tenant, webhook_id: str, q: ListEvents) -> EventPage:
        await self.row(tenant, webhook_id)
        found = await page(
            self.store, columns="*", table="webhook_events",
            filters=Filters("webhook_id = ?", webhook_id), order=EVENT_ORDER,
            limit=q.limit, offset=q.offset, cursor=q.cursor, shape=_event,
        )  # fmt: skip
        return cast(EventPage, found.answer("events", q.limit, q.offset))

    # -- ingest -------------------------------------------------------------------------

    async def ingest(
        self, tenant_slug: str, slug: str, headers: Mapping[str, str], body: bytes
    ) -> tuple[Accepted, bool]:
        """Verify and route one delivery; (its event, whether it was new). Raises
        NotFound for an unknown or disabled webhook and `signatures.Refused`."""
        async with self.store.read() as tx:
            row = await tx.fetchrow(
                "SELECT w.* FROM webhooks w JOIN tenants t ON t.id = w.tenant_id "
                "WHERE t.slug = $1 AND w.slug = $2 AND w.enabled = 1",
                tenant_slug,
                slug,
            )
        if row is None:
            raise not_found(f"webhook {tenant_slug}/{slug}")
        provider, verification = row["provider"], loads(row["verification"])
        signatures.verify(provider, verification, headers, body)  # before anything is stored
        try:
            payload: Any = loads(body) if body else None
        except ValueError:
            payload = body.decode("utf-8", "replace")
        delivery = signatures.describe(provider, headers, payload)
        routes = [
            r for r in loads(row["routes"])
            if fnmatch.fnmatchcase(delivery.event_type, r["eventTypeFilter"])
        ]  # fmt: skip
        key_path = next(
            (r.get("idempotencyKeyPath") for r in routes if r.get("idempotencyKeyPath")), None
        )
        key = signatures.lookup(payload, key_path) if key_path else delivery.delivery_id
        key = None if key is None else str(key)[:512]
        # str(): aiohttp's header names are a str subclass, which JSON encoding refuses.
        noted = {h: str(headers[h]) for h in NOTED if h in headers}
        noted |= {
            str(k): str(v)
            for k, v in headers.items()
            if k.lower().startswith(("x-github", "x-shopify", "x-slack", "stripe"))
            and "signature" not in k.lower()
            and "hmac" not in k.lower()
        }
        data = {"eventType": delivery.event_type, "payload": payload, "headers": noted}
        event_id, now = str(uuid.uuid4()), now_ms()
        promises: list[dict[str, Any]] = []
        async with self.store.transaction() as tx:
            if key is not None and await tx.fetchval(
                "SELECT id FROM webhook_events WHERE webhook_id = $1 AND idempotency_key = $2 "
                "AND status <> 'duplicate'",
                row["id"],
                key,
            ):
                await _record(
                    tx, event_id, row["id"], now, delivery.event_type, key, "duplicate", [], None
                )
                return {"eventId": event_id, "duplicate": True}, False
            started: list[dict[str, str]] = []
            for route in routes:
                target = route["target"]
                if target["type"] == "promise":
                    promises.append(target)
                    continue
                started.append(await _start(tx, row["tenant_id"], target, data, now))
            status = "delivered" if routes else "unrouted"
            await _record(
                tx, event_id, row["id"], now, delivery.event_type, key, status, started, None
            )
        if promises:
            await self._settle(tenant_slug, event_id, payload, promises, started)
        return {"eventId": event_id, "duplicate": False}, True

    async def _settle(
        self,
        tenant_slug: str,
        event_id: str,
        payload: Any,
        promises: list[dict[str, Any]],
        started: list[dict[str, str]],
    ) -> None:
        """Resolve the promises the payload names; the event says what became of them."""
        tenant = await self.tenants.resolve(tenant_slug)
        errors = []
        for target in promises:
            name = signatures.lookup(payload, target["promiseNamePath"])
            workflow = (
                signatures.lookup(payload, target["workflowIdPath"])
                if target.get("workflowIdPath")
                else None
            )
            if name is None:
                errors.append(f"no promise at {target['promiseNamePath']}")
                continue
            identifier = f"{workflow}:{name}" if workflow else str(name)
            try:
                answer = await self.control.resolve_promise(
                    tenant, identifier, ResolvePromise(value=payload)
                )
            except DomainError as exc:
                errors.append(f"promise {identifier}: {exc.message}")
                continue
            started.append({"type": "promise", "id": answer["promiseId"]})
        async with self.store.transaction() as tx:
            await tx.execute(
                "UPDATE webhook_events SET status = $2, targets = $3, error = $4 WHERE id = $1",
                event_id,
                "failed" if errors else "delivered",
                dumps(started),
                "; ".join(errors) or None,
            )


async def _start(
    tx: Tx, tenant_id: str, target: dict[str, Any], data: dict[str, Any], now: int
) -> dict[str, str]:
    target_id = str(uuid.uuid4())
    if target["type"] == "workflow":
        await create_execution(
            tx, tenant_id, execution_id=target_id, kind=target["workflowKind"],
            queue=target.get("queue") or "default", input=data, now=now,
        )  # fmt: skip
        return {"type": "workflow", "id": target_id}
    spec = ScheduleTask(
        type="SCHEDULE_TASK", task_execution_id=target_id, kind=target["taskKind"], input=data,
        queue=target.get("queue") or "default", max_retries=3, retry_policy=RetryPolicy(),
    )  # fmt: skip
    await insert_task(tx, tenant_id, spec, workflow_id=None, now=now, default_queue="default")
    return {"type": "task", "id": target_id}


async def _record(
    tx: Tx,
    event_id: str,
    webhook_id: str,
    now: int,
    event_type: str,
    key: str | None,
    status: str,
    targets: list[dict[str, str]],
    error: str | None,
) -> None:
    await tx.execute(
        "INSERT INTO webhook_events (id, webhook_id, received_at, event_type, idempotency_key, "
        "status, targets, error) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        event_id, webhook_id, now, event_type[:256], key, status, dumps(targets), error,
    )  # fmt: skip
