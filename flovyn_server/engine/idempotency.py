"""Idempotency keys with a TTL, shared by trigger, standalone task create and promises."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from flovyn_server.store.base import Tx


async def claim_key(
    tx: Tx,
    tenant_id: str,
    scope: str,
    key: str,
    *,
    target_id: str,
    ttl_ms: int,
    now: int,
    reusable: Callable[[str], Awaitable[bool]],
) -> str | None:
    """Bind `key` to `target_id`, or return the id it is already bound to.

    A key is free again once it expired or `reusable(old_target)` says so (a workflow
    whose execution failed may be triggered again with the same key).
    """
    row = await tx.fetchrow(
        "SELECT target_id, expires_at FROM idempotency_keys "
        "WHERE tenant_id = $1 AND scope = $2 AND key = $3 FOR UPDATE",
        tenant_id,
        scope,
        key,
    )
    if row is None:
        inserted = await tx.execute(
            "INSERT INTO idempotency_keys (tenant_id, scope, key, target_id, expires_at) "
            "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (tenant_id, scope, key) DO NOTHING",
            tenant_id,
            scope,
            key,
            target_id,
            now + ttl_ms,
        )
        if inserted:
            return None
        # Another transaction bound it between our read and insert: that one wins.
        return str(
            await tx.fetchval(
                "SELECT target_id FROM idempotency_keys "
                "WHERE tenant_id = $1 AND scope = $2 AND key = $3",
                tenant_id,
                scope,
                key,
            )
        )
    if row["expires_at"] > now and not await reusable(row["target_id"]):
        return str(row["target_id"])
    await tx.execute(
        "UPDATE idempotency_keys SET target_id = $4, expires_at = $5 "
        "WHERE tenant_id = $1 AND scope = $2 AND key = $3",
        tenant_id,
        scope,
        key,
        target_id,
        now + ttl_ms,
    )
    return None
