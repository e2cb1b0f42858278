"""Decorators, definitions, the deterministic loop and small helpers."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import Any

import pytest
from pydantic import BaseModel

from flovyn_worker import RetryPolicy, TaskContext, UnsupportedInWorkflow, task, workflow
from flovyn_worker.decorators import task_definition, task_kind, workflow_definition, workflow_kind
from flovyn_worker.loop import DeterministicLoop
from flovyn_worker.task_context import LogBuffer, level_name


class Item(BaseModel):
    sku: str
    qty: int = 1


@task
async def reserve_stock(ctx: Any, item: Item) -> Item:
    """Reserve stock for an item.

    More text that is not part of the description.
    """
    return item


@task(
    name="ping",
    retry_policy=RetryPolicy(
        max_attempts=1, initial_interval=timedelta(milliseconds=250), max_interval=2
    ),
    timeout=timedelta(seconds=3),
    description="Ping!",
)
class Ping:
    async def run(self, ctx: Any) -> str:
        return "pong"


@workflow(version="2")
class OrderFlow:
    async def run(self, ctx: Any, input: dict[str, Any]) -> None:
        return None


def test_bare_task_uses_function_name_and_docstring() -> None:
    definition = task_definition(reserve_stock)
    assert definition is not None
    assert definition.kind == "reserve_stock"
    assert definition.description == "Reserve stock for an item."
    registration = definition.to_registration()
    assert registration["inputSchema"]["properties"]["sku"]["type"] == "string"
    assert registration["outputSchema"]["title"] == "Item"
    assert registration["timeoutMs"] is None
    assert registration["retryPolicy"]["maxAttempts"] == 3


async def test_decorated_objects_stay_callable() -> None:
    assert await reserve_stock(None, Item(sku="a")) == Item(sku="a")


async def test_class_task_with_options_and_no_input() -> None:
    definition = task_definition(Ping)
    assert definition is not None
    assert definition.handler.is_class and not definition.handler.takes_input
    assert definition.to_registration() == {
        "kind": "ping",
        "name": "ping",
        "description": "Ping!",
        "retryPolicy": {
            "maxAttempts": 1,
            "initialIntervalMs": 250,
            "backoffCoefficient": 2.0,
            "maxIntervalMs": 2000,
        },
        "timeoutMs": 3000,
        "inputSchema": None,
        "outputSchema": None,
    }
    assert await definition.handler.invoke(None, {"ignored": True}) == "pong"


async def test_pydantic_input_is_validated() -> None:
    definition = task_definition(reserve_stock)
    assert definition is not None
    result = await definition.handler.invoke(None, {"sku": "x", "qty": 2})
    assert result == Item(sku="x", qty=2)


def test_workflow_class_definition() -> None:
    definition = workflow_definition(OrderFlow)
    assert definition is not None
    assert definition.kind == "OrderFlow"
    registration = definition.to_registration()
    assert registration["version"] == "2" and registration["cancellable"] is True


def test_kind_resolution() -> None:
    assert task_kind("charge") == ("charge", None)
    assert task_kind(Ping)[0] == "ping"
    assert workflow_kind(OrderFlow)[0] == "OrderFlow"
    with pytest.raises(TypeError):
        task_kind(lambda ctx: None)
    with pytest.raises(TypeError):
        workflow_kind(Ping)


def test_retry_policy() -> None:
    policy = RetryPolicy(
        max_attempts=5,
        initial_interval=0.5,
        backoff_coefficient=3,
        max_interval=timedelta(minutes=1),
    )
    assert policy.max_retries == 4
    assert policy.to_wire() == {
        "initialIntervalMs": 500,
        "backoffCoefficient": 3,
        "maxIntervalMs": 60000,
    }
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)


def test_deterministic_loop_refuses_timers_with_a_hint() -> None:
    loop = DeterministicLoop()  # type: ignore[abstract]
    with pytest.raises(UnsupportedInWorkflow, match=r"ctx\.sleep"):
        loop.call_later(1, print)
    loop.close()


def test_deterministic_loop_runs_tasks_and_restores_no_running_loop() -> None:
    loop = DeterministicLoop()  # type: ignore[abstract]
    order: list[str] = []

    async def step(name: str) -> str:
        order.append(name)
        await asyncio.sleep(0)
        order.append(name + "!")
        return name

    t1 = loop.create_task(step("a"))
    t2 = loop.create_task(step("b"))
    loop.run_until_quiescent()
    assert order == ["a", "b", "a!", "b!"]
    assert (t1.result(), t2.result()) == ("a", "b")
    assert asyncio.events._get_running_loop() is None
    loop.close()


async def test_task_context_without_transport_is_usable_in_tests(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ctx = TaskContext(task_execution_id="t-1", kind="demo")
    assert await ctx.report_progress(0.3) is False
    assert await ctx.heartbeat() is False
    with caplog.at_level(logging.INFO, logger="flovyn_worker.task"):
        ctx.logger.info("visible in the app's logging")
    assert "visible in the app's logging" in caplog.text


def test_log_levels_and_buffer() -> None:
    assert [level_name(n) for n in (5, 10, 20, 30, 40, 50)] == [
        "DEBUG",
        "DEBUG",
        "INFO",
        "WARN",
        "ERROR",
        "ERROR",
    ]
    buffer = LogBuffer(max_entries=3)
    for i in range(4):
        buffer.add({"n": i})
    batch = buffer.take(2)
    assert batch == [{"n": 1}, {"n": 2}]  # the oldest line was dropped
    buffer.put_back(batch)
    assert buffer.take(10) == [{"n": 1}, {"n": 2}, {"n": 3}]
