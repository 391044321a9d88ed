"""Reading the event store for the projections: catch-up, rebuild, repair of gaps, lookups.

The shared log reader (:mod:`flightbook.eventstore.log`) through a connection pool, each
event turned into the published envelope by the relay's own translation
(:func:`flightbook.relay.translate.to_envelope`), so an event read here is exactly the
message the relay would publish for it.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from flightbook.eventstore.contexts import INVENTORY
from flightbook.eventstore.log import LogReader
from flightbook.eventstore.pii import ERASED, SealedDataError
from flightbook.relay.translate import is_public_topic, to_envelope

if TYPE_CHECKING:
    from collections.abc import Mapping

    from eventsourcing.persistence import Notification
    from psycopg_pool import ConnectionPool

    from flightbook.contracts.envelope import Envelope
    from flightbook.eventstore.pii import PersonalDataVault

__all__ = (
    "UNREADABLE",
    "EventStoreReader",
    "HistorySource",
    "StoreLookups",
    "StoredItem",
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


class EventStoreReader:
    """The contexts' logs as the projections read them: stored events with their envelopes.

    Args:
        pool: Connections to the event store database. Owned by the caller.
    """

    def __init__(self, pool: ConnectionPool) -> None:
        self._log = LogReader.on_pool(pool)
        self._mapper = self._log.mapper

    def _item(self, context: str, notification: Notification) -> StoredItem:
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
        return self._log.head(context)

    def read(
        self, context: str, *, after: int, limit: int, upto: int | None = None
    ) -> list[StoredItem]:
        """Events with ``after < position <= upto``, in position order, at most ``limit``."""
        found = self._log.read(context, after=after, limit=limit, upto=upto)
        return [self._item(context, n) for n in found]

    def histories(
        self, context: str, wanted: Mapping[uuid.UUID, tuple[int, int]]
    ) -> dict[uuid.UUID, list[StoredItem]]:
        if not wanted:
            return {}
        low = min(after for after, _ in wanted.values())
        found: dict[uuid.UUID, list[StoredItem]] = {i: [] for i in wanted}
        for notification in self._log.of_aggregates(context, list(wanted), after_version=low):
            aggregate_id = uuid.UUID(str(notification.originator_id))
            after, upto = wanted[aggregate_id]
            if after < notification.originator_version <= upto:
                found[aggregate_id].append(self._item(context, notification))
        return found

    def positions(self, context: str, *, after: int, limit: int) -> list[tuple[int, bool]]:
        """``(position, published?)`` of the events after ``after``, at most ``limit``."""
        return [
            (position, is_public_topic(topic))
            for position, topic in self._log.topics(context, after=after, limit=limit)
        ]

    def occurred_at_after(self, context: str, position: int) -> dt.datetime | None:
        """When the first event after ``position`` happened (None: there is none)."""
        items = self.read(context, after=position, limit=1)
        return items[0].occurred_at if items else None

    def flight_route(self, flight_id: str) -> tuple[str, str] | None:
        """``(origin, destination)`` from the flight's first event (routes never change)."""
        try:
            flight = uuid.UUID(flight_id)
        except ValueError:
            return None
        first = self._log.first_of(INVENTORY.name, flight)
        if first is None:
            return None
        envelope = self._item(INVENTORY.name, first).envelope
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

    def forget(self, customer_id: str) -> None:
        if self._vault is not None:
            self._vault.forget(customer_id)


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
