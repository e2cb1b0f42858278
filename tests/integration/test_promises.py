"""Durable promises: resolve (by name and by id), reject, time out, settle twice, tenants."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from flovyn_worker import PromiseRejected, PromiseTimeout, WorkflowContext, WorkflowFailed, workflow
from tests.integration.conftest import Flovyn, new_tenant
from tests.integration.helpers import (
    assert_gapless,
    event_types,
    execution,
    of_type,
    wait_event,
    wait_status,
)


@workflow(name="promise-await")
async def await_promise(ctx: WorkflowContext, name: str) -> Any:
    return await ctx.promise(name)


@workflow(name="promise-catch")
async def catch_promise(ctx: WorkflowContext, spec: dict[str, Any]) -> dict[str, Any]:
    try:
        value = await ctx.promise(spec["name"], timeout=spec.get("timeout"))
    except PromiseRejected as exc:
        return {"rejected": exc.error, "name": exc.promise_name}
    except PromiseTimeout as exc:
        return {"timedOut": exc.promise_name}
    return {"value": value}


async def _promise_created(f: Flovyn, workflow_id: str) -> dict[str, Any]:
    events = await wait_event(f, workflow_id, "PROMISE_CREATED")
    await wait_status(f, workflow_id, "WAITING")
    return of_type(events, "PROMISE_CREATED")[0]


async def test_resolve_after_two_seconds_by_name_and_by_id(flovyn: Flovyn) -> None:
    async with flovyn.worker([await_promise]), flovyn.client() as client:
        by_name = await client.start_workflow(await_promise, "approval")
        by_id = await client.start_workflow(await_promise, "approval")
        created_by_name = await _promise_created(flovyn, by_name.id)
        created_by_id = await _promise_created(flovyn, by_id.id)
        promise_id = created_by_id["data"]["promiseId"]
        assert created_by_name["data"]["promiseName"] == "approval"
        assert created_by_name["data"]["promiseId"] != promise_id
        await asyncio.sleep(2.0)
        # still waiting after two seconds
        assert (await execution(flovyn, by_name.id))["status"] == "WAITING"
        assert (await execution(flovyn, by_id.id))["status"] == "WAITING"

        answer = await client.resolve_promise(f"{by_name.id}:approval", {"ok": True, "n": 1})
        assert answer == {"promiseId": created_by_name["data"]["promiseId"], "resolved": True}
        answer = await client.resolve_promise(promise_id, ["by", "id"])
        assert answer == {"promiseId": promise_id, "resolved": True}

        assert await by_name.result(timeout=10) == {"ok": True, "n": 1}
        assert await by_id.result(timeout=10) == ["by", "id"]
    events = await flovyn.events(by_id.id)
    assert event_types(events) == [
        "WORKFLOW_STARTED",
        "PROMISE_CREATED",
        "PROMISE_RESOLVED",
        "WORKFLOW_COMPLETED",
    ]
    assert events[2]["data"]["promiseId"] == promise_id
    assert events[2]["data"]["promiseName"] == "approval"
    assert events[2]["data"]["value"] == ["by", "id"]
    assert_gapless(events)


async def test_rejected_promise_fails_the_workflow_with_the_message(flovyn: Flovyn) -> None:
    async with flovyn.worker([await_promise]), flovyn.client() as client:
        handle = await client.start_workflow(await_promise, "approval")
        await _promise_created(flovyn, handle.id)
        answer = await client.reject_promise(f"{handle.id}:approval", "manager said no")
        assert answer["resolved"] is True
        with pytest.raises(WorkflowFailed) as failed:
            await handle.result(timeout=10)
    assert "PromiseRejected" in str(failed.value.error)
    assert "manager said no" in str(failed.value.error)
    events = await flovyn.events(handle.id)
    assert event_types(events)[-2:] == ["PROMISE_REJECTED", "WORKFLOW_EXECUTION_FAILED"]
    assert events[-2]["data"]["error"] == "manager said no"


async def test_rejected_promise_can_be_caught(flovyn: Flovyn) -> None:
    async with flovyn.worker([catch_promise]), flovyn.client() as client:
        handle = await client.start_workflow(catch_promise, {"name": "approval"})
        await _promise_created(flovyn, handle.id)
        await client.reject_promise(f"{handle.id}:approval", "too expensive")
        assert await handle.result(timeout=10) == {
            "rejected": "too expensive",
            "name": "approval",
        }


async def test_promise_timeout_raises_promise_timeout(flovyn: Flovyn) -> None:
    async with flovyn.worker([catch_promise]), flovyn.client() as client:
        started = time.monotonic()
        handle = await client.start_workflow(catch_promise, {"name": "approval", "timeout": 2})
        assert await handle.result(timeout=15) == {"timedOut": "approval"}
        elapsed = time.monotonic() - started
    assert 2.0 <= elapsed <= 5.0, elapsed
    events = await flovyn.events(handle.id)
    assert event_types(events) == [
        "WORKFLOW_STARTED",
        "PROMISE_CREATED",
        "PROMISE_TIMEOUT",
        "WORKFLOW_COMPLETED",
    ]
    assert events[1]["data"]["timeoutMs"] == 2000
    assert events[2]["data"]["promiseId"] == events[1]["data"]["promiseId"]
    # settling a timed-out promise is refused politely
    status, answer = await flovyn.call(
        "POST", f"P/promises/{handle.id}:approval/resolve", {"value": 1}
    )
    assert status == 200
    assert answer["resolved"] is False and answer["alreadyResolved"] is True


async def test_second_resolve_reports_already_resolved(flovyn: Flovyn) -> None:
    async with flovyn.worker([await_promise]), flovyn.client() as client:
        handle = await client.start_workflow(await_promise, "approval")
        created = await _promise_created(flovyn, handle.id)
        promise_id = created["data"]["promiseId"]
        first = await client.resolve_promise(f"{handle.id}:approval", "first")
        assert first == {"promiseId": promise_id, "resolved": True}
        second = await client.resolve_promise(f"{handle.id}:approval", "second")
        assert second == {"promiseId": promise_id, "resolved": False, "alreadyResolved": True}
        third = await client.reject_promise(promise_id, "too late")
        assert third == {"promiseId": promise_id, "resolved": False, "alreadyResolved": True}
        assert await handle.result(timeout=10) == "first"
    events = await flovyn.events(handle.id)
    assert len(of_type(events, "PROMISE_RESOLVED")) == 1
    assert not of_type(events, "PROMISE_REJECTED")


async def test_promise_of_another_tenant_is_not_found(flovyn: Flovyn) -> None:
    other = Flovyn(flovyn.url, flovyn.session)
    other.slug, other.api_key, other.worker_token = await new_tenant(flovyn)
    async with flovyn.worker([await_promise]), flovyn.client() as client:
        handle = await client.start_workflow(await_promise, "approval")
        created = await _promise_created(flovyn, handle.id)
        promise_id = created["data"]["promiseId"]
        # the other tenant, on its own prefix with its own key, names this tenant's promise
        for identifier in (promise_id, f"{handle.id}:approval"):
            for action, body in (("resolve", {"value": 1}), ("reject", {"error": "x"})):
                status, answer = await other.call("POST", f"P/promises/{identifier}/{action}", body)
                assert status == 404, (identifier, action, status, answer)
                assert answer["code"]
        # untouched: the owner can still resolve it
        assert (await execution(flovyn, handle.id))["status"] == "WAITING"
        await client.resolve_promise(promise_id, "mine")
        assert await handle.result(timeout=10) == "mine"


@pytest.mark.parametrize("name", ["approve order/42", "a:b", "50% ünï"])
async def test_promise_names_with_reserved_characters(flovyn: Flovyn, name: str) -> None:
    async with flovyn.worker([await_promise]), flovyn.client() as client:
        handle = await client.start_workflow(await_promise, name)
        created = await _promise_created(flovyn, handle.id)
        answer = await client.resolve_promise(f"{handle.id}:{name}", {"for": name})
        assert answer == {"promiseId": created["data"]["promiseId"], "resolved": True}
        assert await handle.result(timeout=10) == {"for": name}


@workflow(name="promise-keyed")
async def keyed_promise(ctx: WorkflowContext, key: str) -> Any:
    return await ctx.promise("payment", idempotency_key=key)


async def test_a_keyed_promise_is_settled_by_its_key(flovyn: Flovyn) -> None:
    async with flovyn.worker([keyed_promise]), flovyn.client() as client:
        handle = await client.start_workflow(keyed_promise, "pay-77")
        await wait_event(flovyn, handle.id, "PROMISE_CREATED")
        first = await client.resolve_promise("key:pay-77", {"paid": True})
        assert first["resolved"] is True
        again = await client.resolve_promise("key:pay-77", {"paid": False})
        assert again == {
            "promiseId": first["promiseId"],
            "resolved": False,
            "alreadyResolved": True,
        }
        assert await handle.result(timeout=20) == {"paid": True}
    status, body = await flovyn.call("POST", "P/promises/key:no-such-key/resolve", {"value": 1})
    assert status == 404 and body["code"] == "NOT_FOUND"
