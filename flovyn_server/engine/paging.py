"""One way to read a page of a list: filters in; shaped rows, total and cursor out.

A list is read in one order (its `Order`: columns, all ascending or all descending,
the last one unique). A page ends with `nextCursor`, the order's values of its last
row, opaque to clients; the next page is the rows after them (a row-value comparison
the order's index serves), so rows inserted meanwhile never shift a page: each row
that existed when the walk began is seen exactly once. `offset` still works and is
slow when deep (the database counts the rows it skips).

`total` is exact up to COUNT_CAP rows. Past that, counting would scan them all: the
answer says `totalIsEstimate` and extrapolates from the time the first COUNT_CAP rows
span to the time all of them span (lists are ordered by time, newest or oldest first).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from flovyn_server.domain import InvalidInput
from flovyn_server.store.base import Row, Store, Tx

T = TypeVar("T")
COUNT_CAP = 10_000


class Filters:
    """WHERE clauses with their `$n` arguments, numbered as they are added."""

    def __init__(self, first: str, value: Any) -> None:
        self.clauses = [first.replace("?", "$1")]
        self.args: list[Any] = [value]

    def add(self, clause: str, *values: Any) -> None:
        """`clause` with one `?` per value, e.g. `add("kind = ?", kind)`."""
        for value in values:
            self.args.append(value)
            clause = clause.replace("?", f"${len(self.args)}", 1)
        self.clauses.append(clause)

    @property
    def where(self) -> str:
        return " AND ".join(self.clauses)


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


def _bad(field: str, message: str) -> InvalidInput:
    problem = {"field": field, "message": message, "type": "value_error"}
    return InvalidInput(f"{field}: {message}", {"errors": [problem]})


def encode_cursor(order: Order, row: Row) -> str:
    values = [order.name, *(row[c] for c in order.columns)]
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")


def decode_cursor(order: Order, cursor: str) -> list[Any]:
    """The order's values a cursor holds; InvalidInput for one this list did not give."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        values = json.loads(raw)
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
    where, args = filters.where, list(filters.args)
    order_columns = ", ".join(order.columns)
    if cursor is not None:
        after = decode_cursor(order, cursor)
        marks = ", ".join(f"${len(args) + i + 1}" for i in range(len(after)))
        args += after
        where += f" AND ({order_columns}) {'<' if order.descending else '>'} ({marks})"
    async with store.read() as tx:
        rows = await tx.fetch(
            f"SELECT {columns}, {order_columns} FROM {table} WHERE {where} "
            f"ORDER BY {order.sql} LIMIT {int(limit) + 1} OFFSET {int(offset)}",
            *args,
        )
        total, estimate = await count(tx, table, filters, order)
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = encode_cursor(order, rows[-1]) if more and rows else None
    return Page([shape(r) for r in rows], total, estimate, next_cursor)


async def count(tx: Tx, table: str, filters: Filters, order: Order) -> tuple[int, bool]:
    """The rows `filters` match, and whether that is an estimate: see the module."""
    where, args = filters.where, filters.args
    counted = int(
        await tx.fetchval(
            f"SELECT count(*) FROM (SELECT 1 FROM {table} WHERE {where} "
            f"LIMIT {COUNT_CAP + 1}) AS capped",
            *args,
        )
    )
    if counted <= COUNT_CAP:
        return counted, False
    time = order.columns[0]
    row = await tx.fetchrow(
        f"SELECT {time} AS at FROM {table} WHERE {where} ORDER BY {order.sql} "
        f"LIMIT 1 OFFSET {COUNT_CAP - 1}",
        *args,
    )
    edge = await tx.fetchval(
        f"SELECT {time} FROM {table} WHERE {where} "
        f"ORDER BY {time}{'' if order.descending else ' DESC'} LIMIT 1",
        *args,
    )
    first = await tx.fetchval(
        f"SELECT {time} FROM {table} WHERE {where} ORDER BY {order.sql} LIMIT 1", *args
    )
    if row is None or edge is None or first is None:
        return counted, True
    near = abs(int(row["at"]) - int(first)) or 1
    far = abs(int(edge) - int(first))
    return max(COUNT_CAP + 1, round(COUNT_CAP * far / near)), True
