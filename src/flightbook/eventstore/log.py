"""Reading the contexts' notification logs with plain SQL: the one log reader.

The auditors' commands (:mod:`flightbook.audit.log`) and the projections' catch-up and
repairs (:mod:`flightbook.projections.history`) read the logs through this class, without
an eventsourcing application: straight ``SELECT``s on each context's events table
(:mod:`flightbook.eventstore.contexts`), in batches so that memory stays constant, decoded
with the same :class:`~flightbook.eventstore.mapper.MetadataMapper` as the write side.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from eventsourcing.persistence import (
    DatetimeAsISO,
    DecimalAsStr,
    JSONTranscoder,
    Notification,
    UUIDAsHex,
)
from psycopg import sql

from flightbook.eventstore.contexts import CONTEXTS, context
from flightbook.eventstore.mapper import MetadataMapper

if TYPE_CHECKING:
    import uuid
    from collections.abc import Callable, Collection, Iterator, Sequence
    from contextlib import AbstractContextManager

    import psycopg
    from psycopg_pool import ConnectionPool

__all__ = ("LogReader", "standalone_mapper")

_COLUMNS = sql.SQL("notification_id, originator_id, originator_version, topic, state")


def standalone_mapper() -> MetadataMapper:
    """The write side's mapper, for readers that have no application (same transcodings)."""
    transcoder = JSONTranscoder()
    for transcoding in (UUIDAsHex(), DecimalAsStr(), DatetimeAsISO()):
        transcoder.register(transcoding)
    return MetadataMapper(transcoder=transcoder)


def _notification(row: Sequence[Any]) -> Notification:
    return Notification(
        id=int(row[0]),
        originator_id=row[1],
        originator_version=int(row[2]),
        topic=str(row[3]),
        state=bytes(row[4]),
    )


class LogReader:
    """The three logs of one database, read through ``connect``.

    Args:
        connect: Opens a connection (``pool.connection``), or hands out one that is kept
            (:meth:`on_connection`). Owned by the caller.
        batch_size: Rows fetched per query while streaming.
    """

    def __init__(
        self,
        connect: Callable[[], AbstractContextManager[psycopg.Connection[Any]]],
        *,
        batch_size: int = 1000,
    ) -> None:
        self._connect = connect
        self.batch_size = batch_size
        self.mapper = standalone_mapper()

    @classmethod
    def on_pool(cls, pool: ConnectionPool, *, batch_size: int = 1000) -> LogReader:
        return cls(pool.connection, batch_size=batch_size)

    @classmethod
    def on_connection(cls, conn: psycopg.Connection[Any], *, batch_size: int = 1000) -> LogReader:
        """A reader on one connection that stays open (autocommit, for long exports)."""

        @contextlib.contextmanager
        def keep() -> Iterator[psycopg.Connection[Any]]:
            yield conn

        return cls(keep, batch_size=batch_size)

    def select(
        self,
        name: str,
        where: sql.Composable | str,
        params: Sequence[object] = (),
        *,
        order: str = "notification_id",
        limit: int | None = None,
    ) -> list[Notification]:
        """The context's notifications matching ``where``, in ``order``."""
        query = sql.SQL("SELECT {} FROM {} WHERE {} ORDER BY {}{}").format(
            _COLUMNS,
            context(name).events,
            sql.SQL(where) if isinstance(where, str) else where,
            sql.SQL(order),
            sql.SQL(f" LIMIT {int(limit)}" if limit else ""),
        )
        with self._connect() as conn:
            return [_notification(row) for row in conn.execute(query, params).fetchall()]

    def head(self, name: str) -> int:
        """The highest position of the context's log (0 when empty)."""
        query = sql.SQL("SELECT coalesce(max(notification_id), 0) FROM {}").format(
            context(name).events
        )
        with self._connect() as conn:
            row = conn.execute(query).fetchone()
        return int(row[0]) if row else 0

    def read(
        self, name: str, *, after: int, limit: int, upto: int | None = None
    ) -> list[Notification]:
        """Notifications with ``after < position <= upto``, in position order, at most ``limit``."""
        return self.select(
            name,
            "notification_id > %s AND notification_id <= %s",
            (after, upto if upto is not None else 2**62),
            limit=limit,
        )

    def stream(
        self, name: str, *, start: int = 1, stop: int | None = None
    ) -> Iterator[Notification]:
        """Notifications with ``start <= position <= stop``, in position order, batch by batch."""
        position = start - 1
        while True:
            batch = self.read(name, after=position, limit=self.batch_size, upto=stop)
            yield from batch
            if len(batch) < self.batch_size:
                return
            position = batch[-1].id

    def of_aggregate(self, name: str, aggregate_id: uuid.UUID) -> list[Notification]:
        """The aggregate's notifications in version order."""
        return self.select(name, "originator_id = %s", (aggregate_id,), order="originator_version")

    def of_aggregates(
        self, name: str, aggregate_ids: Collection[uuid.UUID], *, after_version: int = 0
    ) -> list[Notification]:
        """The aggregates' notifications after ``after_version``, by aggregate then version."""
        return self.select(
            name,
            "originator_id = ANY(%s) AND originator_version > %s",
            (list(aggregate_ids), after_version),
            order="originator_id, originator_version",
        )

    def first_of(self, name: str, aggregate_id: uuid.UUID) -> Notification | None:
        """The aggregate's first notification (version 1), if it has one."""
        found = self.select(
            name, "originator_id = %s AND originator_version = 1", (aggregate_id,), limit=1
        )
        return found[0] if found else None

    def topics(self, name: str, *, after: int, limit: int) -> list[tuple[int, str]]:
        """``(position, stored topic)`` of the notifications after ``after``."""
        query = sql.SQL(
            "SELECT notification_id, topic FROM {} WHERE notification_id > %s"
            " ORDER BY notification_id LIMIT %s"
        ).format(context(name).events)
        with self._connect() as conn:
            rows = conn.execute(query, (after, limit)).fetchall()
        return [(int(row[0]), str(row[1])) for row in rows]

    def context_of(self, aggregate_id: uuid.UUID) -> str | None:
        """The context whose log has events of ``aggregate_id`` (None: none has)."""
        with self._connect() as conn:
            for spec in CONTEXTS:
                query = sql.SQL("SELECT 1 FROM {} WHERE originator_id = %s LIMIT 1").format(
                    spec.events
                )
                if conn.execute(query, (aggregate_id,)).fetchone():
                    return spec.name
        return None
