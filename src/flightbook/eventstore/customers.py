"""``booking.customer_bookings``: which bookings each customer has, kept with the events.

The write side must know a customer's bookings to erase their personal data (issue 17),
and the log is keyed by booking. The Bookings application derives a row from each
``Booking.Requested`` (:func:`customer_booking_rows`) and writes it in the event's own
transaction, so the table never disagrees with the log, even after a crash; migration
``0008`` fills it from the log the same way. Rows are never deleted: a booking stays its
customer's for good.

:class:`ErasureGuard` is checked first in the transaction of an erasure: it takes the
customer's lock (the one new bookings take,
:func:`~flightbook.eventstore.inprogress.lock_customer`), refuses while the customer has
a booking in progress, and makes the erasure start over when a booking was added since it
read the customer's bookings.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

from eventsourcing.persistence import IntegrityError

from flightbook.domain.booking import Booking
from flightbook.domain.subject import BookingsInProgressError
from flightbook.eventstore.inprogress import TABLE as IN_PROGRESS_TABLE
from flightbook.eventstore.inprogress import lock_customer
from flightbook.eventstore.memory import MemoryRecorder
from flightbook.eventstore.recorder import TransactionalRecorder

if TYPE_CHECKING:
    from collections.abc import Sequence

    from eventsourcing.persistence import ApplicationRecorder
    from psycopg import Cursor
    from psycopg.rows import DictRow

    from flightbook.eventstore.memory import MemoryDatabase
    from flightbook.eventstore.rows import Row, Statement

__all__ = (
    "TABLE",
    "CustomerBooking",
    "ErasureGuard",
    "bookings_of",
    "customer_booking_rows",
)

TABLE = "booking.customer_bookings"
_SELECT = "SELECT booking_id FROM booking.customer_bookings WHERE customer_id = %s"


@dataclass(frozen=True)
class CustomerBooking:
    """The row of a booking just requested: it is the customer's."""

    customer_id: str
    booking_id: uuid.UUID

    def sql(self) -> Statement:
        return (
            "INSERT INTO booking.customer_bookings (customer_id, booking_id) VALUES (%s, %s)"
            " ON CONFLICT DO NOTHING",
            (self.customer_id, self.booking_id),
        )

    def check(self, database: MemoryDatabase) -> None:
        pass  # the booking's own events are the unique thing

    def apply(self, database: MemoryDatabase) -> None:
        database.table(TABLE).setdefault((self.customer_id, self.booking_id), {})


def customer_booking_rows(events: Sequence[object]) -> list[Row]:
    """The rows that keep the table in step with these booking events, in their order."""
    return [
        CustomerBooking(event.customer_id, event.originator_id)
        for event in events
        if isinstance(event, Booking.Requested)
    ]


def bookings_of(recorder: ApplicationRecorder, customer_id: str) -> list[uuid.UUID]:
    """The customer's bookings (sorted), read from the Bookings application's recorder."""
    if isinstance(recorder, MemoryRecorder):
        with recorder.database.lock:
            return _memory_bookings(recorder.database, customer_id)
    if isinstance(recorder, TransactionalRecorder):
        with recorder.datastore.get_connection() as conn, conn.cursor() as cursor:
            cursor.execute(_SELECT, (customer_id,))
            return sorted(_uuid(row["booking_id"]) for row in cursor.fetchall())
    raise TypeError(f"cannot read {TABLE} through a {type(recorder).__name__}")  # pragma: no cover


@dataclass(frozen=True)
class ErasureGuard:
    """First in an erasure's transaction: no booking in progress, no booking unseen.

    Attributes:
        customer_id: whose personal data is erased.
        bookings: the customer's bookings the erasure read before its transaction.

    Raises:
        BookingsInProgressError: the customer has bookings in progress (nothing stored).
        IntegrityError: a booking of the customer was stored since they were read: the
            erasure runs again (``retry_conflicts``) with it.
    """

    customer_id: str
    bookings: frozenset[uuid.UUID]

    def verify(self, cursor: Cursor[DictRow]) -> None:
        lock_customer(cursor, self.customer_id)
        cursor.execute(
            "SELECT count(*) AS n FROM booking.bookings_in_progress WHERE customer_id = %s",
            (self.customer_id,),
        )
        found = cursor.fetchone()
        self._refuse_in_progress(int(found["n"]) if found is not None else 0)
        cursor.execute(_SELECT, (self.customer_id,))
        self._refuse_unseen({_uuid(row["booking_id"]) for row in cursor.fetchall()})

    def check(self, database: MemoryDatabase) -> None:
        in_progress = [
            row
            for row in database.table(IN_PROGRESS_TABLE).values()
            if row["customer_id"] == self.customer_id
        ]
        self._refuse_in_progress(len(in_progress))
        self._refuse_unseen(set(_memory_bookings(database, self.customer_id)))

    def _refuse_in_progress(self, count: int) -> None:
        if count:
            raise BookingsInProgressError(self.customer_id, count)

    def _refuse_unseen(self, stored: set[uuid.UUID]) -> None:
        if stored != self.bookings:
            raise IntegrityError(f"the bookings of customer {self.customer_id} changed")


def _memory_bookings(database: MemoryDatabase, customer_id: str) -> list[uuid.UUID]:
    keys = database.table(TABLE)
    return sorted(key[1] for key in keys if isinstance(key, tuple) and key[0] == customer_id)


def _uuid(value: object) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))
