"""The one JSON encoder/decoder of the server (orjson: the hot path is JSON)."""

from __future__ import annotations

from typing import Any

import orjson

from flovyn_server.domain import InvalidInput


def dumps(value: Any) -> str:
    return dumps_bytes(value).decode()


def dumps_bytes(value: Any) -> bytes:
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError as exc:
        # Only a request's own JSON value can get here (an integer beyond 64 bits):
        # what the server stores and sends always encodes.
        raise InvalidInput(f"a JSON value cannot be stored: {exc}") from None


def loads(text: str | bytes | None) -> Any:
    if text is None:
        return None
    return orjson.loads(text)
