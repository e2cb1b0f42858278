"""Prometheus metrics: one registry for the process, served at /_/metrics."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

REQUESTS = Counter(
    "flovyn_http_requests_total",
    "HTTP requests by route and status",
    ["method", "route", "status"],
    registry=REGISTRY,
)
REQUEST_SECONDS = Histogram(
    "flovyn_http_request_duration_seconds",
    "HTTP request duration by route",
    ["method", "route"],
    registry=REGISTRY,
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10, 60),
)
WORKFLOWS = Counter(
    "flovyn_workflows_total",
    "Workflow executions by outcome (triggered, completed, failed, cancelled)",
    ["outcome"],
    registry=REGISTRY,
)
EXECUTIONS_REMOVED = Counter(
    "flovyn_executions_removed_total",
    "Finished workflow executions removed past their retention (children included)",
    registry=REGISTRY,
)
TASKS = Counter(
    "flovyn_tasks_total",
    "Task executions by outcome (created, completed, failed, retried, cancelled)",
    ["outcome"],
    registry=REGISTRY,
)
EAGER_HANDOVERS = Counter(
    "flovyn_eager_handovers_total",
    "Work handed straight to the worker whose request created it (task, activation)",
    ["work"],
    registry=REGISTRY,
)
BATCHED_OPERATIONS = Counter(
    "flovyn_batched_operations_total",
    "Worker results that came in a batch request, by type and answer status",
    ["type", "status"],
    registry=REGISTRY,
)
GROUP_COMMIT_SIZE = Histogram(
    "flovyn_group_commit_operations",
    "Write operations (triggers, submits, task completions) per shared transaction",
    registry=REGISTRY,
    buckets=(1, 2, 4, 8, 16, 32, 64),
)
IDEMPOTENCY_HITS = Counter(
    "flovyn_idempotency_hits_total",
    "Requests answered from an existing idempotency key",
    registry=REGISTRY,
)
QUEUE_DEPTH = Gauge(
    "flovyn_queue_depth",
    "Pending items by kind of work (workflow, task)",
    ["work"],
    registry=REGISTRY,
)
SSE_SUBSCRIBERS = Gauge(
    "flovyn_sse_subscribers",
    "Open Server-Sent Event streams by kind of stream",
    ["stream"],
    registry=REGISTRY,
)
SSE_EVENTS = Counter(
    "flovyn_sse_events_sent_total",
    "Events sent on Server-Sent Event streams, by kind of stream",
    ["stream"],
    registry=REGISTRY,
)
SSE_DROPPED = Counter(
    "flovyn_sse_slow_clients_dropped_total",
    "Streams ended because their client read too slowly (it resumes with Last-Event-ID)",
    registry=REGISTRY,
)
WAITING_POLLS = Gauge(
    "flovyn_waiting_polls",
    "Worker long-polls currently held open",
    registry=REGISTRY,
)


@lru_cache(maxsize=4096)
def labelled(metric: Any, *labels: str) -> Any:
    """The child of `metric` for `labels`, looked up once: prometheus-client's
    `.labels()` costs more than the count itself, and these run on every request."""
    return metric.labels(*labels)
