"""Workflow and task kinds as workers registered them; a kind outlives its workers."""

from __future__ import annotations

from collections import Counter

from flovyn_server.domain import not_found
from flovyn_server.engine import shapes
from flovyn_server.engine.tenants import Tenant
from flovyn_server.jsonio import loads
from flovyn_server.models.discovery import Definition, DefinitionList
from flovyn_server.store.base import Store, Tx

CATEGORY_COLUMN = {"workflow": "workflow_kinds", "task": "task_kinds"}


class Definitions:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def _online_counts(self, tx: Tx, tenant: Tenant, category: str) -> Counter[str]:
        rows = await tx.fetch(
            f"SELECT {CATEGORY_COLUMN[category]} AS kinds FROM workers "
            "WHERE tenant_id = $1 AND status = 'ONLINE'",
            tenant.id,
        )
        counts: Counter[str] = Counter()
        for row in rows:
            counts.update(set(loads(row["kinds"])))
        return counts

    async def list(self, tenant: Tenant, category: str) -> DefinitionList:
        async with self.store.read() as tx:
            rows = await tx.fetch(
                "SELECT * FROM definitions WHERE tenant_id = $1 AND category = $2 ORDER BY kind",
                tenant.id,
                category,
            )
            counts = await self._online_counts(tx, tenant, category)
        return {"definitions": [shapes.definition(r, category, counts[r["kind"]]) for r in rows]}

    async def get(self, tenant: Tenant, category: str, kind: str) -> Definition:
        table = "workflow_executions" if category == "workflow" else "task_executions"
        async with self.store.read() as tx:
            row = await tx.fetchrow(
                "SELECT * FROM definitions WHERE tenant_id = $1 AND category = $2 AND kind = $3",
                tenant.id,
                category,
                kind,
            )
            if row is None:
                raise not_found(f"{category} definition {kind!r}")
            counts = await self._online_counts(tx, tenant, category)
            by_status = await tx.fetch(
                f"SELECT status, count(*) AS n FROM {table} WHERE tenant_id = $1 AND kind = $2 "
                "GROUP BY status",
                tenant.id,
                kind,
            )
        shaped = shapes.definition(row, category, counts[kind])
        shaped["executionCounts"] = {r["status"]: int(r["n"]) for r in by_status}
        return shaped
