"""One way to read a page of a list: filters in, (shaped rows, total) out."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from flovyn_server.store.base import Row, Store

T = TypeVar("T")


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


async def page(
    store: Store,
    *,
    columns: str,
    table: str,
    filters: Filters,
    order: str,
    limit: int,
    offset: int,
    shape: Callable[[Row], T],
) -> tuple[list[T], int]:
    async with store.read() as tx:
        total = await tx.fetchval(
            f"SELECT count(*) FROM {table} WHERE {filters.where}", *filters.args
        )
        rows = await tx.fetch(
            f"SELECT {columns} FROM {table} WHERE {filters.where} ORDER BY {order} "
            f"LIMIT {int(limit)} OFFSET {int(offset)}",
            *filters.args,
        )
    return [shape(r) for r in rows], int(total)
