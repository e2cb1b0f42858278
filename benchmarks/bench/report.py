"""The table of one store: throughput, latencies, CPU and HTTP requests, each as
(label, value) rows, plus the few figures the final summary compares across stores."""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass
from typing import Any

from .client import TriggerResult
from .measure import (
    CLK_TCK,
    GROUP_COMMIT,
    PHASES,
    CpuSnapshot,
    RequestCounts,
    completed_of,
    latency_text,
    ms,
    percentile,
    phase_breakdown,
)

Rows = list[tuple[str, str]]


@dataclass
class Measurement:
    """What one measured phase left: triggers, timings, CPU and requests before and after,
    the executions and the tasks of the sampled ones."""

    trig: TriggerResult
    wall: float
    cpu0: CpuSnapshot
    cpu1: CpuSnapshot
    requests0: RequestCounts
    requests1: RequestCounts
    executions: list[dict[str, Any]]
    tasks_of: dict[str, list[dict[str, Any]]]

    def finished(self) -> list[dict[str, Any]]:
        return completed_of(self.executions, self.trig.ids)


def latency_rows(m: Measurement, requested: int) -> tuple[Rows, dict[str, str]]:
    """Throughput and latency lines, from the server's timestamps."""
    ours = set(m.trig.ids)
    statuses = Counter(e["status"] for e in m.executions if e["id"] in ours)
    finished = m.finished()
    rows: Rows = []
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
) -> tuple[Rows, dict[str, str]]:
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


def request_rows(m: Measurement) -> Rows:
    """Requests per workflow by route and their mean time in the server."""
    workflows = len(m.trig.ids)
    deltas = []
    for key, (n1, s1) in m.requests1.items():
        n0, s0 = m.requests0.get(key, (0.0, 0.0))
        if n1 - n0 > 0:
            deltas.append((key, n1 - n0, s1 - s0))
    if not deltas or workflows <= 0:
        return []
    groups = [d for d in deltas if d[0] == GROUP_COMMIT]
    deltas = [d for d in deltas if d[0] != GROUP_COMMIT]
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
    for _, transactions, operations in groups:
        rows.append(
            (
                "write transactions per workflow",
                f"{transactions / workflows:7.2f}   ({operations / transactions:.1f} "
                "triggers/submits/completions each, group commit)",
            )
        )
    return rows


def store_rows(
    m: Measurement, store: str, requested: int, workers: int, postgres: bool
) -> tuple[Rows, dict[str, str]]:
    """All rows of one store's table and its figures for the summary."""
    rows, summary = latency_rows(m, requested)
    more, cpu_summary = cpu_rows(m, store, workers, postgres)
    summary.update(cpu_summary)
    return [*rows, *more, *request_rows(m)], summary


def print_table(rows: Rows) -> None:
    width = max(len(label) for label, _ in rows)
    print("   " + "-" * (width + 60))
    for label, value in rows:
        print(f"   {label:<{width}}  {value}")
    print("   " + "-" * (width + 60))
