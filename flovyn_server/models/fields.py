"""Bounded field types shared by every request shape.

Each type fits its column on both stores: integers stay inside PostgreSQL's INTEGER
(2^31 - 1) or BIGINT after the server adds them to a time, and text never carries a
NUL character, which PostgreSQL cannot store in TEXT. A NUL anywhere in a text field
is refused with 400, on every route: one rule, the same for both stores. (JSON values
such as `input` may hold `\\u0000` in their strings: they are stored as JSON text, in
which the character stays escaped.)
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
)
from pydantic.alias_generators import to_camel

from flovyn_server.domain import LogLevel

INT32_MAX = 2**31 - 1
# Durations are added to "now" in epoch milliseconds and stored as BIGINT: ten years
# keeps every sum far inside it, and is longer than any sleep or timeout needs.
MAX_DURATION_MS = 10 * 365 * 86_400_000
MAX_LIST = 1000  # items in any list a request carries (kinds, queues, capabilities)


# Checked by pydantic-core's own regex engine, not a Python call: this runs for every
# string of every worker request.
NO_NUL = r"^[^\x00]*$"
_UUID = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"


def text(max_length: int, *, min_length: int = 0) -> StringConstraints:
    """A string of `min_length` to `max_length` characters without NUL."""
    return StringConstraints(min_length=min_length, max_length=max_length, pattern=NO_NUL)


_EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
_LATEST = datetime(9000, 1, 1, tzinfo=UTC)


def _stored_time(value: datetime) -> datetime:
    """A time the server stores: with a zone (UTC if none), readable back as RFC 3339."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    if not _EARLIEST <= value < _LATEST:
        raise ValueError("must be between 1970-01-01 and 9000-01-01")
    return value


def _text_if_string(value: Any) -> Any:
    """A JSON value stored as text when it is a string (an error, progress details)."""
    if isinstance(value, str):
        if len(value) > 32_768:
            raise ValueError("a string here is at most 32768 characters")
        if "\x00" in value:
            raise ValueError("must not contain the NUL character (\\u0000)")
    return value


Name = Annotated[str, text(256, min_length=1)]  # kinds, names, keys, ids chosen by callers
ShortText = Annotated[str, text(2000)]
ErrorText = Annotated[str, text(32_768)]
LongText = Annotated[str, text(65_536)]
IdempotencyKey = Annotated[str, text(512, min_length=1)]
# Letters, digits and `_ . : -`: a queue name becomes part of wake-up keys.
QUEUE = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$"
TTL = r"^[0-9]{1,9}[smhd]$"
SLUG = r"^[a-z0-9][a-z0-9-]{1,62}$"
Queue = Annotated[str, StringConstraints(pattern=QUEUE)]
# Stored ids are lower case: an upper-case UUID is taken and lowered.
Uuid = Annotated[
    str,
    StringConstraints(to_lower=True, pattern=_UUID),
    Field(json_schema_extra={"format": "uuid"}),
]
# `30s`, `5m`, `2h`, `7d`: more than 0, at most 30 days (checked where it is used).
Ttl = Annotated[str, StringConstraints(pattern=TTL)]
Slug = Annotated[str, StringConstraints(pattern=SLUG)]

# What a pattern means, for the 400 that a value which does not match it gets.
PATTERN_MESSAGES = {
    NO_NUL: "must not contain the NUL character (\\u0000)",
    _UUID: "must be a UUID (8-4-4-4-12 hexadecimal digits)",
    QUEUE: "must be a queue name: 1 to 128 letters, digits and _ . : -, not starting with a symbol",
    TTL: "must be a duration such as 30s, 5m, 2h or 7d",
    SLUG: "must be a slug: 2 to 63 lower-case letters, digits and -, not starting with -",
}
StringMap = Annotated[
    dict[Name, Annotated[str, text(4096)]],
    Field(max_length=100),
]

# Any JSON value; a string is stored as text as it is, so it is bounded like ErrorText.
TextOrJson = Annotated[Any, AfterValidator(_text_if_string)]


def upper(value: Any) -> Any:
    """A name in any case (query parameters: `status=pending`)."""
    return value.upper() if isinstance(value, str) else value


def _level(value: Any) -> Any:
    """A log level in any case; WARNING (Python's name) is WARN."""
    if isinstance(value, str):
        value = value.upper()
        return "WARN" if value == "WARNING" else value
    return value


Level = Annotated[LogLevel, BeforeValidator(_level)]

# In answers: an RFC 3339 UTC time with milliseconds, and a UUID.
Time = Annotated[str, Field(json_schema_extra={"format": "date-time"})]
Id = Annotated[str, Field(json_schema_extra={"format": "uuid"})]

# An RFC 3339 time that is stored (a log line's timestamp).
StoredTime = Annotated[datetime, AfterValidator(_stored_time)]

Int32 = Annotated[int, Field(ge=0, le=INT32_MAX)]
AttemptNumber = Annotated[int, Field(ge=1, le=INT32_MAX)]
DurationMs = Annotated[int, Field(ge=0, le=MAX_DURATION_MS)]
PositiveDurationMs = Annotated[int, Field(ge=1, le=MAX_DURATION_MS)]


class Body(BaseModel):
    """A request body: camelCase on the wire, strict types (no "7" for 7), and no
    unknown fields (a misspelt `qeueu` would otherwise start work on the default
    queue without a word). `null` on a field with a default is refused: it never
    skips a default or a bound."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        strict=True,
        extra="forbid",
        allow_inf_nan=False,
        frozen=True,
    )


class Query(BaseModel):
    """Query-string parameters: values arrive as text, so numbers are parsed from it."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="ignore",
        allow_inf_nan=False,
        frozen=True,
    )
