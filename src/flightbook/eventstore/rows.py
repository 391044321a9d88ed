"""Rows stored in the same transaction as the events they ride with.

A command's idempotency key, a saga job: each is a :class:`Row` that the recorder writes
atomically with the events and the tracking record (``ContextApplication.record``), so a
command happens with all of its bookkeeping or not at all. Every row knows how to be
written both ways: as SQL for PostgreSQL, and into the tables of a
:class:`~flightbook.eventstore.memory.MemoryDatabase` for the in-memory event store.
A row that must be unique raises :class:`eventsourcing.persistence.IntegrityError` in
both, before anything of the transaction is stored.

A :class:`Guard` is a check made inside that transaction before anything of it is
written (a cap on a customer's bookings in progress): it may lock and read, and by
raising it refuses the whole transaction.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from collections.abc import Sequence

    from psycopg import Cursor
    from psycopg.rows import DictRow
    from psycopg.sql import Composable

    from flightbook.eventstore.memory import MemoryDatabase

__all__ = ("Guard", "ManyRows", "Row", "Statement", "statements_of")

Statement = tuple["str | Composable", "Sequence[object]"]
"""One SQL statement and its parameters."""


@runtime_checkable
class Row(Protocol):
    """A change to a table, made in the transaction of the events it is stored with."""

    def sql(self) -> Statement:
        """The statement that makes the change in PostgreSQL."""
        ...

    def check(self, database: MemoryDatabase) -> None:
        """Raise ``IntegrityError`` if the change would break a constraint (nothing changed)."""
        ...

    def apply(self, database: MemoryDatabase) -> None:
        """Make the change in memory (after every row of the transaction was checked)."""
        ...


@runtime_checkable
class ManyRows(Protocol):
    """A row class that can write a run of its rows in one statement (a batch's writer).

    ``key()`` names what a row changes: a run is cut before a key it already holds, so a
    multi-row ``INSERT … ON CONFLICT DO UPDATE`` never touches one row twice.
    """

    def key(self) -> object: ...

    @classmethod
    def sql_many(cls, rows: Sequence[Any]) -> Statement:
        """One statement that makes every change of ``rows`` (all of this class)."""
        ...


def statements_of(rows: Sequence[Row]) -> list[Statement]:
    """The statements for ``rows`` in their order, a run of one ``ManyRows`` class as one."""
    statements: list[Statement] = []
    run: list[Any] = []
    keys: set[object] = set()

    def flush() -> None:
        if len(run) == 1:
            statements.append(run[0].sql())
        elif run:
            statements.append(type(run[0]).sql_many(run))
        run.clear()
        keys.clear()

    for row in rows:
        if not isinstance(row, ManyRows):
            flush()
            statements.append(row.sql())
            continue
        if run and (type(run[0]) is not type(row) or row.key() in keys):
            flush()
        run.append(row)
        keys.add(row.key())
    flush()
    return statements


@runtime_checkable
class Guard(Protocol):
    """A check made first in the transaction of the events; raising refuses all of it."""

    def verify(self, cursor: Cursor[DictRow]) -> None:
        """Check in PostgreSQL, on the transaction's cursor (it may take locks and read)."""
        ...

    def check(self, database: MemoryDatabase) -> None:
        """Check in memory (called under the database's lock, before any row is applied)."""
        ...
