"""The benchmark's REST calls: health, tenant set-up, triggering, waiting for completion."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import aiohttp

from .processes import Child

HEALTH_PATH = "/_/health"
POLL_INTERVAL_S = 0.2


class Api:
    def __init__(self, http: aiohttp.ClientSession, base: str) -> None:
        self.http = http
        self.base = base

    async def call(
        self,
        method: str,
        path: str,
        key: str | None,
        body: Any = None,
        params: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        async with self.http.request(
            method, self.base + path, json=body, params=params, headers=headers
        ) as response:
            data = await response.json(content_type=None) if response.content_length != 0 else None
            return response.status, data

    async def ok(self, method: str, path: str, key: str | None, body: Any = None) -> Any:
        status, data = await self.call(method, path, key, body)
        if status >= 300:
            raise RuntimeError(f"{method} {path} answered {status}: {data}")
        return data


@dataclass
class Tenant:
    """The benchmark's tenant, called with its API key."""

    api: Api
    slug: str
    key: str

    async def call(
        self, method: str, path: str, body: Any = None, params: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        return await self.api.call(
            method, f"/api/tenants/{self.slug}{path}", self.key, body, params
        )


async def wait_healthy(api: Api, server: Child, within: float) -> None:
    deadline = time.monotonic() + within
    while True:
        if server.proc.poll() is not None:
            raise RuntimeError(f"server exited with {server.proc.returncode}:\n{server.log_tail()}")
        with contextlib.suppress(aiohttp.ClientError, OSError):
            status, _ = await api.call("GET", HEALTH_PATH, None)
            if status == 200:
                return
        if time.monotonic() > deadline:
            raise TimeoutError(f"server not healthy after {within}s:\n{server.log_tail()}")
        await asyncio.sleep(0.05)


async def create_tenant(api: Api, admin_key: str) -> tuple[Tenant, str]:
    """A fresh tenant with an API key and a worker token; (tenant, worker token)."""
    slug = "bench-" + secrets.token_hex(4)
    await api.ok("POST", "/api/tenants", admin_key, {"name": "Benchmark", "slug": slug})
    made = await api.ok(
        "POST", f"/api/tenants/{slug}/api-keys", admin_key, {"displayName": "bench"}
    )
    api_key = str(made["key"])
    made = await api.ok(
        "POST", f"/api/tenants/{slug}/worker-tokens", admin_key, {"displayName": "bench"}
    )
    return Tenant(api, slug, api_key), str(made["token"])


async def listed_workers(tenant: Tenant) -> int | None:
    """How many workers GET /workers lists, None when the server has no such route."""
    status, data = await tenant.call("GET", "/workers")
    if status != 200 or not isinstance(data, dict):
        return None
    items = data.get("workers")
    return len(items) if isinstance(items, list) else None


async def list_executions(tenant: Tenant, params: dict[str, str]) -> dict[str, Any]:
    """One page of GET .../workflow-executions: {"workflows": [...], "total": n}."""
    code, data = await tenant.call("GET", "/workflow-executions", params=params)
    if code != 200:
        raise RuntimeError(f"listing executions {params} answered {code}: {data}")
    return dict(data)


OPEN = "PENDING,RUNNING,WAITING,CANCELLING"


async def count(tenant: Tenant, status: str) -> int:
    """Executions with this status (or these, comma-separated), exactly: the list's
    `total` is an estimate past 1,000, and then this walks the list by its cursor."""
    data = await list_executions(tenant, {"status": status, "limit": "1"})
    if not data.get("totalIsEstimate"):
        return int(data["total"])
    n, params = 0, {"status": status, "limit": "1000"}
    while True:
        data = await list_executions(tenant, params)
        n += len(data["workflows"])
        if not data.get("nextCursor"):
            return n
        params["cursor"] = data["nextCursor"]


async def rough_count(tenant: Tenant, status: str) -> int:
    """The list's `total`: exact up to 1,000, an estimate (always above) past that."""
    data = await list_executions(tenant, {"status": status, "limit": "1"})
    return int(data["total"])


@dataclass
class TriggerResult:
    ids: list[str]
    errors: Counter[str]
    seconds: float


async def trigger_many(
    tenant: Tenant, n: int, concurrency: int, rate: float = 0.0
) -> TriggerResult:
    """POST n triggers with up to `concurrency` requests in flight, at most `rate` per
    second when `rate` > 0 (paced, open loop); ids in completion order."""
    ids: list[str] = []
    errors: Counter[str] = Counter()
    counter = iter(range(n))
    loop = asyncio.get_running_loop()
    t0 = loop.time()

    async def sender() -> None:
        for i in counter:
            if rate > 0:
                delay = t0 + i / rate - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
            try:
                status, data = await tenant.call(
                    "POST", "/workflows/bench/trigger", {"input": {"n": i}}
                )
            except (aiohttp.ClientError, OSError) as exc:
                errors[type(exc).__name__] += 1
                continue
            if status in (200, 201) and isinstance(data, dict):
                ids.append(str(data["workflowExecutionId"]))
            else:
                errors[f"HTTP {status}"] += 1

    start = time.perf_counter()
    await asyncio.gather(*(sender() for _ in range(max(1, min(concurrency, n)))))
    return TriggerResult(ids, errors, time.perf_counter() - start)


async def wait_completed(
    tenant: Tenant, target: int, within: float, quiet: bool
) -> tuple[bool, int, int]:
    """Poll until `target` executions are COMPLETED; (done, completed, failed)."""
    started = time.monotonic()
    deadline = started + within
    last_print = started
    failed = 0
    polls = 0
    while True:
        # Waiting on the open ones: their count is exact while it is small (and 0 at the
        # end), where a count of COMPLETED past 1,000 is an estimate.
        still_open = await rough_count(tenant, OPEN)
        if still_open == 0:
            completed = await count(tenant, "COMPLETED")
            failed = await count(tenant, "FAILED")
            if completed >= target or failed:
                return completed >= target and not failed, completed, failed
        polls += 1
        if polls % 5 == 0:
            failed = await rough_count(tenant, "FAILED")
            if failed:
                return False, await count(tenant, "COMPLETED"), failed
        now = time.monotonic()
        if now > deadline:
            return False, await count(tenant, "COMPLETED"), failed
        if not quiet and now - last_print >= 2.0:
            print(f"    ... {still_open} still open after {now - started:.1f}s", flush=True)
            last_print = now
        await asyncio.sleep(POLL_INTERVAL_S)
