"""An execution as the detail screen draws it: a tree of nodes (the execution, its
tasks with their attempts, timers, promises, signals and child executions), each with
its status and times, built from what the REST API answers and rebuilt as the
streams say something changed."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from flovyn_tui.output import parse_time

GROUP_AT = 3  # this many tasks of one kind are grouped under a count


@dataclass
class Attempt:
    number: int
    started: datetime | None
    finished: datetime | None
    status: str
    error: str | None = None
    worker: str | None = None


@dataclass
class Node:
    key: str
    kind: str  # workflow | task | timer | promise | signal | group
    label: str
    status: str
    started: datetime | None = None
    finished: datetime | None = None
    attempts: list[Attempt] = field(default_factory=list)
    retry_at: datetime | None = None
    progress: float | None = None
    detail: dict[str, Any] = field(default_factory=dict)  # input, output, error, ...
    children: list[Node] = field(default_factory=list)
    workflow_id: str = ""  # the execution it belongs to (itself for a workflow)
    loaded: bool = True  # a child execution whose tree is not read yet

    @property
    def running(self) -> bool:
        return self.status in ("RUNNING", "PENDING", "WAITING") and self.finished is None

    def walk(self) -> list[Node]:
        found = [self]
        for child in self.children:
            found += child.walk()
        return found


def workflow_node(wf: dict[str, Any]) -> Node:
    return Node(
        key=wf["id"],
        kind="workflow",
        label=f"{wf['kind']} {wf['id'][:8]}",
        status=wf["status"],
        started=parse_time(wf.get("startedAt") or wf.get("createdAt")),
        finished=parse_time(wf.get("completedAt")),
        detail={k: wf.get(k) for k in ("kind", "input", "output", "error") if k in wf},
        workflow_id=wf["id"],
        attempts=[],
    )


def task_node(task: dict[str, Any], attempts: list[dict[str, Any]] | None) -> Node:
    node = Node(
        key=task["id"],
        kind="task",
        label=task["kind"],
        status=task["status"],
        started=parse_time(task["startedAt"]),
        finished=parse_time(task["completedAt"]),
        retry_at=parse_time(task["retryAt"]),
        progress=task["progress"],
        detail={k: task.get(k) for k in ("input", "output", "error")},
        workflow_id=task["workflowExecutionId"] or "",
    )
    node.detail["executionCount"] = task["executionCount"]
    if attempts is not None:
        node.attempts = [
            Attempt(
                a["attempt"],
                parse_time(a["startedAt"]),
                parse_time(a["finishedAt"]),
                a["status"],
                a.get("error"),
                a.get("workerId"),
            )
            for a in attempts
        ]
    elif node.started is not None:  # one attempt: the task's own times tell it
        status = task["status"] if task["status"] != "PENDING" else "RUNNING"
        node.attempts = [Attempt(1, node.started, node.finished, status, task["error"])]
    return node


def _events_nodes(workflow_id: str, events: list[dict[str, Any]]) -> list[Node]:
    """Timers, promises and signals, from the history."""
    nodes: dict[str, Node] = {}
    order: list[str] = []
    for e in events:
        data, at, kind = e.get("data") or {}, parse_time(e["timestamp"]), e["eventType"]
        if kind == "TIMER_STARTED":
            key = f"timer:{data.get('timerId')}"
            seconds = (data.get("durationMs") or 0) / 1000
            nodes[key] = Node(key, "timer", f"timer {seconds:g}s", "WAITING", at,
                              workflow_id=workflow_id, detail=dict(data))  # fmt: skip
            order.append(key)
        elif kind in ("TIMER_FIRED", "TIMER_CANCELLED"):
            node = nodes.get(f"timer:{data.get('timerId')}")
            if node is not None:
                node.finished = at
                node.status = "COMPLETED" if kind == "TIMER_FIRED" else "CANCELLED"
        elif kind == "PROMISE_CREATED":
            key = f"promise:{data.get('promiseId')}"
            nodes[key] = Node(key, "promise", f"promise {data.get('promiseName')}", "WAITING", at,
                              workflow_id=workflow_id, detail=dict(data))  # fmt: skip
            order.append(key)
        elif kind in ("PROMISE_RESOLVED", "PROMISE_REJECTED", "PROMISE_TIMEOUT"):
            node = nodes.get(f"promise:{data.get('promiseId')}")
            if node is not None:
                node.finished = at
                node.status = "COMPLETED" if kind == "PROMISE_RESOLVED" else "FAILED"
                node.detail.update(data)
        elif kind == "SIGNAL_RECEIVED":
            key = f"signal:{e['sequence']}"
            nodes[key] = Node(key, "signal", f"signal {data.get('signalName')}", "COMPLETED",
                              at, at, workflow_id=workflow_id, detail=dict(data))  # fmt: skip
            order.append(key)
    return [nodes[k] for k in order]


def build(
    wf: dict[str, Any],
    tasks: list[dict[str, Any]],
    attempts: dict[str, list[dict[str, Any]]],
    events: list[dict[str, Any]],
    children: list[Node],
) -> Node:
    """One execution's node: its tasks (repeated kinds grouped), timers, promises,
    signals and children, in the order they began."""
    root = workflow_node(wf)
    items = [task_node(t, attempts.get(t["id"])) for t in tasks]
    counts = Counter(n.label for n in items)
    grouped: list[Node] = []
    groups: dict[str, Node] = {}
    for n in items:
        if counts[n.label] < GROUP_AT:
            grouped.append(n)
            continue
        group = groups.get(n.label)
        if group is None:
            group = groups[n.label] = Node(f"group:{wf['id']}:{n.label}", "group",
                                           f"{n.label} [{counts[n.label]}]", "PENDING",
                                           workflow_id=wf["id"])  # fmt: skip
            grouped.append(group)
        n.label = f"{n.label}[{len(group.children)}]"
        group.children.append(n)
    for group in groups.values():
        summarize(group)
    others = _events_nodes(wf["id"], events) + children
    merged = grouped + others
    merged.sort(key=lambda n: (n.started is None, n.started.timestamp() if n.started else 0.0))
    root.children = merged
    return root


def summarize(group: Node) -> None:
    """A group's (or a collapsed execution's) status and span from its members."""
    members = group.children
    starts = [m.started for m in members if m.started]
    ends = [m.finished for m in members if m.finished]
    group.started = min(starts) if starts else None
    group.finished = max(ends) if ends and len(ends) == len(members) else None
    statuses = {m.status for m in members}
    for status in ("FAILED", "RUNNING", "WAITING", "PENDING", "CANCELLED"):
        if status in statuses:
            group.status = status
            break
    else:
        group.status = "COMPLETED"
