"""Server-Sent Events: an incremental parser, and a reader that resumes where it broke off.

``SSEParser`` is pure (no I/O): feed it the bytes of a ``text/event-stream`` as they
arrive, in chunks of any size, and it returns the events they complete, following the
HTML Living Standard's interpretation of an event stream (section 9.2.6).

``read_stream`` is what ``Client.stream_workflow`` runs: it opens the stream, yields
its events, and after a dropped connection, a server that closed the stream without an
``end`` event (a restart) or a transient error, reconnects with ``Last-Event-ID`` so
that its caller sees every event once.
"""

from __future__ import annotations

import asyncio
import codecs
import logging
import re
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp

from .serde import loads
from .transport import Backoff, Transport, api_error, is_transient

log = logging.getLogger("flovyn_worker.sse")

_EOL = re.compile(r"\r\n|\r|\n")

END_EVENT = "end"
"""The type of the last event of a workflow stream: the execution is over."""

STREAM_READ_TIMEOUT = 45.0
"""Seconds of silence after which a stream counts as dead (three keep-alive intervals)."""

_FIRST_DELAY = 0.5  # before the server has sent a `retry:` hint
_MIN_DELAY = 0.05
_MAX_DELAY = 10.0


@dataclass(frozen=True)
class ServerSentEvent:
    """One dispatched event, as the parser saw it: ``data`` is still text."""

    event: str
    data: str
    id: str | None = None


@dataclass(frozen=True)
class StreamEvent:
    """One event of a workflow stream.

    ``event`` is the history event type (``WORKFLOW_STARTED``, ``SIGNAL_RECEIVED``...)
    or ``"end"`` for the last one. ``id`` is the event's sequence as a string (the
    ``end`` event repeats the last one), the value to pass as ``last_event_id`` to
    resume after it. ``data`` is the decoded JSON: ``{workflowExecutionId, type,
    timestamp, sequence, data}``, or ``{workflowExecutionId, type: "end", status,
    timestamp}`` for ``end``.
    """

    id: str | None
    event: str
    data: Any


class SSEParser:
    """Incremental parser of a ``text/event-stream``.

    ``feed`` takes bytes (decoded as UTF-8, a character split between chunks is fine)
    or text, in pieces of any size, and returns the events completed so far. Lines may
    end with CRLF, LF or CR (a CRLF split between two chunks counts once). As the
    standard has it:

    - ``data`` lines are joined with ``\\n``; an event without any ``data`` line is not
      dispatched (so a block with only ``retry:`` or ``id:`` yields nothing);
    - ``event`` sets the type of the event being built (default ``"message"``);
    - ``retry`` sets ``retry`` (milliseconds) if its value is all ASCII digits;
    - lines starting with ``:`` are comments (keep-alives) and are ignored, as are
      unknown fields; one space after the colon is dropped from a value;
    - the last event ID persists: an event carries the last ``id`` seen on the stream
      (``None`` until one is seen, or after an empty ``id:`` reset it); an ``id``
      containing NUL is ignored. The value is ``last_event_id`` ("" for none), which a
      client sends back as ``Last-Event-ID`` when it reconnects;
    - a leading byte order mark is skipped; an unfinished event at the end of a stream
      is dropped (simply never completed: call ``reset`` before reading a new
      connection with the same parser).
    """

    def __init__(self, last_event_id: str = "") -> None:
        self.last_event_id = last_event_id
        self.retry: int | None = None
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._partial: list[str] = []  # the current line, not terminated yet
        self._skip_lf = False  # the last piece ended with CR: a LF starting the next ends it
        self._at_start = True  # a byte order mark may come first
        self._data: list[str] = []
        self._event = ""
        self._id = last_event_id  # the last event ID buffer

    def reset(self) -> None:
        """Forget a half-read line or event (a new connection); keep the last event ID
        and the retry hint."""
        self._decoder.reset()
        self._partial = []
        self._skip_lf = False
        self._at_start = True
        self._data = []
        self._event = ""
        self._id = self.last_event_id

    def feed(self, chunk: bytes | str) -> list[ServerSentEvent]:
        """Parse the next piece of the stream; the events it completes, in order."""
        text = self._decoder.decode(chunk) if isinstance(chunk, bytes) else chunk
        if not text:
            return []
        if self._at_start:
            self._at_start = False
            text = text.removeprefix("\ufeff")
        if self._skip_lf:
            self._skip_lf = False
            text = text.removeprefix("\n")
        if not _EOL.search(text):
            if text:
                self._partial.append(text)
            return []
        if self._partial:
            text = "".join(self._partial) + text
            self._partial = []
        *lines, rest = _EOL.split(text)
        if rest:
            self._partial.append(rest)
        self._skip_lf = text.endswith("\r")
        events = []
        for line in lines:
            event = self.feed_line(line)
            if event is not None:
                events.append(event)
        return events

    def feed_line(self, line: str) -> ServerSentEvent | None:
        """Interpret one line (without its terminator); the event if it completes one."""
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None  # a comment
        name, colon, value = line.partition(":")
        if colon:
            value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id":
            if "\0" not in value:
                self._id = value
        elif name == "retry":
            if value.isascii() and value.isdigit():
                self.retry = int(value)
        return None

    def _dispatch(self) -> ServerSentEvent | None:
        self.last_event_id = self._id
        data, event = self._data, self._event
        self._data, self._event = [], ""
        if not data:
            return None
        return ServerSentEvent(event or "message", "\n".join(data), self.last_event_id or None)


def _decode(data: str) -> Any:
    try:
        return loads(data)
    except ValueError:
        return data


async def _open(
    transport: Transport, path: str, last_event_id: str | None, limits: aiohttp.ClientTimeout
) -> aiohttp.ClientResponse:
    """GET the stream; raise ``FlovynApiError`` for an error answer."""
    headers = transport.headers | {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
    if last_event_id:
        headers["Last-Event-ID"] = last_event_id
    url = f"{transport.server_url}{transport.prefix}{path}"
    response = await transport.session().get(url, headers=headers, timeout=limits)
    try:
        if response.status >= 400:
            raise api_error(response.status, await response.read())
        if response.content_type != "text/event-stream":
            raise api_error(
                response.status,
                f"expected a text/event-stream, got {response.content_type}".encode(),
            )
    except BaseException:
        response.close()
        raise
    return response


async def read_stream(
    transport: Transport,
    path: str,
    *,
    last_event_id: str | None = None,
    read_timeout: float | None = STREAM_READ_TIMEOUT,
    on_connection: Callable[[bool], None] | None = None,
) -> AsyncGenerator[StreamEvent, None]:
    """The events of the stream at ``path`` (under the tenant prefix), until ``end``.

    ``on_connection(True)`` is called each time the stream is (re)connected and
    ``on_connection(False)`` each time it is lost and a reconnection is about to be
    tried: what a dashboard shows as "live" and "reconnecting".

    Reconnects, sending ``Last-Event-ID`` (the id of the last event it yielded), after
    a dropped or silent connection, a stream closed without ``end`` and transient
    errors (see ``is_transient``: network errors, 5xx, 429). The first delay is the
    server's ``retry:`` hint, doubling (with jitter) up to 10 s while reconnecting
    fails; it is reset by every answered connection. Other error answers raise
    ``FlovynApiError``. Closing the generator (or cancelling the task iterating it)
    closes the HTTP response.
    """
    # No total: a stream lasts as long as the execution. `sock_read` bounds the silence
    # between two reads (keep-alive comments included) instead; None waits forever.
    timeout = aiohttp.ClientTimeout(
        total=None,
        connect=transport.default_timeout,
        sock_connect=transport.default_timeout,
        sock_read=read_timeout,
    )
    parser = SSEParser(last_event_id or "")
    backoff = Backoff(_FIRST_DELAY, _MAX_DELAY)
    hint: int | None = None
    problem: BaseException | str
    while True:
        parser.reset()
        resume = parser.last_event_id or None
        try:
            response = await _open(transport, path, resume, timeout)
        except Exception as exc:
            if not is_transient(exc):
                raise
            problem = exc
        else:
            backoff.reset()
            if on_connection is not None:
                on_connection(True)
            problem = "the server closed the stream before its end event"
            try:
                chunks = response.content.iter_any()
                while True:
                    try:
                        chunk = await anext(chunks)
                    except StopAsyncIteration:
                        break
                    except Exception as exc:
                        if not is_transient(exc):
                            raise
                        problem = exc
                        break
                    for sse in parser.feed(chunk):
                        yield StreamEvent(sse.id, sse.event, _decode(sse.data))
                        if sse.event == END_EVENT:
                            return
            finally:
                response.close()
        if on_connection is not None:
            on_connection(False)
        if parser.retry is not None and parser.retry != hint:
            hint = parser.retry
            first = max(hint / 1000, _MIN_DELAY)  # a 0 hint would never grow
            backoff = Backoff(first, max(first, _MAX_DELAY))
        delay = backoff.next()
        log.info(
            "stream %s: %s; reconnecting in %.1fs after event %s",
            path,
            problem if isinstance(problem, str) else f"{type(problem).__name__}: {problem}",
            delay,
            parser.last_event_id or "(none)",
        )
        await asyncio.sleep(delay)
