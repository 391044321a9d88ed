"""Read-only access to the three notification logs, as auditors see them.

Every record says where (context, position), what (aggregate, version, type), when
(occurred_at), who (actor), why (correlation and causation ids) and the payload.
Reads go straight to PostgreSQL in batches, so memory stays constant for any size.
"""

from __future__ import annotations

import datetime as dt
import enum
import uuid
from typing import TYPE_CHECKING, Any

import msgspec
import psycopg
from psycopg import sql

from flightbook.eventstore.contexts import BOOKING, CONTEXT_NAMES
from flightbook.eventstore.customers import TABLE as CUSTOMER_BOOKINGS
from flightbook.eventstore.log import LogReader

if TYPE_CHECKING:
    from collections.abc import Iterator

    from eventsourcing.persistence import Notification

__all__ = ("AuditRecord", "EventLog", "UnknownAggregateError", "plain")

_PRIVATE_FIELDS = {"originator_id", "originator_version", "timestamp", "originator_topic"}


class UnknownAggregateError(LookupError):
    """No context's log has events of this aggregate id."""


class AuditRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One stored event, as an auditor reads it."""

    context: str
    position: int
    aggregate_id: uuid.UUID
    aggregate_version: int
    type: str
    occurred_at: dt.datetime
    event_id: str
    actor: str
    correlation_id: str
    causation_id: str
    schema_version: int
    payload: dict[str, Any]


def plain(value: object) -> object:
    if isinstance(value, (uuid.UUID, dt.datetime, dt.date)):
        return str(value) if isinstance(value, uuid.UUID) else value.isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


class EventLog:
    """The logs of the three contexts in one PostgreSQL database, as auditors read them.

    Args:
        url: PostgreSQL URL (the auditors' read-only role where one is configured).
        batch_size: rows fetched per query while streaming.
    """

    def __init__(self, url: str, *, batch_size: int = 1000) -> None:
        self._conn = psycopg.connect(url, autocommit=True)
        self.reader = LogReader.on_connection(self._conn, batch_size=batch_size)
        self._mapper = self.reader.mapper

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> EventLog:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def record(self, context: str, notification: Notification) -> AuditRecord:
        event, meta = self._mapper.decode(notification)
        payload = {k: plain(v) for k, v in vars(event).items() if k not in _PRIVATE_FIELDS}
        topic_class = notification.topic.partition(":")[2]
        return AuditRecord(
            context=context,
            position=notification.id,
            aggregate_id=uuid.UUID(str(notification.originator_id)),
            aggregate_version=notification.originator_version,
            type=topic_class,
            occurred_at=getattr(event, "timestamp"),  # noqa: B009 - set by every event
            event_id=meta.event_id,
            actor=meta.actor,
            correlation_id=meta.correlation_id,
            causation_id=meta.causation_id,
            schema_version=meta.schema_version,
            payload=payload,
        )

    def domain_events(
        self, context: str, aggregate_id: uuid.UUID
    ) -> Iterator[tuple[Notification, object]]:
        """The aggregate's events in version order, as (notification, domain event)."""
        for notification in self.reader.of_aggregate(context, aggregate_id):
            yield notification, self._mapper.decode(notification)[0]

    def context_of(self, aggregate_id: uuid.UUID) -> str:
        found = self.reader.context_of(aggregate_id)
        if found is None:
            raise UnknownAggregateError(f"no events for aggregate {aggregate_id}")
        return found

    def first_event(self, context: str, aggregate_id: uuid.UUID) -> object | None:
        """The aggregate's first domain event (version 1), if it has one."""
        first = self.reader.first_of(context, aggregate_id)
        return None if first is None else self._mapper.decode(first)[0]

    def customer_bookings(self, customer_id: str) -> list[uuid.UUID]:
        """The ids of every booking the customer requested, in id order.

        From ``booking.customer_bookings`` (kept with the events, filled from the log by
        its migration); where that table does not exist yet, from the booking log itself.
        """
        table = self._conn.execute("SELECT to_regclass(%s)", (CUSTOMER_BOOKINGS,)).fetchone()
        if table is not None and table[0] is not None:
            rows = self._conn.execute(
                sql.SQL(
                    "SELECT booking_id FROM {} WHERE customer_id = %s ORDER BY booking_id"
                ).format(sql.Identifier(*CUSTOMER_BOOKINGS.split("."))),
                (customer_id,),
            ).fetchall()
            return [uuid.UUID(str(row[0])) for row in rows]
        requested = self.reader.select(
            BOOKING.name,
            "topic LIKE %s AND convert_from(state, 'UTF8')::jsonb ->> 'customer_id' = %s",
            ("%:Booking.Requested", customer_id),
        )
        return sorted({uuid.UUID(str(n.originator_id)) for n in requested})

    def history(self, aggregate_id: uuid.UUID) -> list[AuditRecord]:
        context = self.context_of(aggregate_id)
        return [self.record(context, n) for n in self.reader.of_aggregate(context, aggregate_id)]

    def head(self, context: str) -> int:
        return self.reader.head(context)

    def stream(
        self, context: str, *, start: int = 1, stop: int | None = None
    ) -> Iterator[Notification]:
        """Notifications of ``context`` with ``start <= position <= stop``, in position order."""
        return self.reader.stream(context, start=start, stop=stop)

    def trace(self, correlation_id: str) -> list[AuditRecord]:
        """Every event of every context that one request caused, oldest first."""
        found: list[AuditRecord] = []
        for context in CONTEXT_NAMES:
            for notification in self.reader.select(
                context,
                "convert_from(state, 'UTF8')::jsonb -> '__meta__' ->> 'correlation_id' = %s",
                (correlation_id,),
            ):
                found.append(self.record(context, notification))
        found.sort(key=lambda r: (r.occurred_at, r.context, r.position))
        return found
