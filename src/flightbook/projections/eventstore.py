"""Reading the event store for the projections: catch-up, rebuild, repair of gaps, lookups.

Straight SQL on the contexts' events tables (``flightbook.audit.log.CONTEXT_TABLES``) through
a connection pool, decoded with the same metadata mapper as the write side and turned into
the published envelope with :func:`flightbook.contracts.to_envelope`, so an event read here
is exactly the message the relay would publish for it.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Protocol

from eventsourcing.persistence import (
    DatetimeAsISO,
    DecimalAsStr,
    JSONTranscoder,
    Notification,
    UUIDAsHex,
)
from eventsourcing.utils import resolve_topic
from psycopg import sql

from flightbook.audit.log import CONTEXT_TABLES
from flightbook.contracts import to_envelope, to_payload
from flightbook.eventstore.mapper import MetadataMapper
from flightbook.eventstore.pii import ERASED, SealedDataError

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from psycopg_pool import ConnectionPool

    from flightbook.contracts import Envelope
    from flightbook.eventstore.pii import PersonalDataVault

__all__ = (
    "UNREADABLE",
    "EventStoreReader",
    "HistorySource",
    "StoreLookups",
    "StoredItem",
    "is_public_topic",
)

UNREADABLE = "[unreadable]"
"""A passenger field whose sealed text could not be opened (not sealed, or altered)."""


@dataclass(frozen=True)
class StoredItem:
    """One stored event: where it is, and its envelope (None for a private event)."""

    position: int
    aggregate_id: uuid.UUID
    version: int
    occurred_at: dt.datetime
    envelope: Envelope | None


class HistorySource(Protocol):
    """Where the engine repairs a gap from: an aggregate's stored events."""

    def histories(
        self, context: str, wanted: Mapping[uuid.UUID, tuple[int, int]]
    ) -> dict[uuid.UUID, list[StoredItem]]:
        """For each aggregate, its events with ``after < version <= upto``, in version order."""
        ...


def _mapper() -> MetadataMapper:
    transcoder = JSONTranscoder()
    for transcoding in (UUIDAsHex(), DecimalAsStr(), DatetimeAsISO()):
        transcoder.register(transcoding)
    return MetadataMapper(transcoder=transcoder)


@cache
def is_public_topic(topic: str) -> bool:
    """Whether events of this stored topic are published (have a payload in the contract)."""
    try:
        event_class = resolve_topic(topic)
    except Exception:
        return True  # unknown class: it must be looked at, so count it as one to apply
    return to_payload.dispatch(event_class) is not to_payload.dispatch(object)


def _table(context: str) -> sql.Composed:
    schema, table = CONTEXT_TABLES[context]
    return sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(table))


class EventStoreReader:
    """The contexts' logs, read in batches through a pool.

    Args:
        pool: Connections to the event store database. Owned by the caller.
    """

    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool
        self._mapper = _mapper()

    def _item(self, context: str, row: Sequence[object]) -> StoredItem:
        notification = Notification(
            id=int(row[0]),  # type: ignore[call-overload]
            originator_id=row[1],  # type: ignore[arg-type]
            originator_version=int(row[2]),  # type: ignore[call-overload]
            topic=str(row[3]),
            state=bytes(row[4]),  # type: ignore[call-overload]
        )
        event, meta = self._mapper.decode(notification)
        envelope = to_envelope(context, notification, event, meta)  # type: ignore[arg-type]
        moment = getattr(event, "timestamp", None)
        return StoredItem(
            position=notification.id,
            aggregate_id=uuid.UUID(str(notification.originator_id)),
            version=notification.originator_version,
            occurred_at=moment if isinstance(moment, dt.datetime) else dt.datetime.now(dt.UTC),
            envelope=envelope,
        )

    def head(self, context: str) -> int:
        """The highest position of the context's log (0 when empty)."""
        query = sql.SQL("SELECT coalesce(max(notification_id), 0) FROM {}").format(_table(context))
        with self._pool.connection() as conn:
            row = conn.execute(query).fetchone()
        return int(row[0]) if row else 0

    def read(
        self, context: str, *, after: int, limit: int, upto: int | None = None
    ) -> list[StoredItem]:
        """Events with ``after < position <= upto``, in position order, at most ``limit``."""
        query = sql.SQL(
            "SELECT notification_id, originator_id, originator_version, topic, state FROM {}"
            " WHERE notification_id > %s"
            " AND notification_id <= %s ORDER BY notification_id LIMIT %s"
        ).format(_table(context))
        with self._pool.connection() as conn:
            rows = conn.execute(query, (after, upto if upto is not None else 2**62, limit))
            return [self._item(context, row) for row in rows.fetchall()]

    def histories(
        self, context: str, wanted: Mapping[uuid.UUID, tuple[int, int]]
    ) -> dict[uuid.UUID, list[StoredItem]]:
        if not wanted:
            return {}
        ids = list(wanted)
        low = min(after for after, _ in wanted.values())
        query = sql.SQL(
            "SELECT notification_id, originator_id, originator_version, topic, state FROM {}"
            " WHERE originator_id = ANY(%s)"
            " AND originator_version > %s ORDER BY originator_id, originator_version"
        ).format(_table(context))
        found: dict[uuid.UUID, list[StoredItem]] = {i: [] for i in ids}
        with self._pool.connection() as conn:
            rows = conn.execute(query, (ids, low)).fetchall()
        for row in rows:
            aggregate_id = uuid.UUID(str(row[1]))
            after, upto = wanted[aggregate_id]
            if after < int(row[2]) <= upto:
                found[aggregate_id].append(self._item(context, row))
        return found

    def positions(self, context: str, *, after: int, limit: int) -> list[tuple[int, bool]]:
        """``(position, published?)`` of the events after ``after``, at most ``limit``."""
        query = sql.SQL(
            "SELECT notification_id, topic FROM {} WHERE notification_id > %s"
            " ORDER BY notification_id LIMIT %s"
        ).format(_table(context))
        with self._pool.connection() as conn:
            rows = conn.execute(query, (after, limit)).fetchall()
        return [(int(row[0]), is_public_topic(str(row[1]))) for row in rows]

    def occurred_at_after(self, context: str, position: int) -> dt.datetime | None:
        """When the first event after ``position`` happened (None: there is none)."""
        items = self.read(context, after=position, limit=1)
        return items[0].occurred_at if items else None

    def flight_route(self, flight_id: str) -> tuple[str, str] | None:
        """``(origin, destination)`` from the flight's first event (routes never change)."""
        query = sql.SQL(
            "SELECT notification_id, originator_id, originator_version, topic, state FROM {}"
            " WHERE originator_id = %s AND originator_version = 1"
        ).format(_table("inventory"))
        try:
            flight = uuid.UUID(flight_id)
        except ValueError:
            return None
        with self._pool.connection() as conn:
            row = conn.execute(query, (flight,)).fetchone()
        if row is None:
            return None
        envelope = self._item("inventory", row).envelope
        payload = envelope.payload if envelope is not None else None
        origin = getattr(payload, "origin", None)
        destination = getattr(payload, "destination", None)
        if not isinstance(origin, str) or not isinstance(destination, str):
            return None
        return origin, destination


class StoreLookups:
    """:class:`~flightbook.projections.projectors.BookingLookups` on the event store and vault.

    Routes are cached for the life of the process (a flight's route never changes).

    Args:
        reader: The event store.
        vault: Opens the sealed passengers (None: they are shown as unreadable).
    """

    def __init__(self, reader: EventStoreReader, vault: PersonalDataVault | None) -> None:
        self._reader = reader
        self._vault = vault
        self._routes: dict[str, tuple[str, str]] = {}

    def route(self, flight_id: str) -> tuple[str, str] | None:
        found = self._routes.get(flight_id)
        if found is None:
            found = self._reader.flight_route(flight_id)
            if found is not None:
                self._routes[flight_id] = found
        return found

    def passengers(self, customer_id: str, sealed: str, count: int) -> list[dict[str, str]]:
        return open_passengers(self._vault, customer_id, sealed, count)


def open_passengers(
    vault: PersonalDataVault | None, customer_id: str, sealed: str, count: int
) -> list[dict[str, str]]:
    """The passengers as ``[{name, email}]``; erased or unreadable ones keep their place."""
    if vault is None:
        return [{"name": UNREADABLE, "email": UNREADABLE} for _ in range(count)]
    try:
        plain = vault.open(customer_id, sealed)
    except SealedDataError:
        return [{"name": UNREADABLE, "email": UNREADABLE} for _ in range(count)]
    if plain == ERASED:
        return [{"name": ERASED, "email": ERASED} for _ in range(count)]
    try:
        data = json.loads(plain)
    except ValueError:
        return [{"name": UNREADABLE, "email": UNREADABLE} for _ in range(count)]
    if not isinstance(data, list):
        return [{"name": UNREADABLE, "email": UNREADABLE} for _ in range(count)]
    return [
        {"name": str(p.get("name", "")), "email": str(p.get("email", ""))}
        if isinstance(p, dict)
        else {"name": UNREADABLE, "email": UNREADABLE}
        for p in data
    ]
