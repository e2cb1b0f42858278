"""JSON conversion shared by the worker, the replay engine and the client."""

from __future__ import annotations

import typing
from datetime import timedelta
from typing import Any

import orjson
from pydantic import BaseModel


def _default(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, (set, frozenset)):
        return list(value)
    raise TypeError(f"value of type {type(value).__name__} is not JSON serializable")


def dumps(value: Any) -> bytes:
    """Encode ``value`` (JSON values, pydantic models, datetimes, UUIDs) as JSON bytes."""
    return orjson.dumps(value, default=_default)


def loads(data: bytes | str) -> Any:
    """Decode JSON bytes."""
    return orjson.loads(data)


def to_jsonable(value: Any) -> Any:
    """Return ``value`` as plain JSON values (dict, list, str, int, float, bool, None).

    Round-tripping through the encoder means a workflow sees exactly the value a
    replay will later read back from the history, and unserializable values fail
    where they are produced rather than at submit time.
    """
    if isinstance(value, int) and not -(2**63) <= value < 2**64:
        raise TypeError(f"integer {value} is beyond 64 bits: JSON values cannot hold it")
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return orjson.loads(dumps(value))


def to_seconds(value: timedelta | float | int | None) -> float | None:
    """Accept a ``timedelta`` or a number of seconds."""
    if value is None:
        return None
    if isinstance(value, timedelta):
        return value.total_seconds()
    return float(value)


def to_millis(value: timedelta | float | int | None) -> int | None:
    """Accept a ``timedelta`` or a number of seconds; return whole milliseconds."""
    seconds = to_seconds(value)
    return None if seconds is None else max(0, round(seconds * 1000))


def model_type(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model class an annotation names, or None."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def resolved_hints(fn: Any) -> dict[str, Any]:
    """Type hints of ``fn`` with string annotations resolved where possible."""
    try:
        return typing.get_type_hints(fn)
    except Exception:
        # Unresolvable forward references: fall back to the raw annotations.
        return dict(getattr(fn, "__annotations__", {}))


def convert_output(value: Any, output_type: type[BaseModel] | None) -> Any:
    """Validate a JSON result into ``output_type`` when the callee declared a model."""
    if output_type is None or value is None:
        return value
    return output_type.model_validate(value)


# The server's limits on free text (characters), and its one rule: no NUL anywhere.
ERROR_LIMIT = 32_768
TRACE_LIMIT = 65_536
LOG_LIMIT = 65_536
_CUT = "... (truncated)"


def wire_text(value: str, limit: int) -> str:
    """Free text (an error message, a stack trace, a log line) as the server takes it:
    NUL characters become U+FFFD and the text is cut to ``limit`` characters, so that
    one odd exception or log line never gets a failure or a log batch refused."""
    value = value.replace("\x00", "\ufffd")
    return value if len(value) <= limit else value[: limit - len(_CUT)] + _CUT
