"""Many units of work of the three contexts stored in ONE transaction (ADR 0020).

A :class:`Batch` collects what several decisions stored: each aggregate's new events,
encoded at once under that decision's own metadata (its correlation and causation ids),
the rows that ride with them (a saga job, ``bookings_in_progress``) and a tracking record
per followed log. :meth:`Batch.commit` writes all of it in one PostgreSQL transaction on
one connection — the contexts' tables live in one database, in three schemas — in a fixed
context order (booking, inventory, payment), so two batches lock the events tables in the
same order and cannot deadlock. Either all of it is stored or none: an aggregate another
writer changed first raises ``IntegrityError`` before anything is committed.

On the in-memory store every part is checked first and then applied under the one lock
the three recorders share, so there too nothing of a refused batch is stored.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from psycopg import sql

from flightbook.eventstore.memory import MemoryRecorder
from flightbook.eventstore.recorder import TransactionalRecorder
from flightbook.eventstore.rows import statements_of

if TYPE_CHECKING:
    from collections.abc import Sequence
    from uuid import UUID

    from eventsourcing.domain import Aggregate, DomainEventProtocol
    from eventsourcing.persistence import StoredEvent, Tracking

    from flightbook.eventstore.applications import ContextApplication
    from flightbook.eventstore.metadata import EventMetadata
    from flightbook.eventstore.rows import Row

__all__ = ("Batch",)


@dataclass
class _Part:
    """What one context stores in the batch."""

    app: ContextApplication
    events: list[StoredEvent] = field(default_factory=list)
    rows: list[Row] = field(default_factory=list)
    tracking: list[Tracking] = field(default_factory=list)


class Batch:
    """Events, rows and tracking records of several contexts, stored together.

    Args:
        applications: the contexts, in the order their tables are locked.
    """

    def __init__(self, applications: Sequence[ContextApplication]) -> None:
        self._parts = {app.name: _Part(app) for app in applications}
        self._order = [app.name for app in applications]
        self.written: list[tuple[UUID, int]] = []
        """(aggregate id, version) of every event in the batch."""

    def collect(
        self, app: ContextApplication, aggregates: Sequence[Aggregate], rows: Sequence[Row] = ()
    ) -> list[tuple[DomainEventProtocol[UUID], EventMetadata]]:
        """Take the aggregates' pending events into the batch, encoded now; return them.

        Encoded now, so each carries the metadata of the unit of work open around this call
        (:func:`~flightbook.eventstore.metadata.recording`); the rows the context derives
        from its events (:meth:`ContextApplication.rows_for`) come after ``rows``.
        """
        part = self._parts[app.name]
        events = [event for aggregate in aggregates for event in aggregate.collect_events()]
        encoded: list[tuple[DomainEventProtocol[UUID], EventMetadata]] = []
        for event in events:
            stored, meta = app.metadata_mapper.encode(event)
            part.events.append(stored)
            self.written.append((event.originator_id, event.originator_version))
            encoded.append((event, meta))
        part.rows.extend(rows)
        part.rows.extend(app.rows_for(events))
        return encoded

    def add_rows(self, app: ContextApplication, rows: Sequence[Row]) -> None:
        self._parts[app.name].rows.extend(rows)

    def track(self, app: ContextApplication, tracking: Tracking) -> None:
        """Store ``tracking`` (a followed log's position) in ``app``'s tracking table."""
        self._parts[app.name].tracking.append(tracking)

    @property
    def empty(self) -> bool:
        return not any(p.events or p.rows or p.tracking for p in self._parts.values())

    def event_count(self) -> int:
        return len(self.written)

    def commit(self) -> None:
        """Store everything collected in one transaction (raises ``IntegrityError``)."""
        parts = [self._parts[name] for name in self._order]
        parts = [p for p in parts if p.events or p.rows or p.tracking]
        if not parts:
            return
        recorder = parts[0].app.recorder
        if isinstance(recorder, MemoryRecorder):
            _commit_in_memory(parts)
        else:
            _commit_in_postgres(parts)


def _postgres_recorder(part: _Part) -> TransactionalRecorder:
    recorder = part.app.recorder
    if not isinstance(recorder, TransactionalRecorder):  # pragma: no cover - configuration
        raise TypeError(f"{part.app.name} does not record in PostgreSQL")
    return recorder


def _commit_in_postgres(parts: Sequence[_Part]) -> None:
    datastore = _postgres_recorder(parts[0]).datastore
    failure: Exception | None = None
    with datastore.get_connection() as conn:
        with conn.pipeline() as pipeline, conn.transaction():
            with conn.cursor() as curs:
                for part in parts:
                    recorder = _postgres_recorder(part)
                    for statement, params in statements_of(part.rows):
                        curs.execute(statement, params)  # type: ignore[arg-type]
                    for tracking in part.tracking:
                        recorder._insert_tracking(curs, tracking)
            for part in parts:
                if not part.events:
                    continue
                recorder = _postgres_recorder(part)
                with conn.cursor() as curs:
                    try:
                        # the library's own table lock and NOTIFY: commit order is
                        # notification order in each log (ADR 0004)
                        recorder._lock_table(curs)
                        recorder._notify_channel(curs)
                        curs.execute(_insert_statement(recorder), _columns(part.events))
                        pipeline.sync()  # a conflict raises IntegrityError here
                    except Exception as exc:  # re-raised after the pipeline closed
                        failure = exc
                        break
        if failure is not None:
            raise failure


def _insert_statement(recorder: TransactionalRecorder) -> sql.Composed:
    """One INSERT of many events from column arrays.

    Column arrays rather than the library's array of the schema's composite type: this
    connection writes three schemas, each with its own type of the same name.
    """
    return sql.SQL(
        "INSERT INTO {}.{} (originator_id, originator_version, topic, state)"
        " SELECT * FROM unnest(%s::uuid[], %s::bigint[], %s::text[], %s::bytea[])"
    ).format(sql.Identifier(recorder.datastore.schema), sql.Identifier(recorder.events_table_name))


def _columns(events: Sequence[StoredEvent]) -> tuple[list[object], ...]:
    return (
        [e.originator_id for e in events],
        [e.originator_version for e in events],
        [e.topic for e in events],
        [e.state for e in events],
    )


def _commit_in_memory(parts: Sequence[_Part]) -> None:
    recorders = [part.app.recorder for part in parts]
    kwargs: list[dict[str, Any]] = [
        {"rows": part.rows, "tracking": part.tracking[-1] if part.tracking else None}
        for part in parts
    ]
    first = recorders[0]
    if not isinstance(first, MemoryRecorder):  # pragma: no cover - configuration
        raise TypeError("not an in-memory recorder")
    with first.database.lock:
        for part, recorder, extra in zip(parts, recorders, kwargs, strict=True):
            if len(part.tracking) > 1:
                raise ValueError("one tracking record per context and batch in memory")
            recorder._assert_uniqueness(part.events, **extra)  # type: ignore[attr-defined]
        for part, recorder, extra in zip(parts, recorders, kwargs, strict=True):
            recorder.insert_events(part.events, **extra)
