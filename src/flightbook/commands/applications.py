"""The three event-sourced applications, one per bounded context, each in its own schema.

They share one base: PostgreSQL through the :class:`TransactionalRecorder`, the
:class:`MetadataMapper`, tables from ``migrations/`` (the library creates none), and
``record()`` — save aggregates together with a tracking record and extra statements in
one transaction. Command handlers retry optimistic-concurrency conflicts.
"""

from __future__ import annotations

import random
import time
from typing import TYPE_CHECKING, ClassVar, TypeVar
from urllib.parse import unquote, urlsplit
from uuid import UUID

from eventsourcing.application import Application, ProcessingEvent
from eventsourcing.persistence import IntegrityError, Tracking

from flightbook.eventstore.mapper import MetadataMapper

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from eventsourcing.domain import MutableOrImmutableAggregate
    from eventsourcing.persistence import ApplicationRecorder, Mapper, Recording

    from flightbook.eventstore.recorder import Statement

__all__ = (
    "CONTEXTS",
    "Bookings",
    "ContextApplication",
    "Inventory",
    "Payments",
    "postgres_env",
    "retry_conflicts",
)

T = TypeVar("T")


def postgres_env(url: str, *, schema: str, pool_size: int = 5) -> dict[str, str]:
    """Eventsourcing's environment for a PostgreSQL URL and a schema."""
    parts = urlsplit(url)
    return {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": (parts.path or "/").lstrip("/") or "postgres",
        "POSTGRES_HOST": parts.hostname or "127.0.0.1",
        "POSTGRES_PORT": str(parts.port or 5432),
        "POSTGRES_USER": unquote(parts.username or "postgres"),
        "POSTGRES_PASSWORD": unquote(parts.password or ""),
        "POSTGRES_SCHEMA": schema,
        "POSTGRES_POOL_SIZE": str(pool_size),
        "POSTGRES_MAX_OVERFLOW": str(pool_size * 2),
        "POSTGRES_CONNECT_TIMEOUT": "10",
        "CREATE_TABLE": "n",  # migrations/ own the DDL (ADR 0004)
        "POSTGRES_ENABLE_DB_FUNCTIONS": "n",  # keep the gap-safe table-lock insert path
        "PROCESS_RECORDER_TOPIC": "flightbook.eventstore.recorder:TransactionalRecorder",
    }


class ContextApplication(Application[UUID]):
    """An application of one bounded context (schema ``schema``)."""

    schema: ClassVar[str]

    def __init__(self, postgres_url: str, *, pool_size: int = 5) -> None:
        super().__init__(postgres_env(postgres_url, schema=self.schema, pool_size=pool_size))

    def construct_mapper(self) -> Mapper[UUID]:
        return MetadataMapper(transcoder=self.construct_transcoder())

    def construct_recorder(self) -> ApplicationRecorder:
        return self.factory.process_recorder()  # events + tracking tables of this context

    @property
    def metadata_mapper(self) -> MetadataMapper:
        mapper = self.mapper
        if not isinstance(mapper, MetadataMapper):  # pragma: no cover - construct_mapper says so
            raise TypeError("the application's mapper is not a MetadataMapper")
        return mapper

    def record(
        self,
        *objs: MutableOrImmutableAggregate[UUID] | None,
        tracking: Tracking | None = None,
        statements: Sequence[Statement] = (),
    ) -> list[Recording[UUID]]:
        """Store the aggregates' new events, the tracking record and ``statements`` atomically."""
        processing = ProcessingEvent[UUID](tracking=tracking)
        processing.collect_events(*objs, statements=list(statements))
        recordings = self._record(processing)
        self._notify(recordings)
        return recordings

    @staticmethod
    def last_position(recordings: Sequence[Recording[UUID]]) -> int | None:
        return recordings[-1].notification.id if recordings else None


class Bookings(ContextApplication):
    name = "Bookings"
    schema = "booking"


class Inventory(ContextApplication):
    name = "Inventory"
    schema = "inventory"


class Payments(ContextApplication):
    name = "Payments"
    schema = "payment"


CONTEXTS: dict[str, type[ContextApplication]] = {
    "booking": Bookings,
    "inventory": Inventory,
    "payment": Payments,
}


def retry_conflicts(
    attempt: Callable[[], T], *, attempts: int = 8, on_retry: Callable[[int], None] | None = None
) -> T:
    """Run ``attempt`` again when another writer got to the aggregate first.

    Optimistic concurrency: a conflicting save raises IntegrityError before anything is
    stored, so ``attempt`` (load, decide, save) can simply run again on fresh state.
    Backoff is exponential with full jitter, bounded by ``attempts``.
    """
    for number in range(1, attempts + 1):
        try:
            return attempt()
        except IntegrityError:
            if number == attempts:
                raise
            if on_retry is not None:
                on_retry(number)
            time.sleep(random.uniform(0, min(0.2, 0.005 * 2**number)))  # noqa: S311 - jitter
    raise AssertionError("unreachable")
