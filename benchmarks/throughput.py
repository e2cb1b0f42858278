#!/usr/bin/env python3
"""End-to-end throughput of a real Flovyn server with real SDK workers.

For each store (SQLite, PostgreSQL) this starts ``flovyn server`` as a subprocess,
creates a tenant, an API key and a worker token over REST, starts W worker
processes (this script again, in ``--worker-child`` mode) that serve one workflow
``bench`` (it schedules the task ``echo`` and returns its output), triggers N
workflows, waits until all are COMPLETED and prints figures computed from the
server's own timestamps.

    python3 benchmarks/throughput.py                       # 2000 workflows, 2 workers, both stores
    python3 benchmarks/throughput.py --workflows 200       # a quick check (well under a minute)
    python3 benchmarks/throughput.py --store sqlite --workers 4 --max-items 50
    python3 benchmarks/throughput.py --workflows 400 --rate 20   # latency below saturation
    python3 benchmarks/throughput.py --store postgres --profile py-spy   # where the server's time goes

Figures, per store:
  * workflows/s: N / (max completedAt - min createdAt), both from the server;
  * trigger -> completion and trigger -> first pickup (startedAt, the first claim by a
    worker) latencies, p50 / p90 / p99 / max. Triggering as fast as possible measures
    queueing at saturation; ``--rate`` paces the triggers to measure latency below it;
  * the same latency cut into phases for a sample of workflows, from their task's
    timestamps (queued -> picked up, first activation, task pickup, task run, resume);
  * the trigger rate alone (N / the time the client took to send all triggers, while
    the workers were already busy with the first ones);
  * CPU seconds of the server (event-loop thread and other threads), the workers,
    PostgreSQL, this client, and everything else on the machine (other load skews all
    figures: look at that line before comparing runs);
  * HTTP requests per workflow by route with their mean time in the server, from the
    server's /_/metrics.

The SDK ``Worker`` has no separate "items per poll" knob: each poll asks for as many
items as it has free slots, so ``--max-items`` sets both ``max_concurrent_workflows``
and ``max_concurrent_tasks`` of every worker.

``--profile py-spy`` attaches py-spy (if installed) to the server for the measured
phase, sampling the thread that holds the GIL, and prints own time by package and
function; ``--profile cprofile`` runs the whole server under cProfile instead.

Everything it starts is stopped and everything it creates (temporary directories, the
``flovyn_bench_<hex>`` database) is removed at the end, on errors and on Ctrl-C. It exits
non-zero when a trigger failed or a workflow did not complete within ``--timeout``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import math
import os
import pstats
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp

from flovyn_worker import TaskContext, Worker, WorkflowContext, task, workflow

DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
HEALTH_PATH = "/_/health"
POLL_INTERVAL_S = 0.2
CLK_TCK = os.sysconf("SC_CLK_TCK")
SCRIPT = os.path.abspath(__file__)


# -- the worker child: one SDK Worker serving `bench` and `echo` -----------------------


@task(name="echo")
async def echo_task(ctx: TaskContext, value: Any) -> Any:
    return value


@workflow(name="bench")
async def bench_workflow(ctx: WorkflowContext, value: Any) -> Any:
    return await ctx.schedule(echo_task, value)


async def _serve_worker(args: argparse.Namespace) -> None:
    worker = Worker(
        args.server,
        tenant=args.tenant,
        token=os.environ["FLOVYN_BENCH_TOKEN"],  # not on the command line, where ps shows it
        workflows=[bench_workflow],
        tasks=[echo_task],
        max_concurrent_workflows=args.max_items,
        max_concurrent_tasks=args.max_items,
        poll_timeout=args.poll_timeout,
        name=args.name,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with worker:
        print(f"READY {worker.worker_id}", flush=True)
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)
            if os.getppid() != args.parent_pid:  # the benchmark died: do not linger
                break


def worker_child(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="throughput.py --worker-child")
    parser.add_argument("--server", required=True)
    parser.add_argument("--tenant", required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--max-items", type=int, default=10)
    parser.add_argument("--poll-timeout", type=float, default=20.0)
    parser.add_argument("--parent-pid", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s")
    asyncio.run(_serve_worker(args))
    return 0


# -- processes, temporary files and databases, all cleaned up at the end ---------------


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    log_file: IO[bytes]

    def log_text(self) -> str:
        if not self.log_file.closed:
            self.log_file.flush()
        return self.log_path.read_text(errors="replace")

    def log_tail(self, n: int = 30) -> str:
        return "\n".join(self.log_text().splitlines()[-n:])


@dataclass
class Resources:
    """What one run created; `cleanup()` undoes it and may be called more than once."""

    children: list[Child] = field(default_factory=list)
    dirs: list[Path] = field(default_factory=list)
    databases: list[tuple[str, str]] = field(default_factory=list)  # (admin url, name)

    def spawn(self, name: str, argv: list[str], log_dir: Path, env: dict[str, str]) -> Child:
        log_path = log_dir / f"{name}.log"
        log_file = log_path.open("wb")
        proc = subprocess.Popen(
            argv,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **env},
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches only us; we stop them in order
        )
        child = Child(name, proc, log_path, log_file)
        self.children.append(child)
        return child

    def stop(self, child: Child, timeout: float = 15.0) -> None:
        if child.proc.poll() is None:
            child.proc.send_signal(signal.SIGTERM)
            try:
                child.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                child.proc.kill()
                child.proc.wait()
        child.log_file.close()
        if child in self.children:
            self.children.remove(child)

    def stop_all(self) -> None:
        # Newest first: workers before the server they talk to.
        for child in reversed(list(self.children)):
            self.stop(child)

    async def drop_databases(self) -> None:
        while self.databases:
            admin_url, name = self.databases[-1]
            try:
                await drop_database(admin_url, name)
            except Exception as exc:
                print(f"warning: could not drop database {name}: {exc!r}", file=sys.stderr)
            self.databases.pop()

    def remove_dirs(self) -> None:
        while self.dirs:
            shutil.rmtree(self.dirs.pop(), ignore_errors=True)

    async def acleanup(self) -> None:
        self.stop_all()
        await self.drop_databases()
        self.remove_dirs()

    def cleanup(self) -> None:
        """Synchronous last resort (after Ctrl-C interrupted the event loop)."""
        self.stop_all()
        if self.databases:
            asyncio.run(self.drop_databases())
        self.remove_dirs()


def database_url(admin_url: str, name: str) -> str:
    parts = urlsplit(admin_url)
    return urlunsplit(parts._replace(path="/" + name))


async def create_database(admin_url: str, name: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


async def drop_database(admin_url: str, name: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# -- CPU accounting from /proc ---------------------------------------------------------


def _stat_cpu(path: str) -> float | None:
    """User + system CPU seconds from a /proc stat file, None when it cannot be read."""
    try:
        with open(path) as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    # After "pid (comm)": state is field 3, utime 14 and stime 15 (1-based).
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def process_cpu(pid: int) -> float | None:
    """CPU seconds of one process (all its threads)."""
    return _stat_cpu(f"/proc/{pid}/stat")


def postgres_cpu(database: str | None) -> dict[int, float]:
    """CPU seconds, by pid, of PostgreSQL's background processes and of the backends
    connected to `database` (other databases' backends are someone else's load)."""
    found: dict[int, float] = {}
    if database is None:
        return found
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                title = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if not title.startswith("postgres"):
            continue
        # Backends are titled "postgres: <cluster>: <user> <database> <host>(<port>) <state>".
        words = title.split()
        is_backend = any("(" in w or w == "[local]" for w in words)
        if is_backend and database not in words:
            continue
        used = _stat_cpu(f"/proc/{entry}/stat")
        if used is not None:
            found[int(entry)] = used
    return found


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of all CPUs since boot, from /proc/stat."""
    try:
        with open("/proc/stat") as f:
            values = [int(v) for v in f.readline().split()[1:]]
    except OSError:
        return 0.0, 0.0
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return float(sum(values) - idle), float(sum(values))


@dataclass
class CpuSnapshot:
    server: float | None
    server_loop: float | None  # the main thread: the event loop and all Python code
    workers: float | None
    postgres: dict[int, float]
    client: float
    machine: tuple[float, float]

    @classmethod
    def take(cls, server: Child, workers: list[Child], database: str | None) -> CpuSnapshot:
        pid = server.proc.pid
        worker_times = [process_cpu(w.proc.pid) for w in workers]
        return cls(
            server=process_cpu(pid),
            server_loop=_stat_cpu(f"/proc/{pid}/task/{pid}/stat"),
            workers=None if None in worker_times else sum(t or 0.0 for t in worker_times),
            postgres=postgres_cpu(database),
            client=time.process_time(),
            machine=machine_busy(),
        )

    def postgres_since(self, before: CpuSnapshot) -> float:
        """PostgreSQL CPU used in between (processes that exited meanwhile are not seen)."""
        return sum(t - before.postgres.get(pid, 0.0) for pid, t in self.postgres.items())


# -- talking to the server -------------------------------------------------------------


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


async def wait_workers_ready(workers: list[Child], within: float) -> None:
    """Each worker child prints READY once `Worker` has registered with the server."""
    deadline = time.monotonic() + within
    pending = list(workers)
    while pending:
        for w in list(pending):
            if "READY" in w.log_text():
                pending.remove(w)
            elif w.proc.poll() is not None:
                raise RuntimeError(f"{w.name} exited with {w.proc.returncode}:\n{w.log_tail()}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{pending[0].name} not registered:\n{pending[0].log_tail()}")
        await asyncio.sleep(0.05)


async def listed_workers(api: Api, slug: str, key: str) -> int | None:
    """How many workers GET /workers lists, None when the server has no such route."""
    status, data = await api.call("GET", f"/api/tenants/{slug}/workers", key)
    if status != 200 or not isinstance(data, dict):
        return None
    items = data.get("workers")
    return len(items) if isinstance(items, list) else None


async def count(api: Api, slug: str, key: str, status: str) -> int:
    code, data = await api.call(
        "GET",
        f"/api/tenants/{slug}/workflow-executions",
        key,
        params={"status": status, "limit": "1"},
    )
    if code != 200:
        raise RuntimeError(f"listing {status} executions answered {code}: {data}")
    return int(data["total"])


@dataclass
class TriggerResult:
    ids: list[str]
    errors: Counter[str]
    seconds: float


async def trigger_many(
    api: Api, slug: str, key: str, n: int, concurrency: int, rate: float = 0.0
) -> TriggerResult:
    """POST n triggers with up to `concurrency` requests in flight, at most `rate` per
    second when `rate` > 0 (paced, open loop); ids in completion order."""
    path = f"/api/tenants/{slug}/workflows/bench/trigger"
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
                status, data = await api.call("POST", path, key, {"input": {"n": i}})
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
    api: Api, slug: str, key: str, target: int, within: float, quiet: bool
) -> tuple[bool, int, int]:
    """Poll until `target` executions are COMPLETED; (done, completed, failed)."""
    deadline = time.monotonic() + within
    started = time.monotonic()
    last_print = started
    completed = failed = 0
    polls = 0
    while True:
        completed = await count(api, slug, key, "COMPLETED")
        if completed >= target:
            return True, completed, failed
        polls += 1
        if polls % 5 == 0:
            failed = await count(api, slug, key, "FAILED")
            if failed:
                return False, completed, failed
        now = time.monotonic()
        if now > deadline:
            return False, completed, failed
        if not quiet and now - last_print >= 2.0:
            print(f"    ... {completed}/{target} completed after {now - started:.1f}s", flush=True)
            last_print = now
        await asyncio.sleep(POLL_INTERVAL_S)


async def fetch_executions(api: Api, slug: str, key: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    offset = 0
    while True:
        code, data = await api.call(
            "GET",
            f"/api/tenants/{slug}/workflow-executions",
            key,
            params={"limit": "1000", "offset": str(offset)},
        )
        if code != 200:
            raise RuntimeError(f"listing executions answered {code}: {data}")
        page = data["workflows"]
        rows.extend(page)
        offset += len(page)
        if not page or offset >= int(data["total"]):
            return rows


_METRIC_LINE = re.compile(
    r"^(flovyn_http_requests_total|flovyn_http_request_duration_seconds_sum)\{(.*)\}\s+(\S+)$"
)
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


async def scrape_requests(api: Api) -> dict[tuple[str, str], tuple[float, float]]:
    """(method, route) -> (requests, seconds spent) from the server's /_/metrics."""
    found: dict[tuple[str, str], tuple[float, float]] = {}
    try:
        async with api.http.get(api.base + "/_/metrics") as response:
            if response.status != 200:
                return found
            text = await response.text()
    except (aiohttp.ClientError, OSError):
        return found
    for line in text.splitlines():
        match = _METRIC_LINE.match(line)
        if match is None:
            continue
        labels = dict(_LABEL.findall(match[2]))
        key = (labels.get("method", "?"), labels.get("route", "?"))
        n, secs = found.get(key, (0.0, 0.0))
        if match[1] == "flovyn_http_requests_total":
            n += float(match[3])
        else:
            secs += float(match[3])
        found[key] = (n, secs)
    return found


def request_rows(
    before: dict[tuple[str, str], tuple[float, float]],
    after: dict[tuple[str, str], tuple[float, float]],
    workflows: int,
) -> list[tuple[str, str]]:
    """Requests per workflow by route and their mean time in the server."""
    deltas = []
    for key, (n1, s1) in after.items():
        n0, s0 = before.get(key, (0.0, 0.0))
        if n1 - n0 > 0:
            deltas.append((key, n1 - n0, s1 - s0))
    if not deltas or workflows <= 0:
        return []
    deltas.sort(key=lambda d: -d[1])
    total = sum(d[1] for d in deltas)
    rows = [("HTTP requests per workflow", f"{total / workflows:7.2f}   (all routes, server-side)")]
    for (method, route), n, secs in deltas:
        short = route.replace("/api/tenants/{slug}", "") or route
        rows.append(
            (
                f"  {method} {short}",
                f"{n / workflows:7.2f}   mean {1000 * secs / n:8.2f} ms in server",
            )
        )
    return rows


async def fetch_tasks(
    api: Api, slug: str, key: str, ids: list[str], concurrency: int = 8
) -> dict[str, list[dict[str, Any]]]:
    """The tasks of each workflow in `ids` (GET .../workflow-executions/{id}/tasks)."""
    found: dict[str, list[dict[str, Any]]] = {}
    pending = iter(ids)

    async def fetcher() -> None:
        for wid in pending:
            code, data = await api.call(
                "GET", f"/api/tenants/{slug}/workflow-executions/{wid}/tasks", key
            )
            if code == 200 and isinstance(data, dict):
                found[wid] = list(data.get("tasks") or [])

    await asyncio.gather(*(fetcher() for _ in range(concurrency)))
    return found


PHASES = (
    "workflow queued -> picked up",
    "1st activation (replay+submit)",
    "task queued -> picked up",
    "task run -> completed",
    "task done -> workflow done",
)


def phase_breakdown(
    executions: dict[str, dict[str, Any]], tasks_of: dict[str, list[dict[str, Any]]]
) -> list[list[float]]:
    """Per phase, the durations (ms) between the server's timestamps of one workflow:
    created, started, task created (= scheduled), task started, task completed, completed."""
    phases: list[list[float]] = [[] for _ in PHASES]
    for wid, tasks in tasks_of.items():
        wf = executions.get(wid)
        if wf is None or len(tasks) != 1:
            continue
        task = tasks[0]
        points = [
            ms(wf["createdAt"]),
            ms(wf["startedAt"]),
            ms(task["createdAt"]),
            ms(task["startedAt"]),
            ms(task["completedAt"]),
            ms(wf["completedAt"]),
        ]
        if any(p is None for p in points):
            continue
        for i in range(len(PHASES)):
            phases[i].append((points[i + 1] or 0.0) - (points[i] or 0.0))
    return phases


def latency_text(values: list[float]) -> str:
    if not values:
        return "n/a"
    return (
        f"p50 {percentile(values, 50):7.1f}   p90 {percentile(values, 90):7.1f}   "
        f"p99 {percentile(values, 99):7.1f}   max {max(values):7.1f}  ms"
    )


def ms(value: str | None) -> float | None:
    if value is None:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1000


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


# -- profiling -------------------------------------------------------------------------


def start_py_spy(pid: int, out: Path, rate: int) -> subprocess.Popen[bytes] | None:
    exe = shutil.which("py-spy")
    if exe is None:
        print("warning: py-spy is not installed (pip install py-spy); no profile", file=sys.stderr)
        return None
    return subprocess.Popen(
        [
            exe,
            "record",
            "--pid",
            str(pid),
            "--rate",
            str(rate),
            "--format",
            "raw",
            "--output",
            str(out),
            "--gil",  # only the thread holding the GIL: Python CPU time, not waits
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )


def stop_py_spy(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is None:
        return
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc.returncode not in (0, -signal.SIGINT) and proc.stderr is not None:
        print(f"warning: py-spy: {proc.stderr.read().decode(errors='replace')}", file=sys.stderr)


_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")


def _frame_name(frame: str) -> str:
    """'claim (flovyn_server/engine/activations.py:40)' -> 'claim (.../activations.py)'."""
    match = _FRAME.match(frame.strip())
    if match is None:
        return frame.strip()
    path = re.sub(r"^.*?(?:site-packages|lib/python3\.\d+)/", "", match["file"])
    if path.startswith("/"):
        path = "/".join(path.split("/")[-3:])
    return f"{match['func']} ({path})"


def _package(frame: str) -> str:
    """'data_received (aiohttp/web_protocol.py)' -> 'aiohttp'; stdlib modules by name."""
    path = frame.rpartition(" (")[2].rstrip(")")
    head = path.split("/", 1)[0] if "/" in path else path.removesuffix(".py")
    return "asyncio" if head in ("selectors", "socket", "contextlib") else head


def report_py_spy(path: Path, top: int) -> None:
    """Self and inclusive shares per function from py-spy's collapsed stacks."""
    if not path.exists():
        print(f"  (no py-spy output at {path})")
        return
    self_counts: Counter[str] = Counter()
    incl_counts: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        samples = int(n)
        total += samples
        frames = [_frame_name(f) for f in stack.split(";")]
        frames = [f for f in frames if not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        self_counts[frames[-1]] += samples
        for name in set(frames):
            incl_counts[name] += samples
    if not total:
        print("  (py-spy recorded no samples)")
        return
    print(f"  py-spy: {total} samples holding the GIL ({path})")
    packages: Counter[str] = Counter()
    for name, n in self_counts.items():
        packages[_package(name)] += n
    print("  own time by package: " + ", ".join(
        f"{pkg} {100 * n / total:.0f}%" for pkg, n in packages.most_common(10)
    ))  # fmt: skip
    print(f"  {'self %':>7}  function")
    for name, n in self_counts.most_common(top):
        print(f"  {100 * n / total:6.1f}%  {name}")
    print(f"  {'incl %':>7}  function (inclusive, flovyn/aiohttp/db frames)")
    shown = 0
    for name, n in incl_counts.most_common():
        if any(k in name for k in ("flovyn", "aiohttp/", "asyncpg", "aiosqlite", "sqlite3")):
            print(f"  {100 * n / total:6.1f}%  {name}")
            shown += 1
            if shown >= top:
                break


def report_cprofile(path: Path, top: int) -> None:
    if not path.exists():
        print(f"  (no cProfile output at {path}; did the server exit cleanly?)")
        return
    print(f"  cProfile of the server's main thread ({path}), top {top} by own time:")
    stats = pstats.Stats(str(path))
    stats.sort_stats(pstats.SortKey.TIME).print_stats(top)
    print(f"  top {top} by cumulative time:")
    stats.sort_stats(pstats.SortKey.CUMULATIVE).print_stats(top)


# -- one store -------------------------------------------------------------------------


@dataclass
class StoreResult:
    store: str
    ok: bool
    rows: list[tuple[str, str]]
    summary: dict[str, str]
    problems: list[str]


@dataclass
class Measurement:
    """What one measured phase left: triggers, timings, CPU before and after, rows."""

    trig: TriggerResult
    wall: float
    cpu0: CpuSnapshot
    cpu1: CpuSnapshot
    executions: list[dict[str, Any]]
    tasks_of: dict[str, list[dict[str, Any]]]

    def finished(self) -> list[dict[str, Any]]:
        ours = set(self.trig.ids)
        return [
            e
            for e in self.executions
            if e["id"] in ours and e["status"] == "COMPLETED" and e["completedAt"]
        ]


def latency_rows(m: Measurement, requested: int) -> tuple[list[tuple[str, str]], dict[str, str]]:
    """Throughput and latency lines, from the server's timestamps."""
    ours = set(m.trig.ids)
    statuses = Counter(e["status"] for e in m.executions if e["id"] in ours)
    finished = m.finished()
    rows: list[tuple[str, str]] = []
    summary: dict[str, str] = {}
    if finished:
        created = [ms(e["createdAt"]) or 0.0 for e in finished]
        completed_at = [ms(e["completedAt"]) or 0.0 for e in finished]
        e2e = [c - s for s, c in zip(created, completed_at, strict=True)]
        pickup = [
            (ms(e["startedAt"]) or 0.0) - (ms(e["createdAt"]) or 0.0)
            for e in finished
            if e["startedAt"]
        ]
        span = (max(completed_at) - min(created)) / 1000
        rate = len(finished) / span if span > 0 else float("inf")
        trig = m.trig
        trig_rate = len(trig.ids) / trig.seconds if trig.seconds > 0 else float("inf")
        rows += [
            ("workflows completed", f"{len(finished)} / {requested}"),
            ("throughput (server clock)", f"{rate:8.1f} workflows/s   (span {span:.2f} s)"),
            ("throughput (client wall)", f"{len(finished) / m.wall:8.1f} workflows/s   "
             f"(first trigger -> all seen COMPLETED, {m.wall:.2f} s)"),
            ("trigger rate alone", f"{trig_rate:8.1f} triggers/s    "
             f"({len(trig.ids)} in {trig.seconds:.2f} s)"),
            ("trigger -> completion", latency_text(e2e)),
            ("trigger -> first pickup", latency_text(pickup)),
        ]  # fmt: skip
        if m.tasks_of:
            phases = phase_breakdown({e["id"]: e for e in finished}, m.tasks_of)
            rows.append((f"phases of {len(phases[0])} sampled workflows", ""))
            rows += [(f"  {name}", latency_text(v)) for name, v in zip(PHASES, phases, strict=True)]
        summary = {
            "workflows/s": f"{rate:.1f}",
            "triggers/s": f"{trig_rate:.1f}",
            "e2e p50 ms": f"{percentile(e2e, 50):.0f}",
            "e2e p99 ms": f"{percentile(e2e, 99):.0f}",
            "pickup p50 ms": f"{percentile(pickup, 50):.0f}" if pickup else "n/a",
            "pickup p99 ms": f"{percentile(pickup, 99):.0f}" if pickup else "n/a",
        }
    if set(statuses) - {"COMPLETED"}:
        rows.append(("statuses", ", ".join(f"{k} {v}" for k, v in sorted(statuses.items()))))
    return rows, summary


def cpu_rows(
    m: Measurement, store: str, workers: int, postgres: bool
) -> tuple[list[tuple[str, str]], dict[str, str]]:
    """Who used the CPU during the measured phase."""
    cpu0, cpu1, wall = m.cpu0, m.cpu1, m.wall

    def delta(before: float | None, after: float | None) -> float | None:
        return None if before is None or after is None else after - before

    def text(used: float | None) -> str:
        if used is None:
            return "n/a"
        return f"{used:7.2f} s   ({100 * used / wall:5.1f}% of one core)"

    server = delta(cpu0.server, cpu1.server)
    loop = delta(cpu0.server_loop, cpu1.server_loop)
    threads = None if server is None or loop is None else server - loop
    worker_cpu = delta(cpu0.workers, cpu1.workers)
    client = cpu1.client - cpu0.client
    pg_used = cpu1.postgres_since(cpu0)
    busy = cpu1.machine[0] - cpu0.machine[0]
    jiffies = cpu1.machine[1] - cpu0.machine[1]
    # Other load on the machine (other test runs, the kernel) skews the figures: show it.
    other = max(0.0, busy / CLK_TCK - (server or 0) - (worker_cpu or 0) - client - pg_used)
    rows = [
        ("CPU server", text(server)),
        ("  event-loop thread", text(loop)),
        ("  other threads" + (" (aiosqlite)" if store == "sqlite" else ""), text(threads)),
        (f"CPU {workers} worker(s)", text(worker_cpu)),
        *([("CPU postgres (ours + bg)", text(pg_used))] if postgres else []),
        ("CPU this client", text(client)),
        ("CPU everything else", text(other)),
        ("machine busy", f"{100 * busy / jiffies:5.1f}% of {os.cpu_count()} CPUs"
         if jiffies else "n/a"),
    ]  # fmt: skip
    summary = {"other load %": f"{100 * other / wall:.0f}"}
    done = len(m.finished())
    if done:
        for label, used in (("server", server), ("workers", worker_cpu)):
            if used is not None:
                rows.append((f"{label} CPU per workflow", f"{1000 * used / done:7.2f} ms"))
                summary[f"{label} CPU ms/wf"] = f"{1000 * used / done:.2f}"
        if postgres:
            rows.append(("postgres CPU per workflow", f"{1000 * pg_used / done:7.2f} ms"))
            summary["postgres CPU ms/wf"] = f"{1000 * pg_used / done:.2f}"
    return rows, summary


async def run_store(store: str, args: argparse.Namespace, res: Resources) -> StoreResult:
    tmp = Path(tempfile.mkdtemp(prefix=f"flovyn-bench-{store}-"))
    res.dirs.append(tmp)
    pg_name = None
    if store == "sqlite":
        db_url = f"sqlite:///{tmp / 'flovyn.db'}"
        db_label = "sqlite (WAL file in a temp dir)"
    else:
        pg_name = "flovyn_bench_" + secrets.token_hex(6)
        await create_database(args.postgres_url, pg_name)
        res.databases.append((args.postgres_url, pg_name))
        db_url = database_url(args.postgres_url, pg_name)
        db_label = f"postgres database {pg_name}"

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    admin_key = "bench-admin-" + secrets.token_hex(16)
    profile_dir: Path = args.profile_dir
    prof_path = profile_dir / f"server-{store}.prof"
    spy_path = profile_dir / f"server-{store}.pyspy.txt"
    server_argv = [sys.executable]
    if args.profile == "cprofile":
        server_argv += ["-m", "cProfile", "-o", str(prof_path)]
    server_argv += [
        "-m", "flovyn_tui.cli", "server", "--host", "127.0.0.1", "--port", str(port),
        "--data-dir", str(tmp / "data"), "--database", db_url, "--log-level", "warning",
    ]  # fmt: skip
    server = res.spawn(f"server-{store}", server_argv, tmp, {"FLOVYN_ADMIN_KEY": admin_key})
    print(f"\n== {store}: server pid {server.proc.pid} on {base} ({db_label})", flush=True)

    problems: list[str] = []
    connector = aiohttp.TCPConnector(limit=args.concurrency + 8)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
        api = Api(http, base)
        await wait_healthy(api, server, 60)
        slug = "bench-" + secrets.token_hex(4)
        await api.ok("POST", "/api/tenants", admin_key, {"name": "Benchmark", "slug": slug})
        made = await api.ok(
            "POST", f"/api/tenants/{slug}/api-keys", admin_key, {"displayName": "bench"}
        )
        api_key = str(made["key"])
        made = await api.ok(
            "POST", f"/api/tenants/{slug}/worker-tokens", admin_key, {"displayName": "bench"}
        )
        token = str(made["token"])

        workers = []
        for i in range(args.workers):
            wname = f"worker-{store}-{i + 1}"
            argv = [
                sys.executable, SCRIPT, "--worker-child",
                "--server", base, "--tenant", slug, "--name", wname,
                "--max-items", str(args.max_items), "--poll-timeout", str(args.poll_timeout),
                "--parent-pid", str(os.getpid()),
            ]  # fmt: skip
            workers.append(res.spawn(wname, argv, tmp, {"FLOVYN_BENCH_TOKEN": token}))
        await wait_workers_ready(workers, 60)
        listed = await listed_workers(api, slug, api_key)
        print(
            f"   {len(workers)} workers registered"
            + (f" (GET /workers lists {listed})" if listed is not None else ""),
            flush=True,
        )

        if args.warmup:
            warm = await trigger_many(api, slug, api_key, args.warmup, args.concurrency)
            done, _, _ = await wait_completed(api, slug, api_key, len(warm.ids), 60, True)
            if not done or warm.errors:
                raise RuntimeError(
                    f"warm-up failed ({dict(warm.errors)}):\n{server.log_tail()}\n"
                    + "\n".join(w.log_tail(10) for w in workers)
                )
            print(f"   warm-up: {args.warmup} workflows completed", flush=True)
        baseline = await count(api, slug, api_key, "COMPLETED")

        spy = None
        if args.profile == "py-spy":
            spy = start_py_spy(server.proc.pid, spy_path, args.py_spy_rate)
            await asyncio.sleep(0.5)  # let it attach before the load starts
        requests0 = await scrape_requests(api)
        cpu0 = CpuSnapshot.take(server, workers, pg_name)
        wall0 = time.perf_counter()
        pace = f"{args.rate:g}/s" if args.rate > 0 else "as fast as possible"
        print(
            f"   triggering {args.workflows} workflows ({pace}, {args.concurrency} in flight)",
            flush=True,
        )
        trig = await trigger_many(api, slug, api_key, args.workflows, args.concurrency, args.rate)
        if trig.errors:
            problems.append(f"{sum(trig.errors.values())} triggers failed: {dict(trig.errors)}")
        done, completed, failed = await wait_completed(
            api, slug, api_key, baseline + len(trig.ids), args.timeout, args.quiet
        )
        wall = time.perf_counter() - wall0
        cpu1 = CpuSnapshot.take(server, workers, pg_name)
        requests1 = await scrape_requests(api)
        stop_py_spy(spy)
        if not done:
            problems.append(
                f"only {completed - baseline}/{len(trig.ids)} workflows completed "
                + (f"({failed} FAILED)" if failed else f"within {args.timeout:g}s")
            )
        executions = await fetch_executions(api, slug, api_key)
        done_ids = sorted(
            (e for e in executions if e["id"] in set(trig.ids) and e["status"] == "COMPLETED"),
            key=lambda e: e["createdAt"],
        )
        step = max(1, len(done_ids) // args.phases) if args.phases else 0
        sample = [e["id"] for e in done_ids[::step][: args.phases]] if step else []
        tasks_of = await fetch_tasks(api, slug, api_key, sample)

    # Stop the server now so that a cProfile run writes its file.
    for w in workers:
        res.stop(w)
    res.stop(server)

    m = Measurement(trig, wall, cpu0, cpu1, executions, tasks_of)
    rows, summary = latency_rows(m, args.workflows)
    more, cpu_summary = cpu_rows(m, store, args.workers, pg_name is not None)
    rows += more
    summary.update(cpu_summary)
    rows += request_rows(requests0, requests1, len(trig.ids))
    print(f"\n   {store}: {args.workflows} workflows, {args.workers} workers, "
          f"max-items {args.max_items}, concurrency {args.concurrency}")  # fmt: skip
    width = max(len(label) for label, _ in rows)
    print("   " + "-" * (width + 60))
    for label, value in rows:
        print(f"   {label:<{width}}  {value}")
    print("   " + "-" * (width + 60))
    for problem in problems:
        print(f"   PROBLEM: {problem}")
    if problems:
        print(f"   server log tail:\n{server.log_tail(15)}")

    if args.profile == "py-spy":
        report_py_spy(spy_path, args.profile_top)
    elif args.profile == "cprofile":
        report_cprofile(prof_path, args.profile_top)
    return StoreResult(store, not problems, rows, summary, problems)


# -- main ------------------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Throughput of a Flovyn server with real SDK workers (one task per workflow).",
    )
    parser.add_argument("--workflows", type=int, default=2000, help="workflows to trigger")
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    parser.add_argument("--store", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("FLOVYN_TEST_POSTGRES_URL") or DEFAULT_PG_URL,
        help="admin URL; a fresh flovyn_bench_<hex> database is created and dropped",
    )
    parser.add_argument("--concurrency", type=int, default=32, help="triggers in flight")
    parser.add_argument(
        "--rate",
        type=float,
        default=0.0,
        help="pace triggers at this many per second (0: as fast as possible); below the "
        "server's capacity this measures pickup latency rather than queueing",
    )
    parser.add_argument(
        "--max-items",
        type=int,
        default=10,
        help="each worker's max_concurrent_workflows and max_concurrent_tasks; the SDK "
        "asks for as many items per poll as it has free slots, so this is also the most "
        "items per poll (server cap 100). Default 10, the SDK's default",
    )
    parser.add_argument("--poll-timeout", type=float, default=20.0, help="worker long-poll seconds")
    parser.add_argument("--warmup", type=int, default=20, help="workflows run before measuring")
    parser.add_argument(
        "--phases",
        type=int,
        default=200,
        help="break the latency of this many sampled workflows into phases from their "
        "task's timestamps (one GET each; 0: skip)",
    )
    parser.add_argument(
        "--timeout", type=float, default=300.0, help="seconds to wait for all to complete"
    )
    parser.add_argument(
        "--profile",
        choices=["py-spy", "cprofile"],
        default=None,
        help="profile the server: py-spy (if installed) attaches for the measured phase "
        "and samples whichever thread holds the GIL (low overhead); cprofile runs the "
        "whole server under cProfile (main thread only, slows it down)",
    )
    parser.add_argument(
        "--profile-dir",
        default=str(Path(tempfile.gettempdir()) / "flovyn-bench-profiles"),
        help="where profiles are written (default: %(default)s)",
    )
    parser.add_argument("--profile-top", type=int, default=25, help="functions to list")
    parser.add_argument("--py-spy-rate", type=int, default=250, help="samples per second")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    args = parser.parse_args(argv)
    args.profile_dir = Path(args.profile_dir).resolve()
    if args.workflows < 1 or args.workers < 1 or args.concurrency < 1 or args.max_items < 1:
        parser.error("--workflows, --workers, --concurrency and --max-items must be >= 1")
    return args


async def amain(args: argparse.Namespace, res: Resources) -> int:
    stores = ["sqlite", "postgres"] if args.store == "both" else [args.store]
    print(
        f"flovyn throughput: {args.workflows} workflows x (1 workflow + 1 task), "
        f"{args.workers} worker process(es), max-items {args.max_items}, poll timeout "
        f"{args.poll_timeout:g}s, trigger concurrency {args.concurrency}, warm-up "
        f"{args.warmup}; {os.cpu_count()} CPUs; Python {sys.version.split()[0]}"
    )
    results: list[StoreResult] = []
    for store in stores:
        try:
            results.append(await run_store(store, args, res))
        except Exception as exc:
            print(f"\n== {store}: FAILED: {exc}", file=sys.stderr)
            results.append(StoreResult(store, False, [], {}, [str(exc)]))
        finally:
            await res.acleanup()
    if len(results) > 1:
        keys = list(dict.fromkeys(k for r in results for k in r.summary))
        width = max(len(k) for k in [*keys, "summary"])
        print(f"\n   {'summary':<{width}}" + "".join(f"{r.store:>12}" for r in results))
        for k in keys:
            print(f"   {k:<{width}}" + "".join(f"{r.summary.get(k, '-'):>12}" for r in results))
    return 0 if all(r.ok for r in results) else 1


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--worker-child"]:
        return worker_child(argv[1:])
    args = parse_args(argv)
    if args.profile:
        args.profile_dir.mkdir(parents=True, exist_ok=True)
    res = Resources()
    try:
        return asyncio.run(amain(args, res))
    except KeyboardInterrupt:
        print("\ninterrupted; cleaning up", file=sys.stderr)
        return 130
    finally:
        res.cleanup()


if __name__ == "__main__":
    sys.exit(main())
