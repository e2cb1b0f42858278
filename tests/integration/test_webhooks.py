"""Webhooks on both stores: deliveries signed as each provider signs them start a
workflow, a standalone task or resolve a promise; a forged one is refused with nothing
stored; a duplicate starts nothing; an unrouted one is recorded; secrets never leave."""

from __future__ import annotations

import hashlib
import hmac
import time
import uuid
from typing import Any

import pytest

from flovyn_server.jsonio import dumps_bytes
from flovyn_worker import WorkflowContext, workflow
from tests.integration.conftest import Flovyn
from tests.integration.helpers import assert_error, trigger, wait_status

SECRET = "a-long-shared-secret"


@workflow(name="hook-waits")
async def waits(ctx: WorkflowContext, _: Any) -> Any:
    return await ctx.promise("approval")


def sign(message: bytes) -> str:
    return hmac.new(SECRET.encode(), message, hashlib.sha256).hexdigest()


async def make(f: Flovyn, slug: str, provider: str, routes: list[dict[str, Any]]) -> dict[str, Any]:
    body = {
        "name": f"{provider} hook",
        "slug": slug,
        "provider": provider,
        "verification": {"type": "hmac", "secret": SECRET},
        "routes": routes,
    }
    made: dict[str, Any] = await f.ok("POST", "P/webhooks", body)
    return made


async def deliver(
    f: Flovyn, hook: dict[str, Any], body: bytes, headers: dict[str, str]
) -> tuple[int, Any]:
    return await f.call("POST", hook["url"], raw=body, key="", headers=headers)


async def events(f: Flovyn, hook: dict[str, Any]) -> list[dict[str, Any]]:
    return list((await f.ok("GET", f"P/webhooks/{hook['id']}/events"))["events"])


async def test_github_push_starts_a_workflow_once(flovyn: Flovyn) -> None:
    f = flovyn
    hook = await make(f, "github", "github", [
        {"eventTypeFilter": "push", "target": {"type": "workflow", "workflowKind": "build"}},
    ])  # fmt: skip
    assert hook["url"] == f"/api/hooks/{f.slug}/github"
    assert "secret" not in str(hook) and "secret" not in str(await f.ok("GET", "P/webhooks"))
    body = dumps_bytes({"ref": "refs/heads/main", "after": "abc123"})
    headers = {
        "X-Hub-Signature-256": "sha256=" + sign(body),
        "X-GitHub-Event": "push",
        "X-GitHub-Delivery": "delivery-1",
        "Content-Type": "application/json",
    }
    status, answer = await deliver(f, hook, body, headers)
    assert status == 202, answer
    (event,) = await events(f, hook)
    assert event["id"] == answer["eventId"] and event["status"] == "delivered"
    assert event["eventType"] == "push" and event["idempotencyKey"] == "delivery-1"
    (target,) = event["targets"]
    wf = await f.ok("GET", f"P/workflow-executions/{target['id']}")
    assert wf["kind"] == "build"
    assert wf["input"]["eventType"] == "push" and wf["input"]["payload"]["after"] == "abc123"
    assert wf["input"]["headers"]["X-GitHub-Delivery"] == "delivery-1"
    # The same delivery again: 200, recorded as a duplicate, nothing new started.
    status, again = await deliver(f, hook, body, headers)
    assert status == 200 and again["duplicate"] is True
    assert [e["status"] for e in await events(f, hook)] == ["duplicate", "delivered"]
    listed = await f.ok("GET", "P/workflow-executions", params={"kind": "build"})
    assert listed["total"] == 1
    # Forged, unsigned, or for another event type.
    for bad in (
        {**headers, "X-Hub-Signature-256": "sha256=" + "0" * 64},
        {"X-GitHub-Event": "push"},
    ):
        status, refused = await deliver(f, hook, body, bad | {"X-GitHub-Delivery": "d-2"})
        assert_error(status, refused, 401)
    assert len(await events(f, hook)) == 2  # nothing stored for those
    other = {**headers, "X-GitHub-Event": "issues", "X-GitHub-Delivery": "delivery-3"}
    status, _ = await deliver(f, hook, body, other)
    assert status == 202
    assert (await events(f, hook))[0]["status"] == "unrouted"


async def test_stripe_starts_a_task_and_slack_resolves_a_promise(flovyn: Flovyn) -> None:
    f = flovyn
    stripe = await make(f, "stripe", "stripe", [
        {"eventTypeFilter": "invoice.*", "target": {"type": "task", "taskKind": "send-receipt"}},
    ])  # fmt: skip
    body = dumps_bytes({"id": "evt_42", "type": "invoice.paid", "data": {"object": {"id": "in_1"}}})
    now = int(time.time())
    signed = {"Stripe-Signature": f"t={now},v1={sign(f'{now}.'.encode() + body)}"}
    status, answer = await deliver(f, stripe, body, signed)
    assert status == 202, answer
    (event,) = await events(f, stripe)
    assert event["idempotencyKey"] == "evt_42"  # the provider's event id
    task = await f.ok("GET", f"P/tasks/{event['targets'][0]['id']}")
    assert task["kind"] == "send-receipt" and task["input"]["payload"]["id"] == "evt_42"
    stale = {"Stripe-Signature": f"t={now - 600},v1={sign(f'{now - 600}.'.encode() + body)}"}
    status, refused = await deliver(f, stripe, body, stale)
    assert_error(status, refused, 401)
    assert "five minutes" in refused["error"]

    slack = await make(f, "slack", "slack", [
        {"eventTypeFilter": "block_actions", "idempotencyKeyPath": "action_ts",
         "target": {"type": "promise", "promiseNamePath": "promise", "workflowIdPath": "workflow"}},
    ])  # fmt: skip
    async with f.worker([waits]):
        wf_id = await trigger(f, "hook-waits")
        await wait_status(f, wf_id, "WAITING")
        payload = {
            "type": "block_actions",
            "workflow": wf_id,
            "promise": "approval",
            "action_ts": "1.2",
        }
        body = dumps_bytes(payload)
        headers = {
            "X-Slack-Request-Timestamp": str(now),
            "X-Slack-Signature": "v0=" + sign(f"v0:{now}:".encode() + body),
        }
        status, answer = await deliver(f, slack, body, headers)
        assert status == 202, answer
        done = await wait_status(f, wf_id, "COMPLETED")
        assert done["output"] == payload
        (event,) = await events(f, slack)
        assert event["status"] == "delivered" and event["targets"][0]["type"] == "promise"
        # A promise that does not exist: the event says it failed.
        payload = {
            "type": "block_actions",
            "workflow": str(uuid.uuid4()),
            "promise": "x",
            "action_ts": "9",
        }
        body = dumps_bytes(payload)
        headers["X-Slack-Signature"] = "v0=" + sign(f"v0:{now}:".encode() + body)
        status, _ = await deliver(f, slack, body, headers)
        assert status == 202
        latest = (await events(f, slack))[0]
        assert latest["status"] == "failed" and "not found" in latest["error"]


async def test_shopify_and_generic_hmac(flovyn: Flovyn) -> None:
    import base64

    f = flovyn
    shopify = await make(f, "shop", "shopify", [
        {"eventTypeFilter": "orders/*", "target": {"type": "workflow", "workflowKind": "fulfil"}},
    ])  # fmt: skip
    body = b'{"id": 7}'
    digest = hmac.new(SECRET.encode(), body, hashlib.sha256).digest()
    headers = {
        "X-Shopify-Hmac-Sha256": base64.b64encode(digest).decode(),
        "X-Shopify-Topic": "orders/create",
    }
    status, _ = await deliver(f, shopify, body, headers)
    assert status == 202
    generic_body = {
        "name": "custom", "slug": "custom", "provider": "generic",
        "verification": {"type": "hmac", "secret": SECRET, "headerName": "X-Sig",
                         "algorithm": "sha512", "prefix": "v1,"},
        "routes": [{"eventTypeFilter": "*", "target": {"type": "workflow", "workflowKind": "anything"}}],
    }  # fmt: skip
    generic = await f.ok("POST", "P/webhooks", generic_body)
    signature = "v1," + hmac.new(SECRET.encode(), body, hashlib.sha512).hexdigest()
    status, _ = await deliver(f, generic, body, {"X-Sig": signature})
    assert status == 202
    status, refused = await deliver(f, generic, body, {"X-Sig": signature[:-1] + "0"})
    assert_error(status, refused, 401)
    # Disabled: as if it did not exist.
    await f.ok("PUT", f"P/webhooks/{generic['id']}", {**generic_body, "enabled": False})
    status, missing = await deliver(f, generic, body, {"X-Sig": signature})
    assert_error(status, missing, 404)
    status, _ = await f.call("DELETE", f"P/webhooks/{generic['id']}")
    assert status == 204


@pytest.mark.parametrize(
    "change",
    [
        {"slug": "Not A Slug"},
        {"name": ""},
        {"provider": "bitbucket"},
        {"verification": {"type": "hmac"}},
        {"verification": {"type": "hmac", "secret": "short"}},
        {"verification": {"type": "hmac", "secret": SECRET, "algorithm": "md5"}},
        {"routes": [{"eventTypeFilter": "*", "target": {"type": "workflow"}}]},
        {"routes": [{"eventTypeFilter": "", "target": {"type": "task", "taskKind": "k"}}]},
        {"routes": [{"eventTypeFilter": "*", "target": {"type": "email"}}]},
    ],
)
async def test_bad_definitions_are_refused(flovyn: Flovyn, change: dict[str, Any]) -> None:
    body = {"name": "n", "slug": "bad-hook", "verification": {"type": "none"}} | change
    status, answer = await flovyn.call("POST", "P/webhooks", body)
    assert_error(status, answer, 400)
    assert (await flovyn.ok("GET", "P/webhooks"))["webhooks"] == []


async def test_slug_taken_and_body_limit(flovyn: Flovyn) -> None:
    f = flovyn
    hook = await make(f, "limits", "generic", [])
    status, answer = await f.call("POST", "P/webhooks", {"name": "again", "slug": "limits",
                                                         "verification": {"type": "none"}})  # fmt: skip
    assert_error(status, answer, 409)
    status, answer = await deliver(f, hook, b"x" * (1024 * 1024 + 1), {"X-Signature": "0"})
    assert status == 413
    assert await events(f, hook) == []
