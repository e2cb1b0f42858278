"""The workflows `flovyn demo` runs: between them they show every kind of node the
dashboard draws.

- `order`: reserve stock, charge the card (which times out once or twice for two
  orders in three: retries, attempts and warnings in the logs), ship each item in
  parallel, then wait a short timer before confirming.
- `approval`: a promise a person resolves (`s` in the dashboard, or
  `flovyn promise resolve <id>:approval`), given up on after two minutes.
- `batch`: a parent that starts three child `order` workflows and sums them.
- `import`: ten `process-item` tasks with progress and logs; the file of the first
  import of every ten is "corrupt" until retried: the failure that `r` repairs.
"""

from __future__ import annotations

import asyncio
import zlib
from datetime import timedelta
from typing import Any

from flovyn_worker import RetryPolicy, TaskContext, WorkflowContext, task, workflow

_repaired: set[str] = set()  # imports retried once: this process remembers them


@task(name="reserve-stock")
async def reserve_stock(ctx: TaskContext, order: dict[str, Any]) -> dict[str, Any]:
    ctx.logger.info("reserving %d items for order %s", len(order["items"]), order["orderId"])
    await asyncio.sleep(0.2)
    return {"reserved": order["items"]}


@task(
    name="charge-card",
    retry_policy=RetryPolicy(
        max_attempts=4,
        initial_interval=timedelta(milliseconds=500),
        backoff_coefficient=2.0,
        max_interval=timedelta(seconds=3),
    ),
)
async def charge_card(ctx: TaskContext, order: dict[str, Any]) -> dict[str, Any]:
    ctx.logger.info("charging %s (attempt %d)", order["amount"], ctx.attempt)
    await asyncio.sleep(0.3)
    if ctx.attempt <= zlib.crc32(order["orderId"].encode()) % 3:
        ctx.logger.warning("card processor timed out")
        raise RuntimeError("card processor timed out")
    await ctx.report_progress(1.0, "charged")
    return {"chargeId": f"ch-{order['orderId']}", "amount": order["amount"]}


@task(name="ship-item")
async def ship_item(ctx: TaskContext, item: str) -> str:
    ctx.logger.info("shipping %s", item)
    await asyncio.sleep(0.4)
    return f"shipped:{item}"


@workflow(name="order")
async def order(ctx: WorkflowContext, data: dict[str, Any]) -> dict[str, Any]:
    await ctx.schedule(reserve_stock, data)
    charge = await ctx.schedule(charge_card, data)
    shipments = await asyncio.gather(*(ctx.schedule_async(ship_item, i) for i in data["items"]))
    await ctx.sleep(timedelta(seconds=1))  # the carrier confirms
    return {"orderId": data["orderId"], "charge": charge, "shipments": list(shipments)}


@workflow(name="approval")
async def approval(ctx: WorkflowContext, data: dict[str, Any]) -> dict[str, Any]:
    decision = await ctx.promise("approval", timeout=timedelta(minutes=2))
    return {"request": data.get("request"), "decision": decision}


@workflow(name="batch")
async def batch(ctx: WorkflowContext, data: dict[str, Any]) -> dict[str, Any]:
    orders: list[dict[str, Any]] = [
        {"orderId": f"{data['batchId']}-{n}", "amount": 10 * n, "items": ["book"]}
        for n in range(1, 4)
    ]
    results = await asyncio.gather(
        *(ctx.schedule_workflow(order, o, name=o["orderId"]) for o in orders)
    )
    return {"batchId": data["batchId"], "total": sum(r["charge"]["amount"] for r in results)}


@task(name="process-item", retry_policy=RetryPolicy(max_attempts=1))
async def process_item(ctx: TaskContext, item: dict[str, Any]) -> int:
    for step in range(1, 5):
        ctx.logger.debug("item %d: step %d", item["n"], step)
        await ctx.report_progress(step / 4, f"step {step} of 4")
        await asyncio.sleep(0.1)
    if item["corrupt"] and item["importId"] not in _repaired:
        _repaired.add(item["importId"])
        ctx.logger.error("item %d: checksum mismatch", item["n"])
        raise ValueError(f"item {item['n']} of {item['importId']}: checksum mismatch")
    ctx.logger.info("item %d imported", item["n"])
    return item["n"]


@workflow(name="import")
async def import_file(ctx: WorkflowContext, data: dict[str, Any]) -> dict[str, Any]:
    items = [
        {"n": n, "importId": data["importId"], "corrupt": data.get("corrupt", False) and n == 7}
        for n in range(10)
    ]
    done = await asyncio.gather(*(ctx.schedule_async(process_item, i) for i in items))
    return {"importId": data["importId"], "items": len(done)}


WORKFLOWS = [order, approval, batch, import_file]
TASKS = [reserve_stock, charge_card, ship_item, process_item]


def trigger_for(n: int) -> tuple[str, dict[str, Any]]:
    """The n-th trigger of the demo's trickle: mostly orders, now and then the rest."""
    if n % 10 == 3:
        return "batch", {"batchId": f"B-{n:04d}"}
    if n % 10 == 6:
        return "import", {"importId": f"I-{n:04d}", "corrupt": n % 20 == 6}
    if n % 10 == 9:
        return "approval", {"request": f"refund R-{n:04d}"}
    return "order", {"orderId": f"A-{n:04d}", "amount": 10 + n % 90, "items": ["book", "lamp"]}
