"""Bad requests answer 4xx with the JSON error shape and change nothing."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from flovyn_server.settings import Settings
from tests.integration.conftest import ADMIN_KEY, Flovyn, new_tenant, settings_for
from tests.integration.helpers import assert_error, execution, trigger

MAX_BODY = 4096


@pytest.fixture
def server_settings(database_url: str, tmp_path: Path) -> Settings:
    return settings_for(database_url, tmp_path, max_body_bytes=MAX_BODY)


async def _snapshot(f: Flovyn, ref: str) -> dict[str, Any]:
    """What a bad request must not change: the tenant's executions and one's history."""
    listed = await f.ok("GET", "P/workflow-executions", params={"limit": 1000})
    return {
        "executions": sorted((w["id"], w["status"], w["updatedAt"]) for w in listed["workflows"]),
        "total": listed["total"],
        "ref": await execution(f, ref),
        "events": await f.events(ref),
    }


@pytest.fixture
async def ref(flovyn: Flovyn) -> str:
    """One existing execution, so there is something a bad request could damage."""
    return await trigger(flovyn, "reference", {"input": {"keep": "me"}})


async def test_malformed_and_mistyped_bodies(flovyn: Flovyn, ref: str) -> None:
    before = await _snapshot(flovyn, ref)
    trigger_path = "P/workflows/reference/trigger"
    for raw in (b'{"input": ', b"not json", b"[1, 2]", b'"a string"', b"\xff\xfe"):
        status, body = await flovyn.call("POST", trigger_path, raw=raw)
        assert_error(status, body, 400)
    for bad in (
        {"queue": 5},
        {"queue": ""},
        {"prioritySeconds": "soon"},
        {"prioritySeconds": True},
        {"idempotencyKey": 12},
        {"idempotencyKey": "k", "idempotencyKeyTTL": "5x"},
        {"idempotencyKey": "k", "idempotencyKeyTTL": "31d"},
        {"metadata": {"a": 1}},
        {"metadata": ["a"]},
        {"version": 3},
    ):
        status, body = await flovyn.call("POST", trigger_path, bad)
        assert_error(status, body, 400)
    # The worker protocol checks its bodies just as well.
    for raw in (b"{", b"[]"):
        status, body = await flovyn.call(
            "POST", "P/worker/register", raw=raw, key=flovyn.worker_token
        )
        assert_error(status, body, 400)
    worker = await flovyn.ok(
        "POST", "P/worker/register", {"name": "w", "workflows": ["reference"]},
        key=flovyn.worker_token,
    )  # fmt: skip
    for bad in (
        {"workerId": worker["workerId"], "kinds": ["reference"], "maxItems": 0},
        {"workerId": worker["workerId"], "kinds": ["reference"], "timeoutMs": -1},
        {"workerId": worker["workerId"], "kinds": "reference"},
        {"kinds": ["reference"]},
    ):
        status, body = await flovyn.call(
            "POST", "P/worker/workflows/poll", bad, key=flovyn.worker_token
        )
        assert_error(status, body, 400)
    # A submit for an activation this worker does not hold is refused and applies nothing.
    status, body = await flovyn.call(
        "POST", f"P/worker/workflows/{ref}/submit",
        {"workerId": worker["workerId"], "activationId": 1, "status": "COMPLETED",
         "commands": [{"type": "COMPLETE_WORKFLOW", "output": 1}]},
        key=flovyn.worker_token,
    )  # fmt: skip
    assert_error(status, body, 409, "STALE_ACTIVATION")
    status, body = await flovyn.call(
        "POST", f"P/worker/workflows/{ref}/submit",
        {"workerId": worker["workerId"], "activationId": 1, "status": "DONE"},
        key=flovyn.worker_token,
    )  # fmt: skip
    assert_error(status, body, 400)
    assert await _snapshot(flovyn, ref) == before


async def test_body_over_the_limit_is_413(flovyn: Flovyn, ref: str) -> None:
    before = await _snapshot(flovyn, ref)
    big = b'{"input": "' + b"x" * MAX_BODY + b'"}'
    status, body = await flovyn.call("POST", "P/workflows/reference/trigger", raw=big)
    assert_error(status, body, 413)
    status, body = await flovyn.call("POST", "P/worker/register", raw=big, key=flovyn.worker_token)
    assert_error(status, body, 413)
    # Just under the limit is fine.
    fits = b'{"input": "' + b"x" * (MAX_BODY - 100) + b'"}'
    status, created = await flovyn.call("POST", "P/workflows/reference/trigger", raw=fits)
    assert status == 201, created
    after = await _snapshot(flovyn, ref)
    assert after["total"] == before["total"] + 1
    assert (after["ref"], after["events"]) == (before["ref"], before["events"])


async def test_bad_ids_in_paths(flovyn: Flovyn, ref: str) -> None:
    before = await _snapshot(flovyn, ref)
    for path in (
        "P/workflow-executions/not-a-uuid",
        "P/workflow-executions/not-a-uuid/events",
        "P/workflow-executions/1234/tasks",
        f"P/workflow-executions/{ref}/tasks/nope/attempts",
        f"P/workflow-executions/{ref}/tasks/nope/logs",
    ):
        status, body = await flovyn.call("GET", path)
        assert_error(status, body, 400)
    status, body = await flovyn.call(
        "POST", "P/worker/tasks/nope/complete", {"workerId": "w", "attempt": 1},
        key=flovyn.worker_token,
    )  # fmt: skip
    assert_error(status, body, 400)
    unknown = str(uuid.uuid4())
    for path in (
        f"P/workflow-executions/{unknown}",
        f"P/workflow-executions/{unknown}/events",
        f"P/workflow-executions/{ref}/tasks/{unknown}/attempts",
    ):
        status, body = await flovyn.call("GET", path)
        assert_error(status, body, 404)
    assert await _snapshot(flovyn, ref) == before


async def test_credentials_and_tenants(flovyn: Flovyn, ref: str) -> None:
    before = await _snapshot(flovyn, ref)
    other_slug, other_key, other_token = await new_tenant(flovyn)
    trigger_path = "P/workflows/reference/trigger"

    status, body = await flovyn.call("GET", "/api/tenants/no-such-tenant/workflow-executions",
                                     key=ADMIN_KEY)  # fmt: skip
    assert_error(status, body, 404)
    status, body = await flovyn.call("POST", "/api/tenants/no-such-tenant/workflows/x/trigger",
                                     {}, key=ADMIN_KEY)  # fmt: skip
    assert_error(status, body, 404)
    status, body = await flovyn.call("GET", "/api/tenants/no-such-tenant/workflow-executions")
    assert_error(status, body, 403)
    # Another tenant's key or token reaches nothing here, not even to see that ids exist.
    status, body = await flovyn.call("GET", f"P/workflow-executions/{ref}", key=other_key)
    assert_error(status, body, 403)
    status, body = await flovyn.call("POST", trigger_path, {}, key=other_key)
    assert_error(status, body, 403)
    status, body = await flovyn.call("POST", "P/worker/register", {"name": "w"}, key=other_token)
    assert_error(status, body, 403)
    # ...and our execution is not visible through the other tenant's path either.
    status, body = await flovyn.call(
        "GET", f"/api/tenants/{other_slug}/workflow-executions/{ref}", key=other_key
    )
    assert_error(status, body, 404)

    status, body = await flovyn.call("POST", trigger_path, {}, key="")
    assert_error(status, body, 401)
    status, body = await flovyn.call("GET", "P/workflow-executions", key="")
    assert_error(status, body, 401)
    for wrong in ("flovyn_sk_not-a-real-key", "fwt_not-a-real-token", "garbage"):
        status, body = await flovyn.call("POST", trigger_path, {}, key=wrong)
        assert_error(status, body, 401)
    url = f"{flovyn.url}/api/tenants/{flovyn.slug}/workflow-executions"
    for header in (f"Basic {flovyn.api_key}", "Bearer", "Bearer ", flovyn.api_key):
        async with flovyn.session.get(url, headers={"Authorization": header}) as resp:
            assert_error(resp.status, await resp.json(), 401)

    # Worker tokens only reach the worker protocol, API keys only the REST API.
    status, body = await flovyn.call("POST", trigger_path, {}, key=flovyn.worker_token)
    assert_error(status, body, 403)
    status, body = await flovyn.call("GET", "P/workflow-executions", key=flovyn.worker_token)
    assert_error(status, body, 403)
    status, body = await flovyn.call("POST", "P/worker/register", {"name": "w"})
    assert_error(status, body, 403)
    status, body = await flovyn.call(
        "POST", "P/worker/workflows/poll", {"workerId": "w", "kinds": ["x"]}
    )
    assert_error(status, body, 403)
    status, body = await flovyn.call("POST", "P/worker/register", {"name": "w"}, key=ADMIN_KEY)
    assert_error(status, body, 403)
    # Managing tenants is for the admin key only.
    for key in (flovyn.api_key, flovyn.worker_token):
        status, body = await flovyn.call(
            "POST", "/api/tenants", {"name": "x", "slug": "sneaky"}, key=key
        )
        assert_error(status, body, 403)
    status, body = await flovyn.call(
        "GET", f"/api/tenants/{other_slug}/workflow-executions", key=ADMIN_KEY
    )
    assert status == 200 and body["total"] == 0
    assert await _snapshot(flovyn, ref) == before


async def test_unknown_routes_and_methods(flovyn: Flovyn, ref: str) -> None:
    before = await _snapshot(flovyn, ref)
    for method, path in (
        ("GET", "/api/nope"),
        ("GET", "/nope"),
        ("GET", "P/nope"),
        ("POST", f"P/workflow-executions/{ref}/bogus"),
        ("GET", "P/worker/nope"),
    ):
        status, body = await flovyn.call(method, path)
        assert_error(status, body, 404)
    for method, path in (
        ("DELETE", "P/workflow-executions"),
        ("PUT", "P/workflows/reference/trigger"),
        ("GET", "P/workflows/reference/trigger"),
        ("DELETE", f"P/workflow-executions/{ref}/events"),
        ("GET", "P/worker/register"),
        ("DELETE", "/api/tenants"),
    ):
        status, body = await flovyn.call(method, path)
        assert_error(status, body, 405)
    assert await _snapshot(flovyn, ref) == before


async def test_bad_query_parameters(flovyn: Flovyn, ref: str) -> None:
    before = await _snapshot(flovyn, ref)
    listing = "P/workflow-executions"
    for params in (
        {"status": "DONE"},
        {"status": "COMPLETED,BOGUS"},
        {"limit": "0"},
        {"limit": "-1"},
        {"limit": "1001"},
        {"limit": "ten"},
        {"offset": "-1"},
        {"offset": "x"},
        {"createdAfter": "yesterday"},
    ):
        status, body = await flovyn.call("GET", listing, params=params)
        assert_error(status, body, 400)
    for params in ({"since_sequence": "abc"}, {"sinceSequence": "-1"}, {"limit": "0"}):
        status, body = await flovyn.call("GET", f"{listing}/{ref}/events", params=params)
        assert_error(status, body, 400)
    # Valid forms of the same parameters work.
    ok = await flovyn.ok("GET", listing, params={"status": "pending,RUNNING", "limit": "1000"})
    assert ok["total"] == before["total"]
    assert await _snapshot(flovyn, ref) == before
