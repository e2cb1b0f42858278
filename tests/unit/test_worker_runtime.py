"""Worker and Client against a scripted in-process fake of the server's HTTP API."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from flovyn_worker import (
    Client,
    FlovynApiError,
    TaskContext,
    Worker,
    WorkflowCancelled,
    WorkflowContext,
    WorkflowFailed,
    task,
    workflow,
)

PREFIX = "/api/tenants/acme"
EID = "5a4c1c39-1b53-4b8e-8d0c-6c3f1f3e9a01"

Handler = Callable[[dict[str, Any]], Any]


_OPERATION_PATHS = {
    "submit": "/worker/workflows/{}/submit",
    "complete": "/worker/tasks/{}/complete",
    "fail": "/worker/tasks/{}/fail",
}


async def unbatch(body: Any, answer: Callable[[str, Any], Awaitable[web.Response]]) -> web.Response:
    """`POST /worker/batch` as the server answers it: each operation as if posted alone."""
    results = []
    for op in body["operations"]:
        response = await answer(_OPERATION_PATHS[op["type"]].format(op["id"]), op["body"])
        assert isinstance(response.body, bytes)
        results.append({"status": response.status, "body": json.loads(response.body)})
    return web.json_response({"results": results})


class FakeServer:
    """Records every request; answers from per-route handlers and work queues."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, Any]] = []
        self.auth: list[str | None] = []
        self.queries: list[dict[str, str]] = []
        self.tasks: list[dict[str, Any]] = []
        self.activations: list[dict[str, Any]] = []
        self.routes: dict[tuple[str, str], Handler] = {}
        self.task_cancelled = False
        self.poll_failures = 0
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self.server = TestServer(app)

    @property
    def url(self) -> str:
        return str(self.server.make_url("")).rstrip("/")

    def posts(self, suffix: str) -> list[Any]:
        return [
            body
            for method, path, body in self.requests
            if method == "POST" and path.endswith(suffix)
        ]

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.json() if request.can_read_body else None
        path = request.path.removeprefix(PREFIX)
        self.auth.append(request.headers.get("Authorization"))
        self.queries.append(dict(request.query))
        if path == "/worker/batch":
            return await unbatch(body, lambda p, b: self._answer(request.method, p, b))
        return await self._answer(request.method, path, body)

    async def _answer(self, method: str, path: str, body: Any) -> web.Response:
        self.requests.append((method, path, body))
        custom = self.routes.get((method, path))
        if custom is not None:
            answer = custom(body)
            if isinstance(answer, web.Response):
                return answer
            return web.json_response(answer)
        return web.json_response(await self._default(method, path, body or {}))

    async def _default(self, method: str, path: str, body: dict[str, Any]) -> Any:
        if path == "/worker/register":
            return {"workerId": "w-1", "heartbeatIntervalMs": 50, "livenessTimeoutMs": 1000}
        if path in ("/worker/tasks/poll", "/worker/workflows/poll"):
            if self.poll_failures:
                self.poll_failures -= 1
                raise web.HTTPServiceUnavailable()
            queue = self.tasks if "tasks" in path else self.activations
            items = queue[: body["maxItems"]]
            del queue[: len(items)]
            if not items:
                await asyncio.sleep(0.02)  # a short "long poll"
            return {"tasks" if "tasks" in path else "activations": items}
        if path.endswith(("/progress", "/heartbeat")) and "/tasks/" in path:
            return {"cancelled": self.task_cancelled}
        if path == "/worker/logs":
            return {"accepted": len(body["entries"])}
        return {"status": "OK"}


@pytest.fixture
async def fake() -> AsyncIterator[FakeServer]:
    server = FakeServer()
    await server.server.start_server()
    yield server
    await server.server.close()


async def until(predicate: Callable[[], bool], limit: float = 3.0) -> None:
    """Poll a condition on the fake server's records (they have no events to await)."""
    async with asyncio.timeout(limit):
        while not predicate():  # noqa: ASYNC110
            await asyncio.sleep(0.01)


def task_item(kind: str, input: Any = None, **extra: Any) -> dict[str, Any]:
    return {
        "taskExecutionId": str(uuid.uuid4()),
        "kind": kind,
        "input": input,
        "attempt": 1,
        "workflowExecutionId": None,
        "queue": "default",
        "timeoutMs": None,
        **extra,
    }


# -- tasks --


@task(name="greet")
async def greet(ctx: TaskContext, name: str) -> str:
    ctx.logger.debug("debug line")
    ctx.logger.info("greeting %s", name)
    ctx.logger.warning("careful")
    ctx.logger.critical("very bad")
    await ctx.report_progress(0.5, "half")
    return f"hello {name}"


@task(name="explode")
async def explode(ctx: TaskContext, input: Any) -> None:
    raise ValueError("boom")


@task(name="slow", timeout=0.05)
async def slow(ctx: TaskContext, input: Any) -> None:
    await asyncio.sleep(5)


@task(name="blocking")
def blocking(ctx: TaskContext, input: Any) -> int:
    ctx.logger.info("in a thread")
    return 7


def worker_for(fake: FakeServer, **kwargs: Any) -> Worker:
    kwargs.setdefault("tasks", [greet, explode, slow, blocking])
    return Worker(fake.url, tenant="acme", token="fwt_secret", poll_timeout=0.2, **kwargs)


async def test_registers_runs_a_task_and_reports_output_logs_and_progress(
    fake: FakeServer,
) -> None:
    item = task_item("greet", "ada")
    fake.tasks.append(item)
    async with worker_for(fake):
        await until(lambda: bool(fake.posts(f"/worker/tasks/{item['taskExecutionId']}/complete")))
    register = fake.posts("/worker/register")[0]
    assert register["queues"] == ["default"]
    assert {t["kind"] for t in register["tasks"]} == {"greet", "explode", "slow", "blocking"}
    assert register["workflows"] == []
    slow_reg = next(t for t in register["tasks"] if t["kind"] == "slow")
    assert slow_reg["timeoutMs"] == 50
    assert slow_reg["retryPolicy"] == {
        "maxAttempts": 3,
        "initialIntervalMs": 1000,
        "backoffCoefficient": 2.0,
        "maxIntervalMs": 60000,
    }
    complete = fake.posts(f"/worker/tasks/{item['taskExecutionId']}/complete")[0]
    assert complete == {"workerId": "w-1", "attempt": 1, "output": "hello ada"}
    progress = fake.posts(f"/worker/tasks/{item['taskExecutionId']}/progress")[0]
    assert progress == {"workerId": "w-1", "attempt": 1, "progress": 0.5, "details": "half"}
    entries = [e for batch in fake.posts("/worker/logs") for e in batch["entries"]]
    assert [(e["level"], e["message"]) for e in entries] == [
        ("DEBUG", "debug line"),
        ("INFO", "greeting ada"),
        ("WARN", "careful"),
        ("ERROR", "very bad"),
    ]
    assert all(
        e["taskExecutionId"] == item["taskExecutionId"]
        and e["attempt"] == 1
        and e["timestamp"].endswith("Z")
        for e in entries
    )
    assert fake.posts("/worker/unregister") == [{"workerId": "w-1"}]
    assert set(fake.auth) == {"Bearer fwt_secret"}
    polls = fake.posts("/worker/tasks/poll")
    assert polls[0]["kinds"] == ["blocking", "explode", "greet", "slow"]
    assert polls[0]["maxItems"] == 100 and polls[0]["timeoutMs"] == 200
    assert fake.posts("/worker/workflows/poll") == []  # no workflows, no workflow polls


async def test_failing_task_is_reported_retryable_with_type_and_stack(fake: FakeServer) -> None:
    item = task_item("explode")
    fake.tasks.append(item)
    async with worker_for(fake):
        await until(lambda: bool(fake.posts("/fail")))
    fail = fake.posts("/fail")[0]
    assert fail["error"] == "ValueError: boom"
    assert fail["retryable"] is True
    assert "Traceback" in fail["stackTrace"] and fail["attempt"] == 1


async def test_task_timeout_is_enforced(fake: FakeServer) -> None:
    fake.tasks.append(task_item("slow"))
    async with worker_for(fake):
        await until(lambda: bool(fake.posts("/fail")))
    assert fake.posts("/fail")[0]["error"] == (
        "TimeoutError: task 'slow' did not finish within 0.05s"
    )


async def test_sync_task_runs_in_a_thread(fake: FakeServer) -> None:
    fake.tasks.append(task_item("blocking"))
    async with worker_for(fake):
        await until(lambda: bool(fake.posts("/complete")))
    assert fake.posts("/complete")[0]["output"] == 7


async def test_stale_answers_and_poll_errors_do_not_stop_the_worker(fake: FakeServer) -> None:
    first, second = task_item("greet", "a"), task_item("greet", "b")
    fake.routes[("POST", f"/worker/tasks/{first['taskExecutionId']}/complete")] = lambda body: (
        web.json_response({"error": "stale", "code": "STALE_ATTEMPT"}, status=409)
    )
    fake.poll_failures = 2
    fake.tasks.extend([first])
    async with worker_for(fake):
        await until(lambda: bool(fake.posts(f"{first['taskExecutionId']}/complete")))
        fake.tasks.append(second)
        await until(lambda: bool(fake.posts(f"{second['taskExecutionId']}/complete")))


async def test_heartbeats_are_sent_at_the_registered_interval(fake: FakeServer) -> None:
    async with worker_for(fake):
        await until(lambda: len(fake.posts("/worker/heartbeat")) >= 2)
    assert fake.posts("/worker/heartbeat")[0] == {"workerId": "w-1"}


async def test_concurrency_limit_caps_running_tasks(fake: FakeServer) -> None:
    running = {"now": 0, "max": 0}
    release = asyncio.Event()

    @task(name="hold")
    async def hold(ctx: TaskContext, input: Any) -> None:
        running["now"] += 1
        running["max"] = max(running["max"], running["now"])
        await release.wait()
        running["now"] -= 1

    fake.tasks.extend(task_item("hold") for _ in range(5))
    async with worker_for(fake, tasks=[hold], max_concurrent_tasks=2):
        await until(lambda: running["now"] == 2)
        await asyncio.sleep(0.1)
        assert running["max"] == 2
        assert all(p["maxItems"] <= 2 for p in fake.posts("/worker/tasks/poll"))
        release.set()
        await until(lambda: len(fake.posts("/complete")) == 5)
    assert running["max"] == 2


async def test_progress_answer_sets_is_cancelled(fake: FakeServer) -> None:
    seen: list[bool] = []

    @task(name="watch")
    async def watch(ctx: TaskContext, input: Any) -> None:
        seen.append(ctx.is_cancelled)
        seen.append(await ctx.heartbeat())
        seen.append(ctx.is_cancelled)

    fake.task_cancelled = True
    fake.tasks.append(task_item("watch"))
    async with worker_for(fake, tasks=[watch]):
        await until(lambda: len(seen) == 3)
    assert seen == [False, True, True]


async def test_stop_cancels_tasks_after_the_grace_period(fake: FakeServer) -> None:
    started = asyncio.Event()
    cancelled: list[bool] = []

    @task(name="forever")
    async def forever(ctx: TaskContext, input: Any) -> None:
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    fake.tasks.append(task_item("forever"))
    worker = worker_for(fake, tasks=[forever], shutdown_grace=0.1)
    runner = asyncio.create_task(worker.run())
    await asyncio.wait_for(started.wait(), 3)
    await asyncio.wait_for(worker.stop(), 3)
    await runner
    assert cancelled == [True]
    assert fake.posts("/complete") == [] and fake.posts("/fail") == []
    assert fake.posts("/worker/unregister") == [{"workerId": "w-1"}]


async def test_network_errors_at_registration_are_retried(fake: FakeServer) -> None:
    calls = {"n": 0}

    def flaky(body: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            return web.json_response({"error": "down", "code": "UNAVAILABLE"}, status=503)
        return {"workerId": "w-2", "heartbeatIntervalMs": 1000}

    fake.routes[("POST", "/worker/register")] = flaky
    async with worker_for(fake) as worker:
        assert worker.worker_id == "w-2"


async def test_bad_token_fails_startup(fake: FakeServer) -> None:
    fake.routes[("POST", "/worker/register")] = lambda body: web.json_response(
        {"error": "worker token required", "code": "FORBIDDEN"}, status=403
    )
    with pytest.raises(FlovynApiError) as info:
        async with worker_for(fake):
            pass
    assert info.value.status == 403 and info.value.code == "FORBIDDEN"


# -- workflows --


@workflow(name="hello-flow")
async def hello_flow(ctx: WorkflowContext, input: Any) -> Any:
    return await ctx.schedule("greet", input["name"])


def activation(events: list[dict[str, Any]], kind: str = "hello-flow") -> dict[str, Any]:
    return {
        "workflowExecutionId": EID,
        "activationId": 7,
        "kind": kind,
        "queue": "orders",
        "input": {"name": "ada"},
        "retryAttempts": 0,
        "parentWorkflowExecutionId": None,
        "events": events,
    }


STARTED = {
    "sequence": 1,
    "eventType": "WORKFLOW_STARTED",
    "timestamp": "2024-05-01T00:00:00Z",
    "data": {"input": {"name": "ada"}},
}


async def test_activation_is_replayed_and_submitted(fake: FakeServer) -> None:
    fake.activations.append(activation([STARTED]))
    async with worker_for(fake, workflows=[hello_flow], tasks=[], queue="orders"):
        await until(lambda: bool(fake.posts("/submit")))
    submit = fake.posts(f"/worker/workflows/{EID}/submit")[0]
    assert submit["workerId"] == "w-1" and submit["activationId"] == 7
    assert submit["status"] == "SUSPENDED"
    [command] = submit["commands"]
    assert command["type"] == "SCHEDULE_TASK" and command["kind"] == "greet"
    assert command["input"] == "ada" and command["queue"] == "orders"
    poll = fake.posts("/worker/workflows/poll")[0]
    assert poll["kinds"] == ["hello-flow"] and poll["queue"] == "orders"
    assert fake.posts("/worker/tasks/poll") == []


async def test_determinism_violation_fails_the_activation(fake: FakeServer) -> None:
    events = [
        STARTED,
        {
            "sequence": 2,
            "eventType": "TASK_SCHEDULED",
            "timestamp": "2024-05-01T00:00:01Z",
            "data": {"taskExecutionId": str(uuid.uuid4()), "kind": "other"},
        },
    ]
    fake.activations.append(activation(events))
    async with worker_for(fake, workflows=[hello_flow], tasks=[]):
        await until(lambda: bool(fake.posts("/fail-activation")))
    body = fake.posts("/fail-activation")[0]
    assert body["errorType"] == "DeterminismViolation"
    assert "code scheduled task 'greet' but history has TASK_SCHEDULED of 'other'" in body["error"]
    assert body["activationId"] == 7
    assert fake.posts("/submit") == []


async def test_stale_activation_is_dropped(fake: FakeServer, caplog: Any) -> None:
    fake.routes[("POST", f"/worker/workflows/{EID}/submit")] = lambda body: web.json_response(
        {"error": "reclaimed", "code": "STALE_ACTIVATION"}, status=409
    )
    fake.activations.append(activation([STARTED]))
    with caplog.at_level(logging.INFO, logger="flovyn_worker"):
        async with worker_for(fake, workflows=[hello_flow], tasks=[]):
            await until(lambda: bool(fake.posts("/submit")))
            fake.activations.append(activation([STARTED]))
            await until(lambda: len(fake.posts("/submit")) == 2)
    assert fake.posts("/fail-activation") == []
    assert "stale" in caplog.text


# -- client --


async def test_client_start_and_result(fake: FakeServer) -> None:
    # This fake has no stream route (404): result() falls back to polling the status.
    statuses = itertools.chain(["PENDING", "RUNNING"], itertools.repeat("COMPLETED"))
    fake.routes[("POST", "/workflows/hello-flow/trigger")] = lambda body: web.json_response(
        {
            "workflowExecutionId": EID,
            "status": "PENDING",
            "kind": "hello-flow",
            "idempotencyKeyUsed": True,
            "idempotencyKeyNew": True,
        },
        status=201,
    )
    fake.routes[("GET", f"/workflow-executions/{EID}")] = lambda body: {
        "id": EID,
        "status": next(statuses),
        "output": {"ok": 1},
        "currentSequence": 1,
    }
    async with Client(fake.url, tenant="acme", api_key="flovyn_sk_x") as client:
        handle = await client.start_workflow(
            hello_flow, {"name": "ada"}, idempotency_key="k-1", queue="q", metadata={"a": "b"}
        )
        assert handle.id == EID and handle.created is True
        assert await handle.result(timeout=5) == {"ok": 1}
    assert fake.posts("/workflows/hello-flow/trigger")[0] == {
        "input": {"name": "ada"},
        "queue": "q",
        "idempotencyKey": "k-1",
        "metadata": {"a": "b"},
    }
    assert "Bearer flovyn_sk_x" in fake.auth


async def test_client_result_raises_for_failed_cancelled_and_timeout(fake: FakeServer) -> None:
    state = {"status": "FAILED"}
    fake.routes[("GET", f"/workflow-executions/{EID}")] = lambda body: {
        "id": EID,
        "status": state["status"],
        "error": "TaskFailed: nope",
        "currentSequence": 1,
    }
    async with Client(fake.url, tenant="acme") as client:
        handle = client.get_handle(EID)
        with pytest.raises(WorkflowFailed) as info:
            await handle.result()
        assert info.value.error == "TaskFailed: nope"
        state["status"] = "CANCELLED"
        with pytest.raises(WorkflowCancelled):
            await handle.result()
        state["status"] = "RUNNING"
        with pytest.raises(asyncio.TimeoutError):
            await handle.result(timeout=0.1)


async def test_client_signal_cancel_promises_events_and_errors(fake: FakeServer) -> None:
    # the second page repeats sequence 2, as an inclusive since_sequence would
    pages = {0: [{"sequence": 1}, {"sequence": 2}], 2: [{"sequence": 2}, {"sequence": 3}], 3: []}
    async with Client(fake.url, tenant="acme") as client:
        handle = client.get_handle(EID)
        await handle.signal("go", {"n": 1})
        await handle.cancel("user asked", cascade_to_children=False)
        await client.resolve_promise(f"{EID}:approve", {"ok": True})
        await client.reject_promise("key:abc", "no")
        assert fake.posts(f"/workflow-executions/{EID}/signal") == [
            {"signalName": "go", "value": {"n": 1}}
        ]
        assert fake.posts(f"/workflow-executions/{EID}/cancel") == [
            {"cascadeToChildren": False, "reason": "user asked"}
        ]
        assert fake.posts(f"/promises/{EID}:approve/resolve") == [{"value": {"ok": True}}]
        assert fake.posts("/promises/key:abc/reject") == [{"error": "no"}]

        fake.routes[("GET", f"/workflow-executions/{EID}/events")] = lambda body: {
            "events": pages[int(fake.queries[-1]["since_sequence"])]
        }
        assert [e["sequence"] for e in await handle.events()] == [1, 2, 3]

        fake.routes[("GET", f"/workflow-executions/{EID}")] = lambda body: web.json_response(
            {"error": "workflow execution not found", "code": "NOT_FOUND"}, status=404
        )
        with pytest.raises(FlovynApiError) as info:
            await handle.describe()
        assert (info.value.status, info.value.code) == (404, "NOT_FOUND")
        assert info.value.message == "workflow execution not found"


async def test_signal_with_start_is_one_trigger_with_the_signal(fake: FakeServer) -> None:
    fake.routes[("POST", "/workflows/hello-flow/trigger")] = lambda body: {
        "workflowExecutionId": EID,
        "status": "RUNNING",
        "idempotencyKeyUsed": True,
        "idempotencyKeyNew": False,
    }  # answered 200: the execution already existed
    async with Client(fake.url, tenant="acme") as client:
        handle = await client.signal_with_start(
            "hello-flow",
            {"name": "x"},
            idempotency_key="cart-1",
            signal_name="add",
            signal_value={"sku": 1},
        )
    assert handle.created is False
    (sent,) = fake.posts("/workflows/hello-flow/trigger")
    assert sent["idempotencyKey"] == "cart-1"
    assert sent["signal"] == {"signalName": "add", "value": {"sku": 1}}
    assert fake.posts(f"/workflow-executions/{EID}/signal") == []  # no second request


# -- worker + client against a miniature engine --


class MiniEngine:
    """Just enough of the server's rules to run workflows end to end in memory."""

    def __init__(self) -> None:
        self.executions: dict[str, dict[str, Any]] = {}
        self.ready: list[str] = []
        self.task_queue: list[dict[str, Any]] = []
        self.task_owner: dict[str, str] = {}
        self.activation_counter = 0
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self.server = TestServer(app)

    def _append(self, eid: str, event_type: str, **data: Any) -> None:
        events = self.executions[eid]["events"]
        events.append(
            {
                "sequence": len(events) + 1,
                "eventType": event_type,
                "timestamp": "2024-05-01T00:00:00Z",
                "data": data,
            }
        )

    def _wake(self, eid: str) -> None:
        if eid not in self.ready:
            self.ready.append(eid)

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.json() if request.can_read_body else {}
        path = request.path.removeprefix(PREFIX)
        if path == "/worker/batch":
            return await unbatch(body, lambda p, b: self._answer(request.method, p, b))
        return await self._answer(request.method, path, body)

    async def _answer(self, method: str, path: str, body: Any) -> web.Response:
        parts = path.strip("/").split("/")
        answer: Any = {"status": "OK"}
        if path == "/worker/register":
            answer = {"workerId": "w-1", "heartbeatIntervalMs": 1000}
        elif path == "/worker/workflows/poll":
            items = []
            while self.ready and len(items) < body["maxItems"]:
                eid = self.ready.pop(0)
                ex = self.executions[eid]
                self.activation_counter += 1
                ex["activation"] = self.activation_counter
                items.append(
                    {
                        "workflowExecutionId": eid,
                        "activationId": ex["activation"],
                        "kind": ex["kind"],
                        "queue": "default",
                        "input": ex["input"],
                        "events": list(ex["events"]),
                    }
                )
            if not items:
                await asyncio.sleep(0.01)
            answer = {"activations": items}
        elif path == "/worker/tasks/poll":
            items = self.task_queue[: body["maxItems"]]
            del self.task_queue[: len(items)]
            if not items:
                await asyncio.sleep(0.01)
            answer = {"tasks": items}
        elif parts[:2] == ["worker", "workflows"] and parts[-1] == "submit":
            eid = parts[2]
            for c in body["commands"]:
                if c["type"] == "SCHEDULE_TASK":
                    self._append(
                        eid, "TASK_SCHEDULED", **{k: v for k, v in c.items() if k != "type"}
                    )
                    self.task_owner[c["taskExecutionId"]] = eid
                    self.task_queue.append(
                        {
                            "taskExecutionId": c["taskExecutionId"],
                            "kind": c["kind"],
                            "input": c["input"],
                            "attempt": 1,
                            "workflowExecutionId": eid,
                        }
                    )
                elif c["type"] == "COMPLETE_WORKFLOW":
                    self.executions[eid]["output"] = c["output"]
            self.executions[eid]["status"] = {"SUSPENDED": "WAITING"}.get(
                body["status"], body["status"]
            )
        elif parts[:2] == ["worker", "tasks"] and parts[-1] in ("complete", "fail"):
            eid = self.task_owner[parts[2]]
            if parts[-1] == "complete":
                self._append(eid, "TASK_COMPLETED", taskExecutionId=parts[2], output=body["output"])
            else:
                self._append(eid, "TASK_FAILED", taskExecutionId=parts[2], error=body["error"])
            self._wake(eid)
        elif parts[0] == "workflows" and parts[-1] == "trigger":
            eid = str(uuid.uuid4())
            self.executions[eid] = {
                "kind": parts[1],
                "input": body.get("input"),
                "events": [],
                "status": "PENDING",
                "output": None,
            }
            self._append(eid, "WORKFLOW_STARTED", input=body.get("input"))
            self._wake(eid)
            return web.json_response({"workflowExecutionId": eid, "status": "PENDING"}, status=201)
        elif parts[0] == "workflow-executions" and method == "GET":
            ex = self.executions[parts[1]]
            answer = {
                "id": parts[1],
                "status": ex["status"],
                "output": ex["output"],
                "currentSequence": 0,
            }
        return web.json_response(answer)


@task(name="square")
async def square(ctx: TaskContext, n: int) -> int:
    await asyncio.sleep(0.001 * (n % 3))  # finish out of order
    return n * n


@workflow(name="sum-of-squares")
async def sum_of_squares(ctx: WorkflowContext, n: int) -> int:
    squares = await asyncio.gather(*(ctx.schedule_async(square, i) for i in range(n)))
    total = sum(squares)
    return await ctx.schedule(square, total) if total < 0 else total


async def test_end_to_end_fan_out_through_worker_and_client() -> None:
    engine = MiniEngine()
    await engine.server.start_server()
    url = str(engine.server.make_url("")).rstrip("/")
    try:
        worker = Worker(
            url,
            tenant="acme",
            token="t",
            workflows=[sum_of_squares],
            tasks=[square],
            max_concurrent_tasks=4,
            poll_timeout=0.2,
        )
        async with worker, Client(url, tenant="acme") as client:
            handles = [await client.start_workflow(sum_of_squares, 20) for _ in range(3)]
            results = await asyncio.gather(*(h.result(timeout=10) for h in handles))
        assert results == [sum(i * i for i in range(20))] * 3
    finally:
        await engine.server.close()
