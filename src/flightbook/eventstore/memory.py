"""The in-memory event store: the library's POPO recorders plus the rows that ride with them.

``FLIGHTBOOK_EVENT_STORE=memory`` (unit tests) runs the three applications on
:class:`MemoryRecorder`s that share one :class:`MemoryDatabase`: the tables the rows
(:mod:`flightbook.eventstore.rows`) write, seen by the in-memory adapters (idempotency
keys, saga jobs, personal-data keys). Nothing survives the process.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from eventsourcing.popo import POPOProcessRecorder

if TYPE_CHECKING:
    import uuid
    from collections.abc import Hashable, Sequence

    from eventsourcing.persistence import StoredEvent

    from flightbook.eventstore.rows import Guard, Row

__all__ = ("MemoryDatabase", "MemoryRecorder")


class MemoryDatabase:
    """Tables of rows by key, shared by the recorders and the in-memory adapters."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.tables: dict[str, dict[Hashable, dict[str, Any]]] = {}

    def table(self, name: str) -> dict[Hashable, dict[str, Any]]:
        """The table ``name`` (created empty on first use); change it under :attr:`lock`."""
        return self.tables.setdefault(name, {})


class MemoryRecorder(POPOProcessRecorder):
    """A POPO process recorder that also stores the transaction's rows, atomically.

    Args:
        database: Where the rows go (shared by the three contexts' recorders).
    """

    def __init__(self, database: MemoryDatabase) -> None:
        super().__init__()
        self.database = database
        self._database_lock = database.lock  # one lock: events and rows change together

    def _assert_uniqueness(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> None:
        guards: Sequence[Guard] = kwargs.get("guards", ())
        for guard in guards:
            guard.check(self.database)
        super()._assert_uniqueness(stored_events, **kwargs)
        rows: Sequence[Row] = kwargs.get("rows", ())
        for row in rows:
            row.check(self.database)

    def _update_table(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        rows: Sequence[Row] = kwargs.get("rows", ())
        for row in rows:
            row.apply(self.database)
        return super()._update_table(stored_events, **kwargs)

    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        ids = super().insert_events(stored_events, **kwargs)
        return ids if ids is not None else []

    def position_of(self, originator_id: uuid.UUID, version: int | None = None) -> int | None:
        """The position of the aggregate's event ``version`` (None: its latest)."""
        with self._database_lock:
            index = self._stored_events_index.get(str(originator_id), {})
            if not index:
                return None
            wanted = max(index) if version is None else version
            found = index.get(wanted)
            return None if found is None else found + 1

    def select_events_after(
        self, versions: Sequence[tuple[uuid.UUID, int]], *, conn: object = None
    ) -> list[StoredEvent]:
        """Every event of each aggregate after the version given (0: all); no connections."""
        with self._database_lock:
            return [
                stored
                for aggregate_id, version in sorted(versions, key=lambda pair: str(pair[0]))
                for stored in self.select_events(aggregate_id, gt=version)
            ]
