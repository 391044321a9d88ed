"""Aggregates kept in memory and fast-forwarded, many in one query.

A flight's inventory is the aggregate every booking on it touches; replaying its whole
history at each load made a booking on a flight with 10,000 bookings cost ten thousand
events — in the saga's decisions and in the command API's check of the flight.
:class:`AggregateCache` keeps each aggregate it loaded (least recently used ones
leave past ``maxsize``) and, when a round needs a set of aggregates again, reads only the
events stored after the versions it holds — for all of them in one statement per context
(``select_events_after``) — and applies those. What another writer stored meanwhile (the
command API, the job workers) is therefore always seen before a decision.

The aggregates are the cache's own objects, not copies (copying a big flight would cost
what replaying it did). Their one writer is the cache's owner: the saga's round follower
changes them in memory and, when a round fails, must :meth:`forget` them so the next load
reads them from the log again. Readers in other threads (the command API's workers)
refresh and read under :attr:`lock`.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from eventsourcing.application import AggregateNotFoundError

if TYPE_CHECKING:
    from collections.abc import Iterable
    from uuid import UUID

    from eventsourcing.domain import Aggregate

    from flightbook.eventstore.applications import ContextApplication

__all__ = ("AggregateCache", "load_many")


def load_many(
    app: ContextApplication, ids: Iterable[UUID], *, conn: Any = None
) -> dict[UUID, Aggregate]:
    """The aggregates of ``ids`` that exist, each read whole, in one query (nothing kept)."""
    recorder: Any = app.recorder
    found: dict[UUID, Aggregate] = {}
    for stored in recorder.select_events_after([(i, 0) for i in dict.fromkeys(ids)], conn=conn):
        event = app.mapper.to_domain_event(stored)
        found[event.originator_id] = event.mutate(found.get(event.originator_id))  # type: ignore[attr-defined]
    return found


class AggregateCache:
    """Aggregates of one context, by id, brought up to date in batches.

    Args:
        app: the context whose log holds the aggregates.
        maxsize: how many aggregates to keep.
    """

    def __init__(self, app: ContextApplication, *, maxsize: int = 20_000) -> None:
        self.app = app
        self._maxsize = maxsize
        self._held: OrderedDict[UUID, Aggregate] = OrderedDict()
        self._read_at: dict[UUID, float] = {}
        self.lock = threading.RLock()
        """Held by every method; hold it too while reading what they returned."""
        self.loaded_events = 0
        """Events read from the log so far (to see that a warm cache reads only new ones)."""

    def refresh(self, ids: Iterable[UUID], *, conn: Any = None) -> dict[UUID, Aggregate]:
        """The aggregates of ``ids`` that exist, each brought up to date (one query).

        ``conn``: read on this connection (a transaction under way), else on the pool's.
        """
        with self.lock:
            return self._refresh(list(dict.fromkeys(ids)), conn)

    def _refresh(self, wanted: list[UUID], conn: Any = None) -> dict[UUID, Aggregate]:
        if not wanted:
            return {}
        versions = [(i, self._held[i].version if i in self._held else 0) for i in wanted]
        recorder: Any = self.app.recorder
        mapper = self.app.mapper
        for stored in recorder.select_events_after(versions, conn=conn):
            event = mapper.to_domain_event(stored)
            current = self._held.get(event.originator_id)
            if current is not None and event.originator_version != current.version + 1:
                raise RuntimeError(  # pragma: no cover - the query orders by version
                    f"{event.originator_id}: event {event.originator_version} after "
                    f"version {current.version}"
                )
            self._held[event.originator_id] = event.mutate(current)  # type: ignore[attr-defined]
            self.loaded_events += 1
        found: dict[UUID, Aggregate] = {}
        for aggregate_id in wanted:
            aggregate = self._held.get(aggregate_id)
            if aggregate is not None:
                self._held.move_to_end(aggregate_id)
                found[aggregate_id] = aggregate
        while len(self._held) > self._maxsize:
            evicted, _ = self._held.popitem(last=False)
            self._read_at.pop(evicted, None)
        return found

    def version_of(self, aggregate_id: UUID | str) -> int | None:
        """The version of the aggregate as held (None: not held)."""
        held = self._held.get(aggregate_id)  # type: ignore[arg-type]  # a log row: a UUID
        return None if held is None else int(held.version)

    def apply(self, event: Any) -> None:
        """Bring a held aggregate up to date with its next event, seen in its log.

        A follower that reads every event of the log keeps what it holds current this way,
        without a query. An event the aggregate already has (it was loaded after it) is
        passed over; one that leaves a gap drops the aggregate, which is read again when
        next needed.
        """
        with self.lock:
            held = self._held.get(event.originator_id)
            if held is None or event.originator_version <= held.version:
                return
            if event.originator_version != held.version + 1:
                self._held.pop(event.originator_id, None)
                self._read_at.pop(event.originator_id, None)
                return
            self._held[event.originator_id] = event.mutate(held)

    def held_or_load(self, ids: Iterable[UUID], *, conn: Any = None) -> dict[UUID, Aggregate]:
        """The aggregates of ``ids`` that exist: as held, the others read (one query).

        For a reader that keeps what it holds current with :meth:`apply`.
        """
        with self.lock:
            wanted = list(dict.fromkeys(ids))
            missing = [i for i in wanted if i not in self._held]
            if missing:
                self._refresh(missing, conn)
            found: dict[UUID, Aggregate] = {}
            for aggregate_id in wanted:
                aggregate = self._held.get(aggregate_id)
                if aggregate is not None:
                    self._held.move_to_end(aggregate_id)
                    found[aggregate_id] = aggregate
            return found

    def get(self, aggregate_id: UUID, *, conn: Any = None) -> Aggregate:
        """The aggregate brought up to date (raises ``AggregateNotFoundError``)."""
        found = self.refresh([aggregate_id], conn=conn).get(aggregate_id)
        if found is None:
            raise AggregateNotFoundError(aggregate_id)
        return found

    def find(self, aggregate_id: UUID, *, max_age: float = 0.0) -> Aggregate | None:
        """The aggregate brought up to date, or None if it does not exist.

        ``max_age``: seconds for which an aggregate brought up to date is good enough
        without reading the log again (0: always read).
        """
        with self.lock:
            if max_age > 0:
                read_at = self._read_at.get(aggregate_id)
                if read_at is not None and time.monotonic() - read_at < max_age:
                    return self._held.get(aggregate_id)
            found = self._refresh([aggregate_id]).get(aggregate_id)
            if found is not None:
                self._read_at[aggregate_id] = time.monotonic()
            return found

    def forget(self, ids: Iterable[UUID]) -> None:
        with self.lock:
            for aggregate_id in ids:
                self._held.pop(aggregate_id, None)
                self._read_at.pop(aggregate_id, None)
