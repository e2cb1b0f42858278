"""Finished executions past their retention are removed with all they own, whole trees
only, on both stores; a tenant's own retention overrides the server's default."""

from __future__ import annotations

from flovyn_server import metrics
from flovyn_server.api.common import ENGINE
from flovyn_server.domain import now_ms
from flovyn_server.engine import retention
from flovyn_server.engine.workflows import create_execution
from tests.integration.conftest import ADMIN_KEY, Flovyn
from tests.integration.helpers import assert_error, trigger

HOUR_MS = 3_600_000


async def age(f: Flovyn, execution_id: str, ms: int) -> None:
    """Make an execution (and its history) look `ms` older."""
    store = f.app[ENGINE].store
    async with store.transaction() as tx:
        await tx.execute(
            "UPDATE workflow_executions SET created_at = created_at - $2, "
            "completed_at = completed_at - $2 WHERE id = $1",
            execution_id,
            ms,
        )


async def test_finished_trees_go_with_all_they_own(flovyn: Flovyn) -> None:
    f = flovyn
    store = f.app[ENGINE].store
    old = await trigger(f, "ret-old", {"idempotencyKey": "ret-key-1"})
    await f.ok("POST", f"P/workflow-executions/{old}/cancel", {})  # never started: CANCELLED
    busy = await trigger(f, "ret-busy")
    await f.ok("POST", f"P/workflow-executions/{busy}/cancel", {})
    tenant_id = (await f.ok("GET", f"/api/tenants/{f.slug}", key=ADMIN_KEY))["id"]
    child = "5b5c8f7e-6a1d-4c3b-9f0e-2d1c3b4a5e6f"
    async with store.transaction() as tx:  # a child of `busy` that has not ended
        await create_execution(
            tx, tenant_id, execution_id=child, kind="ret-child", queue="default", input=None,
            now=now_ms(), parent_id=busy, child_name="c",
        )  # fmt: skip
    recent = await trigger(f, "ret-recent")
    await f.ok("POST", f"P/workflow-executions/{recent}/cancel", {})
    for execution_id in (old, busy, child):
        await age(f, execution_id, 2 * HOUR_MS)
    before = metrics.EXECUTIONS_REMOVED._value.get()

    assert await retention.prune(store, HOUR_MS, now_ms()) == 1

    status, body = await f.call("GET", f"P/workflow-executions/{old}")
    assert_error(status, body, 404)
    async with store.read() as tx:
        left = await tx.fetchval(
            "SELECT count(*) FROM workflow_events WHERE workflow_execution_id = $1", old
        )
    assert left == 0
    for kept in (busy, child, recent):  # a running descendant keeps its tree; too recent
        await f.ok("GET", f"P/workflow-executions/{kept}")
    assert metrics.EXECUTIONS_REMOVED._value.get() == before + 1
    # Its idempotency key went with it: the same key starts a new execution.
    again = await f.ok("POST", "P/workflows/ret-old/trigger", {"idempotencyKey": "ret-key-1"})
    assert again["workflowExecutionId"] != old
    # Once the child has ended, the tree goes whole.
    await f.ok("POST", f"P/workflow-executions/{child}/cancel", {})
    await age(f, child, 2 * HOUR_MS)
    assert await retention.prune(store, HOUR_MS, now_ms()) == 2
    for gone in (busy, child):
        status, body = await f.call("GET", f"P/workflow-executions/{gone}")
        assert_error(status, body, 404)
    # Without a retention, nothing goes.
    await age(f, recent, 2 * HOUR_MS)
    assert await retention.prune(store, None, now_ms()) == 0
    await f.ok("GET", f"P/workflow-executions/{recent}")


async def test_a_tenant_retention_overrides_the_default(flovyn: Flovyn) -> None:
    f = flovyn
    store = f.app[ENGINE].store
    created = await f.ok(
        "POST", "/api/tenants", {"name": "Short", "slug": f"short-{f.slug[-6:]}",
                                 "retentionSeconds": 600}, key=ADMIN_KEY,
    )  # fmt: skip
    assert created["retentionSeconds"] == 600
    mine = await trigger(f, "ret-default")  # this tenant: the server's default (none here)
    await f.ok("POST", f"P/workflow-executions/{mine}/cancel", {})
    await age(f, mine, 2 * HOUR_MS)
    async with store.transaction() as tx:  # one finished execution of the short tenant
        await create_execution(
            tx, created["id"], execution_id="0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9",
            kind="k", queue="default", input=None, now=now_ms() - 2 * HOUR_MS,
        )  # fmt: skip
        await tx.execute(
            "UPDATE workflow_executions SET status = 'COMPLETED', completed_at = $2 WHERE id = $1",
            "0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9",
            now_ms() - 2 * HOUR_MS,
        )
    assert await retention.prune(store, None, now_ms()) == 1
    await f.ok("GET", f"P/workflow-executions/{mine}")
    status, body = await f.call(
        "POST", "/api/tenants", {"name": "x", "slug": "too-short", "retentionSeconds": 5},
        key=ADMIN_KEY,
    )  # fmt: skip
    assert_error(status, body, 400)
    # The admin key changes a tenant's retention; null goes back to the default.
    path = f"/api/tenants/{created['slug']}"
    changed = await f.ok("PATCH", path, {"retentionSeconds": 86400}, key=ADMIN_KEY)
    assert changed["retentionSeconds"] == 86400 and changed["name"] == "Short"
    assert (await f.ok("GET", path, key=ADMIN_KEY))["retentionSeconds"] == 86400
    assert (await f.ok("PATCH", path, {}, key=ADMIN_KEY))["retentionSeconds"] == 86400
    reset = await f.ok("PATCH", path, {"retentionSeconds": None}, key=ADMIN_KEY)
    assert reset["retentionSeconds"] is None
    for bad in ({"retentionSeconds": 5}, {"retentionSeconds": "60"}, {"slug": "x"}):
        status, body = await f.call("PATCH", path, bad, key=ADMIN_KEY)
        assert_error(status, body, 400)
    status, body = await f.call("PATCH", f"/api/tenants/{f.slug}", {"retentionSeconds": 60})
    assert_error(status, body, 403)  # a tenant's own API key does not change it
    status, body = await f.call("PATCH", "/api/tenants/no-such", {}, key=ADMIN_KEY)
    assert_error(status, body, 404)


async def test_one_process_at_a_time_removes(postgres_url: str) -> None:
    """With several servers on one PostgreSQL, the one holding the `retention` lock does
    the work; another's pass gives way at once (SKIP LOCKED), removing nothing."""
    import asyncpg

    from flovyn_server.store.base import open_store

    store = await open_store(postgres_url)
    other = await asyncpg.connect(postgres_url)  # the process at work
    try:
        async with store.transaction() as tx:
            tenant_id = await tx.fetchval(
                "INSERT INTO tenants (id, name, slug, tier, created_at) "
                "VALUES ($1, 'T', 'ret-lock', 'FREE', $2) RETURNING id",
                "7d6c5b4a-3928-4716-8504-f3e2d1c0b9a8",
                now_ms(),
            )
            await create_execution(
                tx, tenant_id, execution_id="1a2b3c4d-5e6f-4a8b-9c0d-1e2f3a4b5c6d",
                kind="k", queue="default", input=None, now=now_ms() - 2 * HOUR_MS,
            )  # fmt: skip
            await tx.execute(
                "UPDATE workflow_executions SET status = 'CANCELLED', completed_at = $1",
                now_ms() - 2 * HOUR_MS,
            )
        async with other.transaction():
            await other.execute("SELECT name FROM maintenance_locks FOR UPDATE")
            assert await retention.prune(store, HOUR_MS, now_ms()) == 0
        assert await retention.prune(store, HOUR_MS, now_ms()) == 1
    finally:
        await other.close()
        await store.close()
