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

from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from collections.abc import Sequence

    from psycopg import Cursor
    from psycopg.rows import DictRow
    from psycopg.sql import Composable

    from flightbook.eventstore.memory import MemoryDatabase

__all__ = ("Guard", "Row", "Statement")

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
class Guard(Protocol):
    """A check made first in the transaction of the events; raising refuses all of it."""

    def verify(self, cursor: Cursor[DictRow]) -> None:
        """Check in PostgreSQL, on the transaction's cursor (it may take locks and read)."""
        ...

    def check(self, database: MemoryDatabase) -> None:
        """Check in memory (called under the database's lock, before any row is applied)."""
        ...
