"""Signals arrive in order, signal-with-start reuses the execution, and workflow state."""

from __future__ import annotations

import asyncio
from typing import Any

from flovyn_worker import WorkflowContext, workflow
from tests.integration.conftest import Flovyn
from tests.integration.helpers import (
    assert_gapless,
    event_types,
    of_type,
    wait_event,
    wait_status,
)


@workflow(name="signals-three")
async def three_signals(ctx: WorkflowContext) -> list[Any]:
    return [await ctx.wait_for_signal("step") for _ in range(3)]


async def test_three_signals_arrive_in_order(flovyn: Flovyn) -> None:
    async with flovyn.worker([three_signals]), flovyn.client() as client:
        handle = await client.start_workflow(three_signals)
        await wait_status(flovyn, handle.id, "WAITING")
        sequences = []
        # one while it waits, then two back to back (they may land while it runs)
        sequences.append((await handle.signal("step", {"n": 1}))["signalEventSequence"])
        sequences.append((await handle.signal("step", {"n": 2}))["signalEventSequence"])
        sequences.append((await handle.signal("step", {"n": 3}))["signalEventSequence"])
        assert await handle.result(timeout=10) == [{"n": 1}, {"n": 2}, {"n": 3}]
    assert sequences == sorted(sequences) and len(set(sequences)) == 3
    events = await flovyn.events(handle.id)
    signals = of_type(events, "SIGNAL_RECEIVED")
    assert [e["sequence"] for e in signals] == sequences
    assert [e["data"] for e in signals] == [
        {"signalName": "step", "signalValue": {"n": i}} for i in (1, 2, 3)
    ]
    assert event_types(events)[-1] == "WORKFLOW_COMPLETED"
    assert_gapless(events)


async def test_signals_sent_before_the_first_activation_queue_up(flovyn: Flovyn) -> None:
    async with flovyn.client() as client:
        handle = await client.start_workflow(three_signals)
        for n in (1, 2, 3):
            await handle.signal("step", n)
        await handle.signal("other", "ignored")
        async with flovyn.worker([three_signals]):
            assert await handle.result(timeout=10) == [1, 2, 3]


@workflow(name="signals-collect")
async def collect_two(ctx: WorkflowContext, start: dict[str, Any]) -> dict[str, Any]:
    first = await ctx.wait_for_signal("add")
    second = await ctx.wait_for_signal("add")
    return {"start": start, "added": [first, second]}


async def test_signal_with_start_creates_once_and_reuses(flovyn: Flovyn) -> None:
    async with flovyn.worker([collect_two]), flovyn.client() as client:
        first = await client.signal_with_start(
            collect_two,
            {"by": "first"},
            idempotency_key="order-42",
            signal_name="add",
            signal_value=1,
        )
        assert first.created is True
        await wait_event(flovyn, first.id, "SIGNAL_RECEIVED")
        second = await client.signal_with_start(
            collect_two,
            {"by": "second"},
            idempotency_key="order-42",
            signal_name="add",
            signal_value=2,
        )
        assert second.created is False
        assert second.id == first.id
        assert await first.result(timeout=10) == {"start": {"by": "first"}, "added": [1, 2]}
    listed = await flovyn.ok("GET", "P/workflow-executions", params={"kind": "signals-collect"})
    assert listed["total"] == 1
    assert [w["id"] for w in listed["workflows"]] == [first.id]
    events = await flovyn.events(first.id)
    assert len(of_type(events, "WORKFLOW_STARTED")) == 1
    assert [e["data"]["signalValue"] for e in of_type(events, "SIGNAL_RECEIVED")] == [1, 2]


async def test_signal_to_a_finished_execution_is_refused(flovyn: Flovyn) -> None:
    async with flovyn.worker([three_signals]), flovyn.client() as client:
        handle = await client.start_workflow(three_signals)
        for n in (1, 2, 3):
            await handle.signal("step", n)
        await handle.result(timeout=10)
    status, answer = await flovyn.call(
        "POST", f"P/workflow-executions/{handle.id}/signal", {"signalName": "step", "value": 4}
    )
    assert status == 409, answer


# -- workflow state ----------------------------------------------------------------------


@workflow(name="signals-state")
async def stateful(ctx: WorkflowContext) -> dict[str, Any]:
    ctx.set("stage", "started")
    ctx.set("scratch", {"tmp": True})
    ctx.set("items", [1, 2])
    ctx.clear("scratch")
    await ctx.wait_for_signal("continue")
    ctx.set("stage", "done")
    ctx.set("total", 3)
    ctx.clear("items")
    return {"keys": ctx.state_keys(), "stage": ctx.get("stage")}


async def test_state_shows_what_was_set_and_not_what_was_cleared(flovyn: Flovyn) -> None:
    async with flovyn.worker([stateful]), flovyn.client() as client:
        handle = await client.start_workflow(stateful)
        await wait_status(flovyn, handle.id, "WAITING")
        state = await flovyn.ok("GET", f"P/workflow-executions/{handle.id}/state")
        assert state == {"state": {"stage": "started", "items": [1, 2]}}
        await handle.signal("continue")
        assert await handle.result(timeout=10) == {"keys": ["stage", "total"], "stage": "done"}
    state = await flovyn.ok("GET", f"P/workflow-executions/{handle.id}/state")
    assert state == {"state": {"stage": "done", "total": 3}}
    events = await flovyn.events(handle.id)
    assert [(e["eventType"], e["data"]["key"]) for e in events if "key" in e["data"]] == [
        ("STATE_SET", "stage"),
        ("STATE_SET", "scratch"),
        ("STATE_SET", "items"),
        ("STATE_CLEARED", "scratch"),
        ("STATE_SET", "stage"),
        ("STATE_SET", "total"),
        ("STATE_CLEARED", "items"),
    ]


@workflow(name="signals-collect-n")
async def collect_n(ctx: WorkflowContext, n: int) -> list[Any]:
    return [await ctx.wait_for_signal("add") for _ in range(n)]


async def test_concurrent_signal_with_start_creates_one_execution(flovyn: Flovyn) -> None:
    callers = 5
    async with flovyn.worker([collect_n]), flovyn.client() as client:
        handles = await asyncio.gather(
            *(
                client.signal_with_start(
                    collect_n,
                    callers,
                    idempotency_key="burst",
                    signal_name="add",
                    signal_value=i,
                )
                for i in range(callers)
            )
        )
        assert len({h.id for h in handles}) == 1
        assert sum(1 for h in handles if h.created) == 1
        assert sorted(await handles[0].result(timeout=10)) == list(range(callers))
    listed = await flovyn.ok("GET", "P/workflow-executions", params={"kind": "signals-collect-n"})
    assert listed["total"] == 1


@workflow(name="signals-or-timeout")
async def signal_or_timeout(ctx: WorkflowContext, seconds: float) -> list[Any]:
    """Wait for "pick" at most `seconds`; a late signal is taken by the next wait."""
    outcomes: list[Any] = []
    for _ in range(2):
        waiter = ctx.wait_for_signal_async("pick")
        timer = ctx.sleep_async(seconds)
        done, _ = await asyncio.wait([waiter, timer], return_when=asyncio.FIRST_COMPLETED)
        if waiter in done:
            timer.cancel()
            outcomes.append(waiter.result())
        else:
            waiter.cancel()  # stop waiting without consuming a signal
            outcomes.append("timeout")
    outcomes.append(await ctx.wait_for_signal("pick"))
    return outcomes


async def test_signal_raced_against_a_timer(flovyn: Flovyn) -> None:
    async with flovyn.worker([signal_or_timeout]), flovyn.client() as client:
        handle = await client.start_workflow(signal_or_timeout, 0.3)
        # the first round times out; the second gets a signal; the third wait takes the last
        await wait_event(flovyn, handle.id, "TIMER_FIRED")
        await wait_event(flovyn, handle.id, "TIMER_STARTED", count=2)
        await handle.signal("pick", "first")
        await handle.signal("pick", "second")
        assert await handle.result(timeout=10) == ["timeout", "first", "second"]
    events = await flovyn.events(handle.id)
    assert_gapless(events)
    types = event_types(events)
    assert types.count("TIMER_FIRED") == 1
    assert types.count("TIMER_CANCELLED") == 1


@workflow(name="signals-one")
async def take_one(ctx: WorkflowContext, _: Any) -> Any:
    return await ctx.wait_for_signal("go")


async def test_signal_with_start_starts_anew_once_the_keyed_one_ended(flovyn: Flovyn) -> None:
    async with flovyn.worker([take_one]), flovyn.client() as client:
        first = await client.signal_with_start(
            take_one, None, idempotency_key="order-9", signal_name="go", signal_value=1
        )
        assert first.created and await first.result(timeout=20) == 1
        second = await client.signal_with_start(
            take_one, None, idempotency_key="order-9", signal_name="go", signal_value=2
        )
        assert second.created and second.id != first.id
        assert await second.result(timeout=20) == 2
    # A plain trigger with the key still answers the latest execution, not a new one.
    status, body = await flovyn.call(
        "POST", "P/workflows/signals-one/trigger", {"idempotencyKey": "order-9"}
    )
    assert status == 200 and body["workflowExecutionId"] == second.id
    status, body = await flovyn.call(
        "POST", "P/workflows/signals-one/trigger", {"signal": {"signalName": "go"}}
    )
    assert status == 400 and "idempotencyKey" in body["error"]
