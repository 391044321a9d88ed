"""The PostgreSQL recorder every context uses: events, tracking, and extra rows, in one transaction.

eventsourcing's process recorder already writes a follower's tracking record with the
events it decided. We add one hook: ``statements`` — further SQL (an idempotency record,
a saga job) executed in that same transaction, so a command either happens with all
of its bookkeeping or not at all.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from eventsourcing.postgres import PostgresProcessRecorder

if TYPE_CHECKING:
    from collections.abc import Sequence

    from eventsourcing.persistence import StoredEvent
    from psycopg import Cursor
    from psycopg.rows import DictRow
    from psycopg.sql import Composable

__all__ = ("Statement", "TransactionalRecorder")

Statement = tuple["str | Composable", "Sequence[object] | dict[str, object]"]


class TransactionalRecorder(PostgresProcessRecorder):
    """Process recorder that also runs ``statements=[(sql, params), ...]`` in the transaction."""

    def _insert_events(
        self, curs: Cursor[DictRow], stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> None:
        statements: Sequence[Statement] = kwargs.get("statements", ())
        for sql, params in statements:
            curs.execute(sql, params)  # type: ignore[arg-type]
        super()._insert_events(curs, stored_events, **kwargs)

    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        if not stored_events and not kwargs.get("tracking") and not kwargs.get("statements"):
            return []
        ids: Sequence[int] | None = super().insert_events(stored_events, **kwargs)
        return ids
