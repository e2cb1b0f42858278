"""HTTP plumbing shared by ``Worker`` and ``Client``: one session, orjson bodies."""

from __future__ import annotations

import asyncio
import random
from typing import Any
from urllib.parse import quote

import aiohttp

from .errors import FlovynApiError
from .serde import dumps, loads

_NO_BODY: Any = object()


def quote_segment(value: str, safe: str = "") -> str:
    """Percent-encode one path segment."""
    return quote(str(value), safe=safe)


def is_transient(exc: BaseException) -> bool:
    """Errors worth retrying: network trouble, timeouts, 5xx and 429 answers."""
    if isinstance(exc, FlovynApiError):
        return exc.status >= 500 or exc.status == 429
    return isinstance(exc, (aiohttp.ClientError, asyncio.TimeoutError, OSError))


class Backoff:
    """Exponential backoff with a little jitter: ``initial`` doubling up to ``maximum``."""

    def __init__(self, initial: float = 0.1, maximum: float = 5.0) -> None:
        self.initial = initial
        self.maximum = maximum
        self._current = initial

    def next(self) -> float:
        """The delay to wait now; the following one doubles."""
        delay = self._current
        self._current = min(self._current * 2, self.maximum)
        return delay * random.uniform(0.9, 1.1)

    def reset(self) -> None:
        """Back to the initial delay after a success."""
        self._current = self.initial


def api_error(status: int, raw: bytes) -> FlovynApiError:
    """The SDK's error for a non-2xx answer, from the server's JSON error body."""
    try:
        body = loads(raw) if raw else {}
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    message = str(body.get("error") or raw[:500].decode("utf-8", "replace") or "HTTP error")
    return FlovynApiError(status, body.get("code"), message, body.get("details"))


class Transport:
    """JSON over HTTP against ``{server_url}/api/tenants/{tenant}``.

    Non-2xx answers raise ``FlovynApiError``; network errors propagate as aiohttp
    or timeout errors (see ``is_transient``).
    """

    def __init__(
        self,
        server_url: str,
        *,
        tenant: str,
        token: str | None = None,
        default_timeout: float = 30.0,
    ) -> None:
        self.server_url = server_url.rstrip("/")
        self.prefix = f"/api/tenants/{quote_segment(tenant)}"
        self.default_timeout = default_timeout
        self._headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if token:
            self._headers["Authorization"] = f"Bearer {token}"
        self._session: aiohttp.ClientSession | None = None

    def session(self) -> aiohttp.ClientSession:
        """The one HTTP session (opened on first use), shared by requests and streams."""
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(headers=self._headers)
        return self._session

    async def request(
        self,
        method: str,
        path: str,
        body: Any = _NO_BODY,
        *,
        params: dict[str, Any] | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - the HTTP request's timeout
    ) -> Any:
        """Send one request under the tenant prefix and return the decoded JSON answer."""
        _, answer = await self.request_with_status(
            method, path, body, params=params, timeout=timeout
        )
        return answer

    async def request_with_status(
        self,
        method: str,
        path: str,
        body: Any = _NO_BODY,
        *,
        params: dict[str, Any] | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - the HTTP request's timeout
    ) -> tuple[int, Any]:
        """Like ``request`` but also return the HTTP status (e.g. 200 vs 201)."""
        url = f"{self.server_url}{self.prefix}{path}"
        data = None if body is _NO_BODY else dumps(body)
        client_timeout = aiohttp.ClientTimeout(total=timeout or self.default_timeout)
        async with self.session().request(
            method, url, data=data, params=params, timeout=client_timeout
        ) as response:
            raw = await response.read()
            status = response.status
        if status >= 400:
            raise api_error(status, raw)
        return status, (loads(raw) if raw else None)

    async def close(self) -> None:
        """Close the session (idempotent)."""
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None
