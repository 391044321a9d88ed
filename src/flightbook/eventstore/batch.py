"""Many units of work of the three contexts stored in ONE transaction (ADR 0020).

A :class:`Batch` collects what several decisions stored: each aggregate's new events,
encoded at once under that decision's own metadata (its correlation and causation ids),
the rows that ride with them (a saga job, ``bookings_in_progress``) and a tracking record
per followed log. :meth:`Batch.commit` writes all of it in one PostgreSQL transaction on
one connection — the contexts' tables live in one database, in three schemas — in a fixed
context order (booking, inventory, payment), so two batches lock the events tables in the
same order and cannot deadlock. Either all of it is stored or none: an aggregate another
writer changed first raises ``IntegrityError`` before anything is committed, and so does
an aggregate whose first new event does not follow a stored one (a writer that decided on
state the log does not hold: the store never gets a gap in an aggregate's versions).

On the in-memory store every part is checked first and then applied under the one lock
the three recorders share, so there too nothing of a refused batch is stored.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from eventsourcing.persistence import IntegrityError, Notification
from psycopg import sql

from flightbook.eventstore.memory import MemoryRecorder
from flightbook.eventstore.recorder import TransactionalRecorder
from flightbook.eventstore.rows import statements_of

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence
    from uuid import UUID

    from eventsourcing.domain import Aggregate, DomainEventProtocol
    from eventsourcing.persistence import StoredEvent, Tracking
    from psycopg import Connection

    from flightbook.eventstore.applications import ContextApplication
    from flightbook.eventstore.metadata import EventMetadata
    from flightbook.eventstore.rows import Row

__all__ = ("Batch", "read_logs", "session")


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

    def commit(self, conn: Connection[Any] | None = None) -> None:
        """Store everything collected in one transaction (raises ``IntegrityError``).

        ``conn``: a :func:`session`'s connection — the batch is then written in that
        session's transaction, which commits when the session ends.
        """
        parts = [self._parts[name] for name in self._order]
        parts = [p for p in parts if p.events or p.rows or p.tracking]
        if not parts:
            return
        recorder = parts[0].app.recorder
        if isinstance(recorder, MemoryRecorder):
            _commit_in_memory(parts)
        elif conn is not None:
            _write_in_postgres(parts, conn)
        else:
            datastore = _postgres_recorder(parts[0]).datastore
            with datastore.get_connection() as own, own.transaction():
                _write_in_postgres(parts, own)


@contextlib.contextmanager
def session(applications: Sequence[ContextApplication]) -> Iterator[Connection[Any] | None]:
    """One connection and one transaction for a unit of work's reads and its batch.

    Reads made on it (:func:`read_logs`, ``select_events_after(conn=…)``) and the batch
    (``Batch.commit(conn)``) then cost the database one transaction, committed when the
    block ends (rolled back if it raises). Yields None on the in-memory store.
    """
    recorder = applications[0].recorder
    if isinstance(recorder, MemoryRecorder):
        yield None
        return
    if not isinstance(recorder, TransactionalRecorder):  # pragma: no cover - configuration
        raise TypeError(f"{applications[0].name} does not record in PostgreSQL")
    with recorder.datastore.get_connection() as conn, conn.transaction():
        yield conn


def read_logs(
    reads: Sequence[tuple[ContextApplication, int, int]], conn: Connection[Any] | None
) -> dict[str, list[Notification]]:
    """The notifications of several logs, each ``(app, after, limit)``, in ONE statement.

    Each log's notifications come in its own order; on the in-memory store (``conn`` None)
    each log is read by its recorder.
    """
    if conn is None:
        return {
            app.name: list(app.recorder.select_notifications(start=after + 1, limit=limit))
            for app, after, limit in reads
        }
    selects = []
    params: list[object] = []
    for index, (app, after, limit) in enumerate(reads):
        selects.append(
            sql.SQL(
                "(SELECT {index}::int AS log, notification_id, originator_id, "
                "originator_version, topic, state FROM {table} WHERE notification_id > %s "
                "ORDER BY notification_id LIMIT %s)"
            ).format(index=sql.Literal(index), table=_postgres_recorder_of(app).events_table())
        )
        params += [after, limit]
    found: dict[str, list[Notification]] = {app.name: [] for app, _, _ in reads}
    with conn.cursor() as curs:
        curs.execute(sql.SQL(" UNION ALL ").join(selects), params, prepare=True)
        for row in curs.fetchall():
            log = row["log"] if isinstance(row, dict) else row[0]
            values = row if isinstance(row, dict) else None
            notification = (
                Notification(
                    id=values["notification_id"],
                    originator_id=values["originator_id"],
                    originator_version=values["originator_version"],
                    topic=values["topic"],
                    state=bytes(values["state"]),
                )
                if values is not None
                else Notification(
                    id=row[1],
                    originator_id=row[2],
                    originator_version=row[3],
                    topic=row[4],
                    state=bytes(row[5]),
                )
            )
            found[reads[log][0].name].append(notification)
    for notifications in found.values():
        notifications.sort(key=lambda n: n.id)
    return found


def _postgres_recorder(part: _Part) -> TransactionalRecorder:
    return _postgres_recorder_of(part.app)


def _postgres_recorder_of(app: ContextApplication) -> TransactionalRecorder:
    recorder = app.recorder
    if not isinstance(recorder, TransactionalRecorder):  # pragma: no cover - configuration
        raise TypeError(f"{app.name} does not record in PostgreSQL")
    return recorder


def _write_in_postgres(parts: Sequence[_Part], conn: Connection[Any]) -> None:
    """Write the parts on ``conn``, in the transaction open on it."""
    failure: Exception | None = None
    with conn.pipeline() as pipeline:
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
                    curs.execute(
                        _insert_statement(recorder),
                        (*_columns(part.events), *_first_versions(part.events)),
                    )
                    pipeline.sync()  # a conflict raises IntegrityError here
                    if curs.rowcount != len(part.events):
                        raise IntegrityError(
                            f"{recorder.events_table_name}: an event does not follow the "
                            "aggregate's stored version"
                        )
                except Exception as exc:  # re-raised after the pipeline closed
                    failure = exc
                    break
    if failure is not None:
        raise failure


def _insert_statement(recorder: TransactionalRecorder) -> sql.Composed:
    """One INSERT of many events from column arrays, or of none if one would leave a gap.

    Column arrays rather than the library's array of the schema's composite type: this
    connection writes three schemas, each with its own type of the same name. The last two
    arrays are each aggregate's first version in the batch: when one is not 1 and its
    predecessor is not stored, nothing is inserted (the caller compares the row count).
    """
    return sql.SQL(
        "INSERT INTO {table} (originator_id, originator_version, topic, state)"
        " SELECT * FROM unnest(%s::uuid[], %s::bigint[], %s::text[], %s::bytea[])"
        " WHERE NOT EXISTS (SELECT 1 FROM unnest(%s::uuid[], %s::bigint[]) AS first (id, v)"
        " WHERE first.v > 1 AND NOT EXISTS (SELECT 1 FROM {table} AS stored"
        " WHERE stored.originator_id = first.id AND stored.originator_version = first.v - 1))"
    ).format(
        table=sql.Identifier(recorder.datastore.schema, recorder.events_table_name),
    )


def _first_versions(events: Sequence[StoredEvent]) -> tuple[list[object], list[object]]:
    """Each aggregate's lowest version among ``events``: (ids, versions)."""
    first: dict[UUID | str, int] = {}
    for event in events:
        known = first.get(event.originator_id)
        if known is None or event.originator_version < known:
            first[event.originator_id] = event.originator_version
    return list(first), list(first.values())


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
