"""A customer's ``Idempotency-Key``s: stored with the booking's first event, looked up on a repeat.

The key is a row (:mod:`flightbook.eventstore.rows`) of ``booking.idempotency_keys``,
written in the transaction of the ``Booking.Requested`` event; its primary key
``(customer_id, idempotency_key)`` makes a concurrent duplicate fail before anything of it
is stored. :class:`PostgresIdempotencyKeys` and :class:`MemoryIdempotencyKeys` answer
what the first request with a key was.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from eventsourcing.persistence import IntegrityError

if TYPE_CHECKING:
    from psycopg_pool import ConnectionPool

    from flightbook.eventstore.memory import MemoryDatabase
    from flightbook.eventstore.rows import Statement

__all__ = (
    "FirstRequest",
    "IdempotencyKeys",
    "IdempotencyRecord",
    "MemoryIdempotencyKeys",
    "PostgresIdempotencyKeys",
)

TABLE = "booking.idempotency_keys"


@dataclass(frozen=True)
class FirstRequest:
    """What the first request with a key asked for and created."""

    request_hash: str
    booking_id: uuid.UUID


@dataclass(frozen=True)
class IdempotencyRecord:
    """The row of a key, written with the booking it created."""

    customer_id: str
    idempotency_key: str
    request_hash: str
    booking_id: uuid.UUID

    def sql(self) -> Statement:
        return (
            "INSERT INTO booking.idempotency_keys "
            "(customer_id, idempotency_key, request_hash, booking_id) VALUES (%s, %s, %s, %s)",
            (self.customer_id, self.idempotency_key, self.request_hash, self.booking_id),
        )

    def check(self, database: MemoryDatabase) -> None:
        if (self.customer_id, self.idempotency_key) in database.table(TABLE):
            raise IntegrityError(f"idempotency key {self.idempotency_key!r} exists")

    def apply(self, database: MemoryDatabase) -> None:
        database.table(TABLE)[(self.customer_id, self.idempotency_key)] = {
            "request_hash": self.request_hash,
            "booking_id": self.booking_id,
        }


class IdempotencyKeys(Protocol):
    """The keys used so far."""

    def first_request(self, customer_id: str, idempotency_key: str) -> FirstRequest | None:
        """The first request with this key (None: the key is new)."""
        ...


class PostgresIdempotencyKeys:
    """``booking.idempotency_keys`` in PostgreSQL.

    Args:
        pool: connections to the event store database.
    """

    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool

    def first_request(self, customer_id: str, idempotency_key: str) -> FirstRequest | None:
        with self._pool.connection() as conn:
            row = conn.execute(
                "SELECT request_hash, booking_id FROM booking.idempotency_keys "
                "WHERE customer_id = %s AND idempotency_key = %s",
                (customer_id, idempotency_key),
            ).fetchone()
        if row is None:
            return None
        booking_id = row[1] if isinstance(row[1], uuid.UUID) else uuid.UUID(str(row[1]))
        return FirstRequest(request_hash=str(row[0]), booking_id=booking_id)


class MemoryIdempotencyKeys:
    """``booking.idempotency_keys`` in the in-memory event store's tables."""

    def __init__(self, database: MemoryDatabase) -> None:
        self._database = database

    def first_request(self, customer_id: str, idempotency_key: str) -> FirstRequest | None:
        with self._database.lock:
            row = self._database.table(TABLE).get((customer_id, idempotency_key))
        if row is None:
            return None
        return FirstRequest(request_hash=row["request_hash"], booking_id=row["booking_id"])
