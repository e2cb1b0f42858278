"""What a run is measured by: the executions and tasks the server recorded, its request
counters from /_/metrics, CPU seconds from /proc, and percentiles of the latencies."""

from __future__ import annotations

import asyncio
import math
import os
import re
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import aiohttp

from .client import Api, Tenant, list_executions
from .processes import Child

CLK_TCK = os.sysconf("SC_CLK_TCK")

# -- executions and tasks, with the server's timestamps ----------------------------------


async def fetch_executions(tenant: Tenant) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    offset = 0
    while True:
        data = await list_executions(tenant, {"limit": "1000", "offset": str(offset)})
        page = data["workflows"]
        rows.extend(page)
        offset += len(page)
        if not page or offset >= int(data["total"]):
            return rows


def completed_of(executions: list[dict[str, Any]], ids: list[str]) -> list[dict[str, Any]]:
    """The executions of `ids` that are COMPLETED, in the order they were listed."""
    ours = set(ids)
    return [
        e for e in executions if e["id"] in ours and e["status"] == "COMPLETED" and e["completedAt"]
    ]


def phase_sample(finished: list[dict[str, Any]], n: int) -> list[str]:
    """Ids of up to `n` executions spread evenly over their creation order."""
    if n <= 0:
        return []
    ordered = sorted(finished, key=lambda e: e["createdAt"])
    return [e["id"] for e in ordered[:: max(1, len(ordered) // n)][:n]]


async def fetch_tasks(
    tenant: Tenant, ids: list[str], concurrency: int = 8
) -> dict[str, list[dict[str, Any]]]:
    """The tasks of each workflow in `ids` (GET .../workflow-executions/{id}/tasks)."""
    found: dict[str, list[dict[str, Any]]] = {}
    pending = iter(ids)

    async def fetcher() -> None:
        for wid in pending:
            code, data = await tenant.call("GET", f"/workflow-executions/{wid}/tasks")
            if code == 200 and isinstance(data, dict):
                found[wid] = list(data.get("tasks") or [])

    await asyncio.gather(*(fetcher() for _ in range(concurrency)))
    return found


# -- latencies ---------------------------------------------------------------------------

PHASES = (
    "workflow queued -> picked up",
    "1st activation (replay+submit)",
    "task queued -> picked up",
    "task run -> completed",
    "task done -> workflow done",
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


def latency_text(values: list[float]) -> str:
    if not values:
        return "n/a"
    return (
        f"p50 {percentile(values, 50):7.1f}   p90 {percentile(values, 90):7.1f}   "
        f"p99 {percentile(values, 99):7.1f}   max {max(values):7.1f}  ms"
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


# -- HTTP requests, from the server's /_/metrics -----------------------------------------

RequestCounts = dict[tuple[str, str], tuple[float, float]]  # (method, route) -> (n, seconds)

_METRIC_LINE = re.compile(
    r"^(flovyn_http_requests_total|flovyn_http_request_duration_seconds_sum)\{(.*)\}\s+(\S+)$"
)
# Shared write transactions: kept as the pseudo-route GROUP_COMMIT (count, operations).
_GROUP_LINE = re.compile(r"^flovyn_group_commit_operations_(count|sum)\s+(\S+)$")
GROUP_COMMIT = ("", "GROUP_COMMIT")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


async def scrape_requests(api: Api) -> RequestCounts:
    """(method, route) -> (requests, seconds spent) from the server's /_/metrics."""
    found: RequestCounts = {}
    try:
        async with api.http.get(api.base + "/_/metrics") as response:
            if response.status != 200:
                return found
            text = await response.text()
    except (aiohttp.ClientError, OSError):
        return found
    for line in text.splitlines():
        group = _GROUP_LINE.match(line)
        if group is not None:
            n, ops = found.get(GROUP_COMMIT, (0.0, 0.0))
            value = float(group[2])
            found[GROUP_COMMIT] = (value, ops) if group[1] == "count" else (n, value)
            continue
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


# -- CPU accounting from /proc -----------------------------------------------------------


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
        used = process_cpu(int(entry))
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
