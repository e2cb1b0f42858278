"""``@task`` and ``@workflow``: turn functions or classes into registered definitions."""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar, overload

from pydantic import BaseModel

from .serde import model_type, resolved_hints, to_millis, to_seconds

T = TypeVar("T")

_TASK_ATTR = "__flovyn_task__"
_WORKFLOW_ATTR = "__flovyn_workflow__"


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how fast the server retries a failing task.

    Intervals are ``timedelta`` or seconds. ``max_attempts`` counts the first try,
    so the wire's ``maxRetries`` is ``max_attempts - 1``.
    """

    max_attempts: int = 3
    initial_interval: timedelta | float = 1.0
    backoff_coefficient: float = 2.0
    max_interval: timedelta | float = 60.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("RetryPolicy.max_attempts must be at least 1")
        if self.backoff_coefficient < 1:
            raise ValueError("RetryPolicy.backoff_coefficient must be at least 1")

    @property
    def max_retries(self) -> int:
        """Retries after the first attempt (the wire's ``maxRetries``)."""
        return self.max_attempts - 1

    def to_wire(self) -> dict[str, Any]:
        """The ``retryPolicy`` object of a ``SCHEDULE_TASK`` command."""
        return {
            "initialIntervalMs": to_millis(self.initial_interval),
            "backoffCoefficient": self.backoff_coefficient,
            "maxIntervalMs": to_millis(self.max_interval),
        }

    def to_registration(self) -> dict[str, Any]:
        """The ``retryPolicy`` object of a task capability sent on register."""
        return {"maxAttempts": self.max_attempts, **self.to_wire()}


@dataclass(frozen=True)
class Handler:
    """How to call user code: a function ``f(ctx, input)`` or a class with ``run``."""

    target: Any
    is_class: bool
    is_async: bool
    takes_input: bool
    input_type: type[BaseModel] | None
    output_type: type[BaseModel] | None

    @classmethod
    def of(cls, target: Any) -> Handler:
        """Inspect ``target`` (an async function, or a class with ``async def run``)."""
        is_class = inspect.isclass(target)
        fn = getattr(target, "run", None) if is_class else target
        if not callable(fn):
            raise TypeError(f"{target!r} must be a function or a class with a run() method")
        params = list(inspect.signature(fn).parameters.values())
        if is_class:
            params = params[1:]  # self
        if not params:
            raise TypeError(f"{target!r} must accept a context argument")
        hints = resolved_hints(fn)
        input_type = model_type(hints.get(params[1].name)) if len(params) > 1 else None
        return cls(
            target=target,
            is_class=is_class,
            is_async=inspect.iscoroutinefunction(fn),
            takes_input=len(params) > 1,
            input_type=input_type,
            output_type=model_type(hints.get("return")),
        )

    def parse_input(self, raw: Any) -> Any:
        """Validate the JSON input into the declared pydantic model, if any."""
        if self.input_type is None or isinstance(raw, self.input_type):
            return raw
        return self.input_type.model_validate(raw)

    async def invoke(self, ctx: Any, raw_input: Any, *, sync_in_thread: bool = False) -> Any:
        """Call the user code (a fresh instance per call for classes) and await it.

        With ``sync_in_thread`` (tasks), a plain ``def`` runs in a thread so that
        it does not block the worker's loop.
        """
        fn = self.target().run if self.is_class else self.target
        args = [ctx, self.parse_input(raw_input)] if self.takes_input else [ctx]
        if sync_in_thread and not self.is_async:
            return await asyncio.to_thread(functools.partial(fn, *args))
        result = fn(*args)
        if inspect.isawaitable(result):
            result = await result
        return result

    def schemas(self) -> dict[str, Any]:
        """JSON schemas of the declared input and output models (None when untyped)."""
        return {
            "inputSchema": self.input_type.model_json_schema() if self.input_type else None,
            "outputSchema": self.output_type.model_json_schema() if self.output_type else None,
        }


def _describe(target: Any, description: str | None) -> str | None:
    if description is not None:
        return description
    doc = inspect.getdoc(target)
    return doc.strip().splitlines()[0] if doc else None


@dataclass(frozen=True)
class TaskDefinition:
    """A task kind this process can run, as built by ``@task``."""

    kind: str
    handler: Handler
    retry_policy: RetryPolicy | None = None
    timeout: float | None = None
    description: str | None = None

    def to_registration(self) -> dict[str, Any]:
        """The task capability sent in ``POST .../worker/register``."""
        policy = self.retry_policy or RetryPolicy()
        return {
            "kind": self.kind,
            "name": self.kind,
            "description": self.description,
            "retryPolicy": policy.to_registration(),
            "timeoutMs": to_millis(self.timeout),
            **self.handler.schemas(),
        }


@dataclass(frozen=True)
class WorkflowDefinition:
    """A workflow kind this process can run, as built by ``@workflow``."""

    kind: str
    handler: Handler
    description: str | None = None
    version: str = "1"

    def to_registration(self) -> dict[str, Any]:
        """The workflow capability sent in ``POST .../worker/register``."""
        return {
            "kind": self.kind,
            "name": self.kind,
            "description": self.description,
            "tags": [],
            "timeoutSeconds": None,
            "cancellable": True,
            "version": self.version,
            **self.handler.schemas(),
        }


@overload
def task(fn: T, /) -> T: ...


@overload
def task(
    *,
    name: str | None = None,
    retry_policy: RetryPolicy | None = None,
    timeout: timedelta | float | None = None,
    description: str | None = None,
) -> Callable[[T], T]: ...


def task(
    fn: Any = None,
    /,
    *,
    name: str | None = None,
    retry_policy: RetryPolicy | None = None,
    timeout: timedelta | float | None = None,
    description: str | None = None,
) -> Any:
    """Declare a task: ``async def f(ctx, input)`` or a class with ``async def run``.

    The decorated object is returned unchanged (still callable) and serves as the
    task's identifier in ``ctx.schedule(...)``. ``name`` (the kind) defaults to the
    function or class name; ``timeout`` is a ``timedelta`` or seconds.
    """

    def wrap(target: Any) -> Any:
        definition = TaskDefinition(
            kind=name or target.__name__,
            handler=Handler.of(target),
            retry_policy=retry_policy,
            timeout=to_seconds(timeout),
            description=_describe(target, description),
        )
        setattr(target, _TASK_ATTR, definition)
        return target

    return wrap(fn) if fn is not None else wrap


@overload
def workflow(fn: T, /) -> T: ...


@overload
def workflow(
    *, name: str | None = None, description: str | None = None, version: str = "1"
) -> Callable[[T], T]: ...


def workflow(
    fn: Any = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    version: str = "1",
) -> Any:
    """Declare a workflow: ``async def f(ctx, input)`` or a class with ``async def run``.

    Workflow code must be deterministic: every side effect goes through the
    ``WorkflowContext`` it receives. The decorated object is returned unchanged and
    identifies the workflow in ``client.start_workflow(...)`` and
    ``ctx.schedule_workflow(...)``.
    """

    def wrap(target: Any) -> Any:
        definition = WorkflowDefinition(
            kind=name or target.__name__,
            handler=Handler.of(target),
            description=_describe(target, description),
            version=version,
        )
        setattr(target, _WORKFLOW_ATTR, definition)
        return target

    return wrap(fn) if fn is not None else wrap


def task_definition(obj: Any) -> TaskDefinition | None:
    """The ``TaskDefinition`` behind a ``@task`` object (or the definition itself)."""
    if isinstance(obj, TaskDefinition):
        return obj
    found = getattr(obj, _TASK_ATTR, None)
    return found if isinstance(found, TaskDefinition) else None


def workflow_definition(obj: Any) -> WorkflowDefinition | None:
    """The ``WorkflowDefinition`` behind a ``@workflow`` object (or the definition itself)."""
    if isinstance(obj, WorkflowDefinition):
        return obj
    found = getattr(obj, _WORKFLOW_ATTR, None)
    return found if isinstance(found, WorkflowDefinition) else None


def task_kind(obj: Any) -> tuple[str, TaskDefinition | None]:
    """Resolve a ``@task`` object or a kind string to ``(kind, definition or None)``."""
    if isinstance(obj, str):
        return obj, None
    definition = task_definition(obj)
    if definition is None:
        raise TypeError(f"{obj!r} is neither a task kind string nor decorated with @task")
    return definition.kind, definition


def workflow_kind(obj: Any) -> tuple[str, WorkflowDefinition | None]:
    """Resolve a ``@workflow`` object or a kind string to ``(kind, definition or None)``."""
    if isinstance(obj, str):
        return obj, None
    definition = workflow_definition(obj)
    if definition is None:
        raise TypeError(f"{obj!r} is neither a workflow kind string nor decorated with @workflow")
    return definition.kind, definition
