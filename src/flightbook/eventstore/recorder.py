"""The PostgreSQL recorder every context uses: events, tracking and rows, in one transaction.

eventsourcing's process recorder already writes a follower's tracking record with the
events it decided. We add one hook: ``rows`` (:mod:`flightbook.eventstore.rows`) —
further changes (an idempotency key, a saga job) made in that same transaction, so a
command either happens with all of its bookkeeping or not at all — checked first by
``guards`` (a cap), and two questions: the position of an aggregate's stored event, and
the events of many aggregates after the versions a reader already holds (one statement).
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from eventsourcing.persistence import StoredEvent
from eventsourcing.postgres import PostgresProcessRecorder
from psycopg import sql

from flightbook.eventstore.rows import statements_of

if TYPE_CHECKING:
    import uuid
    from collections.abc import Sequence

    from psycopg import Connection, Cursor
    from psycopg.rows import DictRow

    from flightbook.eventstore.rows import Guard, Row

__all__ = ("TransactionalRecorder",)


class TransactionalRecorder(PostgresProcessRecorder):
    """Process recorder that also writes ``rows=[Row, ...]`` in the events' transaction.

    ``guards=[Guard, ...]`` run first in that transaction; one that raises refuses it.
    """

    def _insert_events(
        self, curs: Cursor[DictRow], stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> None:
        guards: Sequence[Guard] = kwargs.get("guards", ())
        for guard in guards:
            guard.verify(curs)  # before the table lock: a guard's lock never waits behind it
        rows: Sequence[Row] = kwargs.get("rows", ())
        for statement, params in statements_of(rows):
            curs.execute(statement, params)  # type: ignore[arg-type]
        super()._insert_events(curs, stored_events, **kwargs)

    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        if not stored_events and not kwargs.get("tracking") and not kwargs.get("rows"):
            return []
        ids: Sequence[int] | None = super().insert_events(stored_events, **kwargs)
        return ids

    def position_of(self, originator_id: uuid.UUID, version: int | None = None) -> int | None:
        """The position of the aggregate's event ``version`` (None: its latest)."""
        table = sql.SQL("{}.{}").format(
            sql.Identifier(self.datastore.schema), sql.Identifier(self.events_table_name)
        )
        if version is None:
            query = sql.SQL("SELECT max(notification_id) FROM {} WHERE originator_id = %s")
            params: tuple[object, ...] = (originator_id,)
        else:
            query = sql.SQL(
                "SELECT notification_id FROM {} WHERE originator_id = %s"
                " AND originator_version = %s"
            )
            params = (originator_id, version)
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(query.format(table), params)
            row = curs.fetchone()
        if row is None:
            return None
        value = next(iter(row.values())) if isinstance(row, dict) else row[0]
        return int(value) if value is not None else None

    def select_events_after(
        self, versions: Sequence[tuple[uuid.UUID, int]], *, conn: Connection[DictRow] | None = None
    ) -> list[StoredEvent]:
        """Every event of each aggregate after the version given (0: all), in one statement.

        Ordered by aggregate and version, so a reader can fast-forward what it holds. On
        ``conn`` when given (a transaction under way), else on a connection of the pool.
        """
        if not versions:
            return []
        table = sql.SQL("{}.{}").format(
            sql.Identifier(self.datastore.schema), sql.Identifier(self.events_table_name)
        )
        query = sql.SQL(
            "SELECT e.originator_id, e.originator_version, e.topic, e.state"
            " FROM unnest(%s::uuid[], %s::bigint[]) AS held(id, version)"
            " JOIN {} e ON e.originator_id = held.id AND e.originator_version > held.version"
            " ORDER BY e.originator_id, e.originator_version"
        ).format(table)
        ids = [aggregate_id for aggregate_id, _ in versions]
        held = [version for _, version in versions]
        with contextlib.ExitStack() as stack:
            if conn is None:
                conn = stack.enter_context(self.datastore.get_connection())
            curs = stack.enter_context(conn.cursor())
            curs.execute(query, (ids, held), prepare=True)
            return [
                StoredEvent(
                    originator_id=row["originator_id"],
                    originator_version=row["originator_version"],
                    topic=row["topic"],
                    state=bytes(row["state"]),
                )
                for row in curs.fetchall()
            ]

    def events_table(self) -> sql.Composed:
        """The schema-qualified events table."""
        return sql.SQL("{}.{}").format(
            sql.Identifier(self.datastore.schema), sql.Identifier(self.events_table_name)
        )
