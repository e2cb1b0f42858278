"""Small checks for request bodies: each failure is a 400 naming the field."""

from __future__ import annotations

import re
import uuid
from typing import Any

from flovyn_server.domain import bad_request

_MISSING = object()


def body_object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise bad_request("request body must be a JSON object")
    return body


def string(body: dict[str, Any], key: str, default: Any = _MISSING, *, max_len: int = 256) -> Any:
    value = body.get(key, default)
    if value is _MISSING or (value is None and default is _MISSING):
        raise bad_request(f"{key} is required", {"field": key})
    if value is None:
        return None
    if not isinstance(value, str) or not value or len(value) > max_len:
        raise bad_request(
            f"{key} must be a non-empty string of at most {max_len} characters", {"field": key}
        )
    return value


QUEUE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")


def queue(body: dict[str, Any], key: str = "queue", default: Any = "default") -> Any:
    """A queue name: letters, digits, `_ . : -` (it becomes part of wake-up keys)."""
    value = string(body, key, default)
    if value is not None and not QUEUE.match(value):
        raise bad_request(
            f"{key} {value!r} is not a queue name: letters, digits and _ . : - only",
            {"field": key},
        )
    return value


def integer(
    body: dict[str, Any],
    key: str,
    default: Any = _MISSING,
    *,
    lo: int | None = None,
    hi: int | None = None,
) -> Any:
    value = body.get(key, default)
    if value is _MISSING:
        raise bad_request(f"{key} is required", {"field": key})
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad_request(f"{key} must be an integer", {"field": key})
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise bad_request(f"{key} must be between {lo} and {hi}", {"field": key})
    return value


def number(body: dict[str, Any], key: str, default: Any = _MISSING) -> Any:
    value = body.get(key, default)
    if value is _MISSING:
        raise bad_request(f"{key} is required", {"field": key})
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise bad_request(f"{key} must be a number", {"field": key})
    return float(value)


def boolean(body: dict[str, Any], key: str, default: bool) -> bool:
    value = body.get(key, default)
    if not isinstance(value, bool):
        raise bad_request(f"{key} must be true or false", {"field": key})
    return value


def string_map(body: dict[str, Any], key: str) -> dict[str, str] | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise bad_request(f"{key} must be an object of string values", {"field": key})
    return value


def string_list(body: dict[str, Any], key: str, default: Any = _MISSING) -> list[str]:
    value = body.get(key, default)
    if value is _MISSING:
        raise bad_request(f"{key} is required", {"field": key})
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise bad_request(f"{key} must be a list of strings", {"field": key})
    return value


def uuid_text(value: str, what: str = "id") -> str:
    """A canonical UUID string, or 400."""
    try:
        return str(uuid.UUID(value))
    except (ValueError, AttributeError, TypeError):
        raise bad_request(f"{what} {value!r} is not a UUID") from None
