"""One way to read a page of a list: filters in; shaped rows, total and cursor out.

A list is read in one order (its `Order`: columns, all ascending or all descending,
the last one unique). A page ends with `nextCursor`, the order's values of its last
row, opaque to clients; the next page is the rows after them (a row-value comparison
the order's index serves), so rows inserted meanwhile never shift a page: each row
that existed when the walk began is seen exactly once. `offset` still works and is
slow when deep (the database counts the rows it skips).

`total` is exact up to COUNT_CAP rows. Past that, counting would scan them all: the
answer says `totalIsEstimate` and extrapolates from the time the first COUNT_CAP rows
span to the time all of them span (lists are ordered by time, newest or oldest first),
which is close when rows arrive at a steady pace, and off when they came in bursts.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from flovyn_server.domain import InvalidInput
from flovyn_server.jsonio import dumps_bytes, loads
from flovyn_server.store.base import Row, Store, Tx

T = TypeVar("T")
COUNT_CAP = 1000


class Filters:
    """WHERE clauses with their `$n` arguments; and maybe alternatives (`any_of`), of
    which a row must match one."""

    def __init__(self, first: str, value: Any) -> None:
        self._clauses: list[tuple[str, tuple[Any, ...]]] = [(first, (value,))]
        self._alternatives: list[tuple[str, tuple[Any, ...]]] = []

    def add(self, clause: str, *values: Any) -> None:
        """`clause` with one `?` per value, e.g. `add("kind = ?", kind)`."""
        self._clauses.append((clause, values))

    def any_of(self, alternatives: list[tuple[str, list[Any]]]) -> None:
        """Rows must match one of these clauses (each with its `?` values). With more
        than one, a page reads each in its own index order and merges them: an OR
        would make the database sort every row that matches."""
        if len(alternatives) == 1:
            self.add(alternatives[0][0], *alternatives[0][1])
        else:
            self._alternatives = [(clause, tuple(values)) for clause, values in alternatives]

    @property
    def parts(self) -> list[Filters]:
        """One Filters per alternative (or this one, without alternatives)."""
        if not self._alternatives:
            return [self]
        parts = []
        for clause, values in self._alternatives:
            part = Filters.__new__(Filters)
            part._clauses, part._alternatives = [*self._clauses, (clause, values)], []
            parts.append(part)
        return parts

    def render(self, first: int = 1) -> tuple[str, list[Any]]:
        """The WHERE (alternatives aside) with placeholders from `$first`, and its args."""
        where, args = [], []
        for clause, values in self._clauses:
            for value in values:
                args.append(value)
                clause = clause.replace("?", f"${first + len(args) - 1}", 1)
            where.append(clause)
        return " AND ".join(where), args


@dataclass(frozen=True)
class Order:
    """A list's order: `columns` (the first a time in epoch ms, the last unique), all
    descending (newest first) or all ascending. `name` tags its cursors."""

    name: str
    columns: tuple[str, ...]
    descending: bool = True

    @property
    def sql(self) -> str:
        way = " DESC" if self.descending else ""
        return ", ".join(c + way for c in self.columns)


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    total: int
    total_is_estimate: bool
    next_cursor: str | None

    def answer(self, key: str, limit: int, offset: int) -> dict[str, Any]:
        """What a list answers: the items under `key`, and the paging fields every list
        has (see `Paging`)."""
        return {
            key: self.items,
            "total": self.total,
            "totalIsEstimate": self.total_is_estimate,
            "limit": limit,
            "offset": offset,
            "nextCursor": self.next_cursor,
        }


def _bad(field: str, message: str) -> InvalidInput:
    problem = {"field": field, "message": message, "type": "value_error"}
    return InvalidInput(f"{field}: {message}", {"errors": [problem]})


def encode_cursor(order: Order, row: Row) -> str:
    values = [order.name, *(row[c] for c in order.columns)]
    return base64.urlsafe_b64encode(dumps_bytes(values)).decode().rstrip("=")


def decode_cursor(order: Order, cursor: str) -> list[Any]:
    """The order's values a cursor holds; InvalidInput for one this list did not give."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        values = loads(raw)
    except (binascii.Error, ValueError, UnicodeDecodeError):
        values = None
    if (
        not isinstance(values, list)
        or len(values) != len(order.columns) + 1
        or values[0] != order.name
        or not isinstance(values[1], int)
        or isinstance(values[1], bool)
        or not all(isinstance(v, int | str) for v in values[2:])
        or any(isinstance(v, str) and ("\x00" in v or len(v) > 200) for v in values[2:])
        or any(isinstance(v, int) and abs(v) >= 1 << 63 for v in values[1:])
    ):
        raise _bad("cursor", "not one this list gave: pass the nextCursor of its previous page")
    return values[1:]


async def page(
    store: Store,
    *,
    columns: str,
    table: str,
    filters: Filters,
    order: Order,
    limit: int,
    offset: int = 0,
    cursor: str | None = None,
    shape: Callable[[Row], T],
) -> Page[T]:
    if cursor is not None and offset:
        raise _bad("offset", "cursor and offset exclude each other: pass one")
    order_columns = ", ".join(order.columns)
    after = [] if cursor is None else decode_cursor(order, cursor)
    listed = {c.strip() for c in columns.split(",")}
    missing = [c for c in order.columns if c not in listed and "*" not in listed]
    selected = ", ".join([columns, *missing])  # the cursor needs the order's columns
    window = f"ORDER BY {order.sql} LIMIT {int(limit) + 1 + int(offset)}"
    parts: list[str] = []
    args: list[Any] = []
    for i, part in enumerate(filters.parts):
        where, values = part.render(len(args) + 1)
        args += values
        if after:
            marks = ", ".join(f"${len(args) + j + 1}" for j in range(len(after)))
            args += after
            where += f" AND ({order_columns}) {'<' if order.descending else '>'} ({marks})"
        parts.append(
            f"SELECT * FROM (SELECT {selected} FROM {table} WHERE {where} {window}) AS part{i}"
        )
    async with store.read() as tx:
        rows = await tx.fetch(
            " UNION ALL ".join(parts)
            + f" ORDER BY {order.sql} LIMIT {int(limit) + 1} OFFSET {int(offset)}",
            *args,
        )
        total, estimate = await count(tx, table, filters, order)
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = encode_cursor(order, rows[-1]) if more and rows else None
    return Page([shape(r) for r in rows], total, estimate, next_cursor)


async def count(tx: Tx, table: str, filters: Filters, order: Order) -> tuple[int, bool]:
    """The rows `filters` match, and whether that is an estimate: see the module."""
    total, estimate = 0, False
    for part in filters.parts:  # alternatives exclude each other: their counts add up
        where, args = part.render()
        n, guessed = await _count(tx, table, where, args, order)
        total, estimate = total + n, estimate or guessed
    return total, estimate


async def _count(tx: Tx, table: str, where: str, args: list[Any], order: Order) -> tuple[int, bool]:
    time = order.columns[0]
    counted = int(
        await tx.fetchval(
            f"SELECT count(*) FROM (SELECT 1 FROM {table} WHERE {where} "
            f"LIMIT {COUNT_CAP + 1}) AS capped",
            *args,
        )
    )
    if counted <= COUNT_CAP:
        return counted, False
    # Only the time column: the index of the filter and the time answers these alone.
    newest, oldest = (" DESC", "") if order.descending else ("", " DESC")
    head = f"SELECT {time} FROM {table} WHERE {where} ORDER BY {time}"
    first = await tx.fetchval(f"{head}{newest} LIMIT 1", *args)
    near_edge = await tx.fetchval(f"{head}{newest} LIMIT 1 OFFSET {COUNT_CAP - 1}", *args)
    far_edge = await tx.fetchval(f"{head}{oldest} LIMIT 1", *args)
    if first is None or near_edge is None or far_edge is None:
        return counted, True
    near = abs(int(near_edge) - int(first)) or 1
    far = abs(int(far_edge) - int(first))
    return max(COUNT_CAP + 1, round(COUNT_CAP * far / near)), True
