"""``booking.bookings_in_progress``: each customer's unfinished bookings, kept with the events.

A booking is in progress from ``Booking.Requested`` until ``Confirmed``, ``Rejected`` or
``Cancelled``. The Bookings application derives a row from each of those events
(:func:`in_progress_rows`) and writes it in the events' own transaction, whoever records
them (the command API, the saga), so the table never disagrees with the log, even after a
crash; migration ``0006`` fills it from the log the same way.

:class:`CapsGuard` is how the command side keeps a customer within the business-flow caps
(:mod:`flightbook.domain.caps`) across every API process: first in the transaction that
stores the new booking it takes the customer's transaction-level advisory lock, reads the
customer's rows and lets the domain decide. A concurrent request of the same customer
waits for the lock, so it reads the rows this one commits. :class:`PostgresBookingsInProgress`
and :class:`MemoryBookingsInProgress` read the table (the port is
:class:`BookingsInProgress`).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from flightbook.domain.booking import Booking
from flightbook.domain.caps import InProgress, check_caps

if TYPE_CHECKING:
    from collections.abc import Sequence

    from psycopg import Cursor
    from psycopg.rows import DictRow
    from psycopg_pool import ConnectionPool

    from flightbook.domain.caps import BookingCaps
    from flightbook.eventstore.memory import MemoryDatabase
    from flightbook.eventstore.rows import Row, Statement

__all__ = (
    "TABLE",
    "BookingEnded",
    "BookingStarted",
    "BookingsInProgress",
    "CapsGuard",
    "MemoryBookingsInProgress",
    "PostgresBookingsInProgress",
    "in_progress_rows",
    "lock_customer",
)

TABLE = "booking.bookings_in_progress"
_ENDED = (Booking.Confirmed, Booking.Rejected, Booking.Cancelled)
_LOCK_NAMESPACE = "flightbook.caps:"
"""Prefix of the advisory-lock key of a customer (``hashtextextended`` of it)."""
_SELECT = (
    "SELECT booking_id, flight_id, seats FROM booking.bookings_in_progress "
    "WHERE customer_id = %s AND booking_id <> %s"
)


# -- rows: written with the events -----------------------------------------------------------


@dataclass(frozen=True)
class BookingStarted:
    """The row of a booking just requested."""

    booking_id: uuid.UUID
    customer_id: str
    flight_id: uuid.UUID
    seats: int

    def sql(self) -> Statement:
        return (
            "INSERT INTO booking.bookings_in_progress (booking_id, customer_id, flight_id, seats)"
            " VALUES (%s, %s, %s, %s) ON CONFLICT (booking_id) DO NOTHING",
            (self.booking_id, self.customer_id, self.flight_id, self.seats),
        )

    def check(self, database: MemoryDatabase) -> None:
        pass  # the booking's own events are the unique thing

    def apply(self, database: MemoryDatabase) -> None:
        database.table(TABLE).setdefault(
            self.booking_id,
            {"customer_id": self.customer_id, "flight_id": self.flight_id, "seats": self.seats},
        )


@dataclass(frozen=True)
class BookingEnded:
    """A booking confirmed, rejected or cancelled: its row goes."""

    booking_id: uuid.UUID

    def sql(self) -> Statement:
        return (
            "DELETE FROM booking.bookings_in_progress WHERE booking_id = %s",
            (self.booking_id,),
        )

    def check(self, database: MemoryDatabase) -> None:
        pass

    def apply(self, database: MemoryDatabase) -> None:
        database.table(TABLE).pop(self.booking_id, None)


def in_progress_rows(events: Sequence[object]) -> list[Row]:
    """The rows that keep the table in step with these booking events, in their order."""
    rows: list[Row] = []
    for event in events:
        if isinstance(event, Booking.Requested):
            rows.append(
                BookingStarted(
                    booking_id=event.originator_id,
                    customer_id=event.customer_id,
                    flight_id=event.flight_id,
                    seats=event.passenger_count,
                )
            )
        elif isinstance(event, _ENDED):
            rows.append(BookingEnded(event.originator_id))
    return rows


# -- the guard: checked first in the transaction of a new booking ----------------------------


def lock_customer(cursor: Cursor[DictRow], customer_id: str) -> None:
    """Take the customer's transaction-level advisory lock (new bookings, erasures)."""
    cursor.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
        (_LOCK_NAMESPACE + customer_id,),
    )


@dataclass(frozen=True)
class CapsGuard:
    """Refuse a new booking that would take its customer past a cap (a :class:`Guard`).

    Attributes:
        caps: the limits.
        customer_id: whose booking it is.
        booking_id: the new booking (a concurrent duplicate of it is not counted).
        flight_id: its flight.
        seats: its passengers.
    """

    caps: BookingCaps
    customer_id: str
    booking_id: uuid.UUID
    flight_id: uuid.UUID
    seats: int

    def verify(self, cursor: Cursor[DictRow]) -> None:
        lock_customer(cursor, self.customer_id)
        cursor.execute(_SELECT, (self.customer_id, self.booking_id))
        self._decide([_from_row(row) for row in cursor.fetchall()])

    def check(self, database: MemoryDatabase) -> None:
        found = _memory_rows(database, self.customer_id)
        self._decide([row for row in found if row.booking_id != self.booking_id])

    def _decide(self, in_progress: Sequence[InProgress]) -> None:
        check_caps(self.caps, in_progress, flight_id=self.flight_id, seats=self.seats)


# -- reading the table ------------------------------------------------------------------------


class BookingsInProgress(Protocol):
    """The table, read."""

    def of_customer(self, customer_id: str) -> list[InProgress]:
        """The customer's bookings in progress, by booking id."""
        ...


class PostgresBookingsInProgress:
    """``booking.bookings_in_progress`` in PostgreSQL.

    Args:
        pool: connections to the event store database.
    """

    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool

    def of_customer(self, customer_id: str) -> list[InProgress]:
        with self._pool.connection() as conn:
            found = conn.execute(
                "SELECT booking_id, flight_id, seats FROM booking.bookings_in_progress "
                "WHERE customer_id = %s",
                (customer_id,),
            ).fetchall()
        rows = [InProgress(_uuid(b), _uuid(f), int(s)) for b, f, s in found]
        return sorted(rows, key=lambda row: row.booking_id)


class MemoryBookingsInProgress:
    """``booking.bookings_in_progress`` in the in-memory event store's tables."""

    def __init__(self, database: MemoryDatabase) -> None:
        self._database = database

    def of_customer(self, customer_id: str) -> list[InProgress]:
        with self._database.lock:
            return _memory_rows(self._database, customer_id)


def _memory_rows(database: MemoryDatabase, customer_id: str) -> list[InProgress]:
    rows = [
        InProgress(booking_id, row["flight_id"], row["seats"])
        for booking_id, row in database.table(TABLE).items()
        if row["customer_id"] == customer_id and isinstance(booking_id, uuid.UUID)
    ]
    return sorted(rows, key=lambda row: row.booking_id)


def _from_row(row: DictRow) -> InProgress:
    return InProgress(_uuid(row["booking_id"]), _uuid(row["flight_id"]), int(row["seats"]))


def _uuid(value: object) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))
