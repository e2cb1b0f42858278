"""An example order workflow: reserve stock, charge the card (which fails now and then
and is retried), ship in parallel per item, and record each step in workflow state.

Run a worker for it:  python examples/orders.py --server http://127.0.0.1:8000 \
    --tenant demo --token fwt_...
"""

from __future__ import annotations

import argparse
import asyncio
import zlib
from datetime import timedelta

from flovyn_worker import RetryPolicy, TaskContext, Worker, WorkflowContext, task, workflow


@task(name="reserve-stock")
async def reserve_stock(ctx: TaskContext, order: dict) -> dict:
    ctx.logger.info("reserving %d items for order %s", len(order["items"]), order["orderId"])
    await asyncio.sleep(0.01)
    return {"reserved": order["items"]}


@task(
    name="charge-card",
    retry_policy=RetryPolicy(
        max_attempts=4,
        initial_interval=timedelta(milliseconds=100),
        backoff_coefficient=2.0,
        max_interval=timedelta(seconds=2),
    ),
)
async def charge_card(ctx: TaskContext, order: dict) -> dict:
    ctx.logger.info("charging %s (attempt %d)", order["amount"], ctx.attempt)
    # The card processor times out once or twice for two orders in three, so that the
    # retries show in the attempts and the logs; it never fails for good (a random
    # failure here used to fail about one order in a hundred).
    if ctx.attempt <= zlib.crc32(order["orderId"].encode()) % 3:
        ctx.logger.warning("card processor timed out")
        raise RuntimeError("card processor timed out")
    await ctx.report_progress(1.0, "charged")
    return {"chargeId": f"ch-{order['orderId']}", "amount": order["amount"]}


@task(name="ship-item")
async def ship_item(ctx: TaskContext, item: str) -> str:
    ctx.logger.info("shipping %s", item)
    await asyncio.sleep(0.01)
    return f"shipped:{item}"


@workflow(name="order")
async def order_workflow(ctx: WorkflowContext, order: dict) -> dict:
    await ctx.schedule(reserve_stock, order)
    ctx.set("stage", "reserved")
    charge = await ctx.schedule(charge_card, order)
    ctx.set("stage", "charged")
    shipments = await asyncio.gather(
        *(ctx.schedule_async(ship_item, item) for item in order["items"])
    )
    ctx.set("stage", "shipped")
    return {"orderId": order["orderId"], "charge": charge, "shipments": list(shipments)}


WORKFLOWS = [order_workflow]
TASKS = [reserve_stock, charge_card, ship_item]


def make_worker(server: str, tenant: str, token: str) -> Worker:
    return Worker(
        server, tenant=tenant, token=token, workflows=WORKFLOWS, tasks=TASKS, name="orders-example"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description="Run the example order worker.")
    parser.add_argument("--server", default="http://127.0.0.1:8000")
    parser.add_argument("--tenant", required=True)
    parser.add_argument("--token", required=True, help="a worker token (fwt_...)")
    args = parser.parse_args()
    print(f"orders-example worker for tenant {args.tenant} at {args.server} (Ctrl-C stops it)")
    try:
        asyncio.run(make_worker(args.server, args.tenant, args.token).run())
    except KeyboardInterrupt:
        print("stopped")


if __name__ == "__main__":
    main()
