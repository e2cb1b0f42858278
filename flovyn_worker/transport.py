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
    """JSON over HTTP against ``{server_url}``: paths under ``/api/tenants/{tenant}``
    unless a call says ``root=True`` (tenant administration, health).

    Non-2xx answers raise ``FlovynApiError``; network errors propagate as aiohttp
    or timeout errors (see ``is_transient``). ``exchange`` is the raw call under both.
    """

    def __init__(
        self,
        server_url: str,
        *,
        tenant: str | None,
        token: str | None = None,
        default_timeout: float = 30.0,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self.server_url = server_url.rstrip("/")
        self.tenant = tenant
        self.default_timeout = default_timeout
        self.headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if token:
            self.headers["Authorization"] = f"Bearer {token}"
        # A session of the caller's (its connector, its lifetime) is used as it is, and
        # left open; else one of our own, opened on first use.
        self._own = session is None
        self._session: aiohttp.ClientSession | None = session

    @property
    def prefix(self) -> str:
        """The tenant's path prefix; a ``ValueError`` when this transport has no tenant."""
        if not self.tenant:
            raise ValueError("this call needs a tenant: pass tenant=... (or --tenant)")
        return f"/api/tenants/{quote_segment(self.tenant)}"

    def session(self) -> aiohttp.ClientSession:
        """The one HTTP session (opened on first use), shared by requests and streams."""
        if self._own and (self._session is None or self._session.closed):
            self._session = aiohttp.ClientSession(headers=self.headers)
        assert self._session is not None
        return self._session

    async def request(
        self,
        method: str,
        path: str,
        body: Any = _NO_BODY,
        *,
        params: dict[str, Any] | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - the HTTP request's timeout
        root: bool = False,
    ) -> Any:
        """Send one request and return the decoded JSON answer; ``path`` is under the
        tenant prefix unless ``root``."""
        _, answer = await self.request_with_status(
            method, path, body, params=params, timeout=timeout, root=root
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
        root: bool = False,
    ) -> tuple[int, Any]:
        """Like ``request`` but also return the HTTP status (e.g. 200 vs 201)."""
        status, raw = await self.exchange(
            method,
            path if root else self.prefix + path,
            None if body is _NO_BODY else dumps(body),
            params=params,
            timeout=timeout,
        )
        if status >= 400:
            raise api_error(status, raw)
        return status, (loads(raw) if raw else None)

    async def exchange(
        self,
        method: str,
        path: str,
        data: bytes | None = None,
        *,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - the HTTP request's timeout
    ) -> tuple[int, bytes]:
        """One raw request to ``{server_url}{path}``: (status, body bytes), whatever the
        status. ``params`` values that are None are left out, lists joined with commas;
        ``headers`` are added to (or replace) the client's own."""
        query = None
        if params is not None:
            query = {
                k: ",".join(map(str, v)) if isinstance(v, list | tuple) else _text(v)
                for k, v in params.items()
                if v is not None
            }
        client_timeout = aiohttp.ClientTimeout(total=timeout or self.default_timeout)
        async with self.session().request(
            method,
            self.server_url + path,
            data=data,
            params=query,
            # our own session sends self.headers already; a caller's does not
            headers=headers if self._own else self.headers | (headers or {}),
            timeout=client_timeout,
        ) as response:
            return response.status, await response.read()

    async def close(self) -> None:
        """Close the session if it is our own (idempotent)."""
        if self._own and self._session is not None and not self._session.closed:
            await self._session.close()
            self._session = None


def _text(value: Any) -> str:
    """A query-string value: booleans as JSON spells them."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
