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
from eventsourcing.persistence import (
    DatetimeAsISO,
    DecimalAsStr,
    JSONTranscoder,
    Notification,
    StoredEvent,
    UUIDAsHex,
)
from psycopg import sql

from flightbook.eventstore.mapper import MetadataMapper

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ("CONTEXT_TABLES", "AuditRecord", "EventLog", "UnknownAggregateError")

# context -> (schema, events table)
CONTEXT_TABLES: dict[str, tuple[str, str]] = {
    "booking": ("booking", "bookings_events"),
    "inventory": ("inventory", "inventory_events"),
    "payment": ("payment", "payments_events"),
}
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


def _mapper() -> MetadataMapper:
    transcoder = JSONTranscoder()
    for transcoding in (UUIDAsHex(), DecimalAsStr(), DatetimeAsISO()):
        transcoder.register(transcoding)
    return MetadataMapper(transcoder=transcoder)


def _plain(value: object) -> object:
    if isinstance(value, (uuid.UUID, dt.datetime, dt.date)):
        return str(value) if isinstance(value, uuid.UUID) else value.isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


class EventLog:
    """The logs of the three contexts in one PostgreSQL database.

    Args:
        url: PostgreSQL URL (the auditors' read-only role where one is configured).
        batch_size: rows fetched per query while streaming.
    """

    def __init__(self, url: str, *, batch_size: int = 1000) -> None:
        self._conn = psycopg.connect(url, autocommit=True)
        self._mapper = _mapper()
        self._batch = batch_size

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> EventLog:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def record(self, context: str, notification: Notification) -> AuditRecord:
        event, meta = self._mapper.decode(notification)
        payload = {k: _plain(v) for k, v in vars(event).items() if k not in _PRIVATE_FIELDS}
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
        for notification in self._select(
            context, "originator_id = %s", (aggregate_id,), order="originator_version"
        ):
            yield notification, self._mapper.decode(notification)[0]

    def context_of(self, aggregate_id: uuid.UUID) -> str:
        for context, (schema, table) in CONTEXT_TABLES.items():
            query = sql.SQL("SELECT 1 FROM {}.{} WHERE originator_id = %s LIMIT 1").format(
                sql.Identifier(schema), sql.Identifier(table)
            )
            if self._conn.execute(query, (aggregate_id,)).fetchone():
                return context
        raise UnknownAggregateError(f"no events for aggregate {aggregate_id}")

    def history(self, aggregate_id: uuid.UUID) -> list[AuditRecord]:
        context = self.context_of(aggregate_id)
        return [
            self.record(context, n)
            for n in self._select(
                context, "originator_id = %s", (aggregate_id,), order="originator_version"
            )
        ]

    def head(self, context: str) -> int:
        schema, table = CONTEXT_TABLES[context]
        row = self._conn.execute(
            sql.SQL("SELECT coalesce(max(notification_id), 0) FROM {}.{}").format(
                sql.Identifier(schema), sql.Identifier(table)
            )
        ).fetchone()
        return int(row[0]) if row else 0

    def stream(
        self, context: str, *, start: int = 1, stop: int | None = None
    ) -> Iterator[Notification]:
        """Notifications of ``context`` with ``start <= position <= stop``, in position order."""
        position = start - 1
        while True:
            batch = list(
                self._select(
                    context,
                    "notification_id > %s" + (" AND notification_id <= %s" if stop else ""),
                    (position, stop) if stop else (position,),
                    order="notification_id",
                    limit=self._batch,
                )
            )
            yield from batch
            if len(batch) < self._batch:
                return
            position = batch[-1].id

    def trace(self, correlation_id: str) -> list[AuditRecord]:
        """Every event of every context that one request caused, oldest first."""
        found: list[AuditRecord] = []
        for context in CONTEXT_TABLES:
            for notification in self._select(
                context,
                "convert_from(state, 'UTF8')::jsonb -> '__meta__' ->> 'correlation_id' = %s",
                (correlation_id,),
                order="notification_id",
            ):
                found.append(self.record(context, notification))
        found.sort(key=lambda r: (r.occurred_at, r.context, r.position))
        return found

    def _select(
        self,
        context: str,
        where: str,
        params: tuple[object, ...],
        *,
        order: str,
        limit: int | None = None,
    ) -> Iterator[Notification]:
        schema, table = CONTEXT_TABLES[context]
        query = sql.SQL(
            "SELECT notification_id, originator_id, originator_version, topic, state "
            "FROM {}.{} WHERE "
            + where
            + " ORDER BY "
            + order
            + (f" LIMIT {int(limit)}" if limit else "")
        ).format(sql.Identifier(schema), sql.Identifier(table))
        for row in self._conn.execute(query, params):
            yield Notification(
                id=row[0],
                originator_id=row[1],
                originator_version=row[2],
                topic=row[3],
                state=bytes(row[4]),
            )


_ = StoredEvent
