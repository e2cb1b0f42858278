"""SVG snapshots of each dashboard screen, on fixed data: the Workflows list, Help, an
execution's Tree, Timeline, Logs, Events and Data tabs, Workers and Definitions.

What makes them the same run after run:

- The data: rows seeded straight into a fresh SQLite store (fixed ids from `uid`, fixed
  times on 2024-03-01, finished executions only, so no duration counts to "now"); then
  `flovyn server` serves it. Nothing runs against it: no worker, no trigger.
- The header: the server listens on the fixed port `PORT` (the tests skip if it is
  taken) and the dashboard connects as a remote client, so neither a random port nor
  a worker token shows. The feed stays on: each test waits until it is live.
- The clock: times show in UTC (TZ, time.tzset()); the Workers view's heartbeat age is
  counted from the fixed `NOW` (the `datetime` of flovyn_tui.commands.discovery is
  replaced for the test), and the server's liveness timeout is a century, so the one
  ONLINE worker stays so.
- The moment: each screenshot is taken once what the screen reads has arrived (the
  rows, the counts, the execution's stream ended and its reloads done).

SQLite only: these tests are about what the dashboard draws; the API answers the same
on PostgreSQL (the other integration tests check that), so a second store would only
repeat the same pictures.

Regenerate after a deliberate change of the dashboard with
`python3 -m pytest tests/integration/test_dashboard_snapshots.py --snapshot-update`
and look at the SVGs in `__snapshots__/` before committing them.
"""

from __future__ import annotations

import json
import socket
import time
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterator, Sequence
from datetime import UTC, datetime, tzinfo
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import DataTable, Static

from flovyn_server.engine.tenants import hash_key
from flovyn_server.store.base import open_store
from flovyn_tui.commands import discovery
from flovyn_tui.dashboard.app import FlovynApp, Target
from flovyn_tui.dashboard.definitions import DefinitionsView, WorkersView
from flovyn_tui.dashboard.detail import ExecutionScreen
from flovyn_tui.dashboard.dialogs import HelpScreen
from flovyn_tui.dashboard.rows import Rows
from flovyn_tui.dashboard.workflows import WorkflowsView
from tests.conftest import run_async
from tests.serverproc import ServerProcess

PORT = 28391  # in the header, so fixed; below the usual ephemeral range (32768-60999)
SIZE = (140, 40)
TENANT = "shop"
API_KEY = "snapshot-api-key"
BASE = datetime(2024, 3, 1, 9, 0, tzinfo=UTC)  # the first execution starts here
NOW = datetime(2024, 3, 1, 9, 10, tzinfo=UTC)  # what heartbeat ages count from
CENTURY_MS = 100 * 365 * 24 * 3600 * 1000
NAMESPACE = uuid.UUID("6f1c1a52-3b0e-4f8e-9a57-0c2d5e7b9a11")

WORKER = "demo-worker"
ORDER = "A-0000"  # the execution the detail screen opens: a charge retried twice


def uid(name: str) -> str:
    """A fixed id for `name`."""
    return str(uuid.uuid5(NAMESPACE, name))


def ms(seconds: float) -> int:
    """Epoch milliseconds `seconds` after BASE."""
    return int(BASE.timestamp() * 1000) + round(seconds * 1000)


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


# --- the data ----------------------------------------------------------------------------

COLUMNS = {
    "tenants": "id, name, slug, tier, created_at",
    "credentials": "id, tenant_id, kind, display_name, key_hash, created_at",
    "workers": "id, tenant_id, name, type, status, version, host_name, process_id, queues, "
    "workflow_kinds, task_kinds, last_heartbeat_at, registered_at",
    "definitions": "tenant_id, category, kind, spec, first_seen_at, last_registered_at",
    "workflow_executions": "id, tenant_id, kind, queue, status, input, output, error, "
    "current_sequence, parent_id, child_name, retry_attempts, metadata, available_at, "
    "created_at, started_at, completed_at, updated_at, stream_pos, created_pos",
    "workflow_events": "workflow_execution_id, sequence, event_type, data, created_at, pos",
    "task_executions": "id, tenant_id, workflow_execution_id, kind, queue, status, input, "
    "output, error, execution_count, max_retries, retry_initial_ms, retry_coefficient, "
    "retry_max_ms, progress, progress_details, worker_id, metadata, retry_at, created_at, "
    "started_at, completed_at, updated_at, created_pos",
    "task_attempts": "task_execution_id, attempt, worker_id, status, output, error, "
    "started_at, finished_at, started_pos, finished_pos, retry_at",
    "task_logs": "id, task_execution_id, attempt, level, level_rank, message, ts, seq",
    "timers": "id, tenant_id, workflow_execution_id, fire_at, status",
    "promises": "id, tenant_id, workflow_execution_id, name, status, value, created_at, settled_at",
}
RANKS = {"DEBUG": 10, "INFO": 20, "WARN": 30, "ERROR": 40}


class Seed:
    """Rows for every table, with stream positions handed out in the order they are made."""

    def __init__(self) -> None:
        self.tenant_id = uid("tenant")
        self.worker_id = uid(WORKER)
        self.rows: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
        self.pos = 1

    def take(self) -> int:
        self.pos += 1
        return self.pos - 1

    def add(self, table: str, *row: Any) -> None:
        self.rows[table].append(row)


class Execution:
    """One workflow execution being written: its history, tasks, attempts and logs."""

    def __init__(
        self,
        seed: Seed,
        name: str,
        kind: str,
        t0: float,
        data: Any,
        *,
        parent: str | None = None,
        child_name: str | None = None,
    ) -> None:
        self.seed, self.name, self.kind, self.t0, self.input = seed, name, kind, t0, data
        self.id = uid(f"workflow {name}")
        self.parent, self.child_name = parent, child_name
        self.created_pos = seed.take()
        self.sequence = 0
        self.last_pos = 0
        self.end = 0.0  # seconds after BASE it ended
        self.event(0, "WORKFLOW_STARTED", {"input": data})

    def event(self, at: float, event_type: str, data: Any) -> None:
        self.sequence += 1
        self.last_pos = self.seed.take()
        self.seed.add(
            "workflow_events",
            self.id,
            self.sequence,
            event_type,
            dumps(data),
            ms(self.t0 + at),
            self.last_pos,
        )

    def task(
        self,
        kind: str,
        at: float,
        data: Any,
        attempts: list[tuple[float, float, str | None]],
        output: Any = None,
        *,
        logs: Sequence[tuple[int, float, str, str]] = (),
        max_retries: int = 3,
        retry: tuple[int, float, int] = (1000, 2.0, 60000),
        progress: tuple[float, str] | None = None,
        n: int = 0,
    ) -> None:
        """A task scheduled at `at`, its attempts as (start, end, error or None), and its
        log lines as (attempt, at, level, message); its history events alike."""
        s = self.seed
        task_id = uid(f"task {self.name} {kind} {n}")
        self.event(
            at,
            "TASK_SCHEDULED",
            {"taskExecutionId": task_id, "kind": kind, "input": data, "maxRetries": max_retries,
             "queue": "default"},
        )  # fmt: skip
        created_pos = s.take()
        for number, (start, end, error) in enumerate(attempts, 1):
            last = number == len(attempts)
            retry_at = None if last else ms(self.t0 + attempts[number][0] - 0.001)
            s.add(
                "task_attempts",
                task_id,
                number,
                s.worker_id,
                "FAILED" if error else "COMPLETED",
                None if error else dumps(output),
                error,
                ms(self.t0 + start),
                ms(self.t0 + end),
                s.take(),
                s.take(),
                retry_at,
            )
        for attempt, when, level, message in logs:
            s.add(
                "task_logs",
                uid(f"log {task_id} {attempt} {when} {message}"),
                task_id,
                attempt,
                level,
                RANKS[level],
                message,
                ms(self.t0 + when),
                s.take(),
            )
        start, end, error = attempts[-1]
        status = "FAILED" if error else "COMPLETED"
        s.add(
            "task_executions",
            task_id,
            s.tenant_id,
            self.id,
            kind,
            "default",
            status,
            dumps(data),
            None if error else dumps(output),
            error,
            len(attempts),
            max_retries,
            *retry,
            progress[0] if progress else None,
            progress[1] if progress else None,
            s.worker_id,
            "{}",
            ms(self.t0 + start),
            ms(self.t0 + at),
            ms(self.t0 + attempts[0][0]),
            ms(self.t0 + end),
            ms(self.t0 + end),
            created_pos,
        )
        if error:
            self.event(end, "TASK_FAILED", {"taskExecutionId": task_id, "error": error})
        else:
            self.event(end, "TASK_COMPLETED", {"taskExecutionId": task_id, "output": output})

    def finish(
        self,
        at: float | None,
        status: str,
        *,
        output: Any = None,
        error: str | None = None,
        started: bool = True,
    ) -> None:
        """The end (None: it never ended; not allowed here) and the execution's row."""
        assert at is not None, "finished executions only: no duration may count to now"
        self.end = self.t0 + at
        if status == "COMPLETED":
            self.event(at, "WORKFLOW_COMPLETED", {"output": output})
        elif status == "FAILED":
            trace = "Traceback (most recent call last):\n  ...\nflovyn_worker.errors." + str(error)
            self.event(at, "WORKFLOW_EXECUTION_FAILED", {"error": error, "stackTrace": trace})
        s = self.seed
        s.add(
            "workflow_executions",
            self.id,
            s.tenant_id,
            self.kind,
            "default",
            status,
            dumps(self.input),
            None if output is None else dumps(output),
            error,
            self.sequence,
            self.parent,
            self.child_name,
            0,
            "{}",
            ms(self.t0),
            ms(self.t0),
            ms(self.t0 + 0.002) if started else None,
            ms(self.t0 + at),
            ms(self.t0 + at),
            self.last_pos,
            self.created_pos,
        )


def order(
    seed: Seed,
    order_id: str,
    t0: float,
    amount: int,
    items: list[str],
    fails: int,
    *,
    parent: str | None = None,
) -> Execution:
    """The demo's `order`: reserve stock, charge the card (failing `fails` times first),
    ship each item in parallel, wait a one-second timer."""
    data = {"orderId": order_id, "amount": amount, "items": items}
    ex = Execution(seed, order_id, "order", t0, data, parent=parent,
                   child_name=order_id if parent else None)  # fmt: skip
    ex.task(
        "reserve-stock", 0.006, data, [(0.006, 0.216, None)], {"reserved": items},
        logs=[(1, 0.010, "INFO", f"reserving {len(items)} items for order {order_id}")],
    )  # fmt: skip
    attempts: list[tuple[float, float, str | None]] = []
    logs: list[tuple[int, float, str, str]] = []
    start = 0.219
    for n in range(1, fails + 2):
        end = start + 0.307 + 0.004 * n
        failed = n <= fails
        attempts.append((start, end, "RuntimeError: card processor timed out" if failed else None))
        logs.append((n, start + 0.003, "INFO", f"charging {amount} (attempt {n})"))
        if failed:
            logs.append((n, end - 0.004, "WARN", "card processor timed out"))
        start = end + min(0.5 * 2 ** (n - 1), 3.0) + 0.001
    charged = attempts[-1][1]
    ex.task(
        "charge-card", 0.219, data, attempts, {"chargeId": f"ch-{order_id}", "amount": amount},
        logs=logs, retry=(500, 2.0, 3000), progress=(1.0, "charged"),
    )  # fmt: skip
    shipped = charged + 0.002 + 0.409
    for n, item in enumerate(items):
        ex.task(
            "ship-item", charged + 0.002, item, [(charged + 0.002, shipped, None)],
            f"shipped:{item}", logs=[(1, charged + 0.004, "INFO", f"shipping {item}")], n=n,
        )  # fmt: skip
    timer_id = uid(f"timer {order_id}")
    ex.event(shipped + 0.007, "TIMER_STARTED", {"timerId": timer_id, "durationMs": 1000})
    ex.event(shipped + 1.009, "TIMER_FIRED", {"timerId": timer_id})
    seed.add("timers", timer_id, seed.tenant_id, ex.id, ms(t0 + shipped + 1.007), "FIRED")
    output = {
        "orderId": order_id,
        "charge": {"chargeId": f"ch-{order_id}", "amount": amount},
        "shipments": [f"shipped:{i}" for i in items],
    }
    ex.finish(shipped + 1.015, "COMPLETED", output=output)
    return ex


def batch(seed: Seed, batch_id: str, t0: float) -> None:
    """The demo's `batch`: three child orders, summed."""
    ex = Execution(seed, batch_id, "batch", t0, {"batchId": batch_id})
    children = []
    for n in range(1, 4):
        name = f"{batch_id}-{n}"
        child = uid(f"workflow {name}")
        ex.event(0.005, "CHILD_WORKFLOW_INITIATED",
                 {"childExecutionName": name, "childWorkflowKind": "order",
                  "childWorkflowExecutionId": child})  # fmt: skip
        children.append(order(seed, name, t0 + 0.005, 10 * n, ["book"], n - 1, parent=ex.id))
    for child_ex in sorted(children, key=lambda c: c.end):
        ex.event(child_ex.end - t0 + 0.001, "CHILD_WORKFLOW_COMPLETED",
                 {"childExecutionName": child_ex.name, "childWorkflowExecutionId": child_ex.id})  # fmt: skip
    end = max(c.end for c in children) - t0
    ex.finish(end + 0.004, "COMPLETED", output={"batchId": batch_id, "total": 60})


def import_file(seed: Seed, import_id: str, t0: float) -> None:
    """The demo's `import`: ten items in parallel; item 7's file is corrupt."""
    data = {"importId": import_id, "corrupt": True}
    ex = Execution(seed, import_id, "import", t0, data)
    error = f"ValueError: item 7 of {import_id}: checksum mismatch"
    for n in range(10):
        item = {"n": n, "importId": import_id, "corrupt": n == 7}
        end = 0.430 + 0.002 * n
        logs = [(1, 0.012 + 0.106 * (step - 1), "DEBUG", f"item {n}: step {step}")
                for step in range(1, 5)]  # fmt: skip
        logs.append(
            (1, end - 0.005, "ERROR", f"item {n}: checksum mismatch")
            if n == 7
            else (1, end - 0.005, "INFO", f"item {n} imported")
        )
        ex.task(
            "process-item", 0.008, item, [(0.008, end, error if n == 7 else None)],
            n, logs=logs, max_retries=0, progress=(1.0, "step 4 of 4"), n=n,
        )  # fmt: skip
    ex.finish(0.452, "FAILED", error=f"TaskFailed: {error}")


def approval(seed: Seed, request: str, t0: float) -> None:
    """The demo's `approval`: a promise that a person resolved."""
    ex = Execution(seed, request, "approval", t0, {"request": request})
    promise = uid(f"promise {request}")
    ex.event(0.004, "PROMISE_CREATED",
             {"promiseId": promise, "promiseName": "approval", "timeoutMs": 120000})  # fmt: skip
    decision = {"approved": True, "by": "dana"}
    ex.event(47.912, "PROMISE_RESOLVED",
             {"promiseId": promise, "promiseName": "approval", "value": decision})  # fmt: skip
    seed.add("promises", promise, seed.tenant_id, ex.id, "approval", "RESOLVED",
             dumps(decision), ms(t0 + 0.004), ms(t0 + 47.912))  # fmt: skip
    ex.finish(47.931, "COMPLETED", output={"request": request, "decision": decision})


def cancelled(seed: Seed, order_id: str, t0: float) -> None:
    """An order cancelled before any worker took it."""
    data = {"orderId": order_id, "amount": 15, "items": ["lamp"]}
    ex = Execution(seed, order_id, "order", t0, data)
    ex.event(0.804, "CANCELLATION_REQUESTED", {"reason": "duplicate", "requestedBy": "api"})
    ex.event(0.804, "WORKFLOW_CANCELLED", {"reason": "duplicate"})
    ex.finish(0.804, "CANCELLED", started=False)


def definitions(seed: Seed) -> None:
    workflows = {
        "order": "reserve stock, charge the card, ship, confirm",
        "approval": "waits for a person to approve",
        "batch": "three child orders, summed",
        "import": "ten items in parallel",
    }
    tasks = {
        "reserve-stock": (3, 1000, 60000),
        "charge-card": (4, 500, 3000),
        "ship-item": (3, 1000, 60000),
        "process-item": (1, 1000, 60000),
        "render-report": (5, 2000, 60000),
    }
    at = ms(-60)
    for kind, description in workflows.items():
        spec = {"kind": kind, "name": kind, "description": description, "tags": [],
                "cancellable": True, "version": "1"}  # fmt: skip
        seed.add("definitions", seed.tenant_id, "workflow", kind, dumps(spec), at, at)
    for kind, (attempts, initial, most) in tasks.items():
        policy = {"maxAttempts": attempts, "initialIntervalMs": initial,
                  "backoffCoefficient": 2.0, "maxIntervalMs": most}  # fmt: skip
        spec = {"kind": kind, "name": kind, "tags": [], "retryPolicy": policy}
        when = ms(-86400) if kind == "render-report" else at
        seed.add("definitions", seed.tenant_id, "task", kind, dumps(spec), when, when)


def build() -> Seed:
    """The tenant, its workers and kinds, and thirteen executions 40 s apart (three of
    them the batch's children): orders, a batch, a failed import, an approval, a
    cancelled order."""
    seed = Seed()
    now = int(NOW.timestamp() * 1000)
    seed.add("tenants", seed.tenant_id, "Shop", TENANT, "FREE", ms(-3600))
    seed.add("credentials", uid("api key"), seed.tenant_id, "api", "snapshots",
             hash_key(API_KEY), ms(-3600))  # fmt: skip
    seed.add(
        "workers", seed.worker_id, seed.tenant_id, WORKER, "UNIFIED", "ONLINE", "0.1.0",
        "build-01", 4242, dumps(["default"]), dumps(["order", "approval", "batch", "import"]),
        dumps(["reserve-stock", "charge-card", "ship-item", "process-item"]), now - 2000, ms(-60),
    )  # fmt: skip
    seed.add(
        "workers", uid("reports-worker"), seed.tenant_id, "reports-worker", "TASK", "OFFLINE",
        "0.1.0", "build-02", 977, dumps(["bulk"]), dumps([]), dumps(["render-report"]),
        ms(-55_000), ms(-86400),
    )  # fmt: skip
    definitions(seed)
    fails = {0: 2, 1: 0, 2: 0, 4: 2, 7: 1, 8: 2, 10: 1, 11: 2, 12: 0}
    for n in range(13):
        t0 = 40.0 * n
        if n == 3:
            batch(seed, f"B-{n:04d}", t0)
        elif n == 5:
            cancelled(seed, f"A-{n:04d}", t0)
        elif n == 6:
            import_file(seed, f"I-{n:04d}", t0)
        elif n == 9:
            approval(seed, f"refund R-{n:04d}", t0)
        else:
            order(seed, f"A-{n:04d}", t0, 10 + n, ["book", "lamp"], fails[n])
    return seed


async def write(url: str, seed: Seed) -> None:
    store = await open_store(url)
    try:
        async with store.transaction() as tx:
            for table, columns in COLUMNS.items():
                marks = ", ".join(f"${i + 1}" for i in range(columns.count(",") + 1))
                rows = seed.rows.get(table, [])
                if rows:
                    await tx.executemany(f"INSERT INTO {table} ({columns}) VALUES ({marks})", rows)
            # Positions the server hands out from now on lie above the seeded ones.
            await tx.execute("UPDATE stream_clock SET pos = $1 WHERE id = 1", seed.pos + 1)
    finally:
        await store.close()


# --- the server and the clock --------------------------------------------------------------


def port_taken(port: int) -> bool:
    """Whether something listens on `port` (connections of an earlier run waiting out
    TIME_WAIT do not count: the server binds with SO_REUSEADDR too)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`flovyn server` on the seeded store, on PORT."""
    if port_taken(PORT):
        pytest.skip(f"port {PORT} is taken: the snapshots show it, so it cannot change")
    folder = tmp_path_factory.mktemp("dashboard-snapshots")
    url = f"sqlite://{folder / 'flovyn.db'}"
    seed = build()
    run_async(lambda: write(url, seed))
    proc = ServerProcess(
        url,
        folder / "server",
        port=PORT,
        env_extra={"FLOVYN_LIVENESS_TIMEOUT_MS": str(CENTURY_MS), "TZ": "UTC"},
    )
    proc.start()
    try:
        yield proc.url
    finally:
        proc.stop()


class FrozenDatetime(datetime):
    """`datetime` whose now() is NOW."""

    @classmethod
    def now(cls, tz: tzinfo | None = None) -> datetime:  # type: ignore[override]
        return NOW.astimezone(tz) if tz is not None else NOW.astimezone().replace(tzinfo=None)


@pytest.fixture(autouse=True)
def fixed_clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    monkeypatch.setattr(discovery, "datetime", FrozenDatetime)
    yield
    monkeypatch.undo()
    time.tzset()


# --- driving the app -----------------------------------------------------------------------

Step = Callable[[Pilot[Any]], Awaitable[None]]


async def until(
    pilot: Pilot[Any], check: Callable[[], bool], what: str, within: float = 15.0
) -> None:
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {within}s")
        await pilot.pause(0.05)


def busy(app: FlovynApp, node: object, groups: set[str] | None = None) -> bool:
    """Whether a worker of `node` (of one of `groups`) still runs."""
    return any(
        w.node is node and not w.is_finished and (groups is None or w.group in groups)
        for w in app.workers
    )


async def list_ready(pilot: Pilot[Any]) -> None:
    app = pilot.app
    assert isinstance(app, FlovynApp)
    await until(pilot, lambda: app.live is True, "the feed is live")
    view = app.screen_stack[0].query_one(WorkflowsView)
    await until(
        pilot,
        lambda: (
            len(view.rows.items) == 16
            and bool(str(view.query_one("#counts", Static).render()))
            and not busy(app, view)
        ),
        "the list and its counts are read",
    )


async def execution_ready(pilot: Pilot[Any], tab: str) -> None:
    """The order's screen on `tab`, once its stream ended and what it read is shown."""
    await list_ready(pilot)
    app = pilot.app
    assert isinstance(app, FlovynApp)
    screen = ExecutionScreen(uid(f"workflow {ORDER}"))
    await app.push_screen(screen)
    await until(pilot, lambda: screen.root is not None, "the execution is read")
    await until(pilot, lambda: not busy(app, screen, {"stream"}), "the execution's stream ends")
    await pilot.pause(0.6)  # a reload the stream's last events asked for
    logs = screen.query_one("#log-rows", Rows)
    events = screen.query_one("#event-rows", Rows)
    await until(
        pilot,
        lambda: not busy(app, screen, {"load", "logs"}) and len(logs.items) == 8
        and len(events.items) == 12,
        "the tree, logs and events are shown",
    )  # fmt: skip
    await until(pilot, lambda: screen.ended and screen.live is None, "its stream has ended")
    await pilot.press(tab)
    await pilot.pause(0.2)


def on_tab(tab: str, *keys: str) -> Step:
    async def run(pilot: Pilot[Any]) -> None:
        await execution_ready(pilot, tab)
        if keys:
            await pilot.press(*keys)
            await pilot.pause(0.2)

    return run


def listing(key: str, view: type[WorkersView | DefinitionsView], rows: int) -> Step:
    async def run(pilot: Pilot[Any]) -> None:
        await list_ready(pilot)
        await pilot.press(key)
        app = pilot.app
        shown = app.query_one(view)
        table = shown.query_one(DataTable)
        await until(
            pilot,
            lambda: table.row_count == rows and not busy(app, shown),  # type: ignore[arg-type]
            f"{view.__name__} is read",
        )
        # The DataTable's header line can keep the widths it had before the rows came
        # (the view's own refresh after loading does not always catch it): repaint.
        table.refresh()
        await pilot.pause(0.2)

    return run


async def help_open(pilot: Pilot[Any]) -> None:
    await list_ready(pilot)
    await pilot.press("question_mark")
    await until(pilot, lambda: isinstance(pilot.app.screen, HelpScreen), "help shows")


def dashboard(url: str) -> FlovynApp:
    return FlovynApp(Target(url, TENANT, API_KEY))


# --- the snapshots -------------------------------------------------------------------------

Compare = Callable[..., bool]


def test_workflows_list(snap_compare: Compare, server: str) -> None:
    assert snap_compare(dashboard(server), terminal_size=SIZE, run_before=list_ready)


def test_help(snap_compare: Compare, server: str) -> None:
    assert snap_compare(dashboard(server), terminal_size=SIZE, run_before=help_open)


# The events pane shows an event's JSON once the cursor moves (its first rows may come
# from the stream, which does not say what is highlighted): down and up again.
TABS = {"tree": ("1",), "timeline": ("2",), "logs": ("3",), "events": ("4", "j", "k"),
        "data": ("5",)}  # fmt: skip


@pytest.mark.parametrize("keys", TABS.values(), ids=TABS.keys())
def test_execution(snap_compare: Compare, server: str, keys: tuple[str, ...]) -> None:
    assert snap_compare(dashboard(server), terminal_size=SIZE, run_before=on_tab(*keys))


def test_workers(snap_compare: Compare, server: str) -> None:
    step = listing("o", WorkersView, 2)
    assert snap_compare(dashboard(server), terminal_size=SIZE, run_before=step)


def test_definitions(snap_compare: Compare, server: str) -> None:
    step = listing("d", DefinitionsView, 9)
    assert snap_compare(dashboard(server), terminal_size=SIZE, run_before=step)


def test_the_data_is_fixed() -> None:
    """Two builds of the seed are the same rows: no clock or random id leaks in."""
    assert build().rows == build().rows
