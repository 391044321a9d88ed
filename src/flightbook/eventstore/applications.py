"""The three event-sourced applications, one per bounded context, and the store holding them.

They share one base: the :class:`MetadataMapper`, tables from ``migrations/`` (the
library creates none), typed getters of their aggregates, and ``record()`` — save
aggregates together with a tracking record and rows (:mod:`flightbook.eventstore.rows`)
in one transaction, checked first by guards; the Bookings application adds the rows of
``booking.bookings_in_progress`` (:mod:`flightbook.eventstore.inprogress`) itself. Their
persistence comes from :class:`~flightbook.config.settings.Settings`: PostgreSQL through
the :class:`TransactionalRecorder`, or the library's in-memory recorders
(``event_store = "memory"``, for unit tests). Command handlers retry
optimistic-concurrency conflicts (:func:`retry_conflicts`).
"""

from __future__ import annotations

import math
import random
import time
from typing import TYPE_CHECKING, ClassVar, TypeVar
from urllib.parse import unquote, urlsplit
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application, ProcessingEvent
from eventsourcing.persistence import IntegrityError, Tracking

from flightbook.config.settings import require
from flightbook.domain.booking import Booking
from flightbook.domain.inventory import FlightInventory
from flightbook.domain.payment import Payment, payment_id_for
from flightbook.domain.subject import DataSubject, data_subject_id
from flightbook.eventstore.contexts import BOOKING, INVENTORY, PAYMENT
from flightbook.eventstore.customers import bookings_of, customer_booking_rows
from flightbook.eventstore.inprogress import in_progress_rows
from flightbook.eventstore.mapper import MetadataMapper
from flightbook.eventstore.memory import MemoryDatabase, MemoryRecorder
from flightbook.eventstore.recorder import TransactionalRecorder

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

    from eventsourcing.domain import MutableOrImmutableAggregate
    from eventsourcing.persistence import ApplicationRecorder, Mapper, Recording

    from flightbook.config.settings import Settings
    from flightbook.eventstore.contexts import ContextSpec
    from flightbook.eventstore.rows import Guard, Row

__all__ = (
    "Bookings",
    "ContextApplication",
    "EventStore",
    "Inventory",
    "Payments",
    "postgres_env",
    "retry_conflicts",
)

T = TypeVar("T")


_RECORDER_TOPIC = f"{TransactionalRecorder.__module__}:{TransactionalRecorder.__qualname__}"


def postgres_env(
    url: str, *, schema: str, pool_size: int = 5, pool_timeout: float = 10.0
) -> dict[str, str]:
    """Eventsourcing's environment for a PostgreSQL URL and a schema.

    ``pool_timeout``: how long a caller waits for a connection (whole seconds, at least one)
    before the library raises its ``OperationalError`` (e.g. while PostgreSQL is away).
    """
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
        "POSTGRES_CONNECT_TIMEOUT": str(max(1, math.ceil(pool_timeout))),
        "CREATE_TABLE": "n",  # migrations/ own the DDL (ADR 0004)
        "POSTGRES_ENABLE_DB_FUNCTIONS": "n",  # keep the gap-safe table-lock insert path
        "PROCESS_RECORDER_TOPIC": _RECORDER_TOPIC,
    }


class ContextApplication(Application[UUID]):
    """The application of one bounded context (:attr:`spec`).

    Args:
        settings: Where its events are stored (``event_store``, ``postgres_url``).
        pool_size: PostgreSQL connections it may hold.
        database: The in-memory tables its rows go to (memory only; shared by the three).
    """

    spec: ClassVar[ContextSpec]

    def __init__(
        self,
        settings: Settings,
        *,
        pool_size: int = 5,
        pool_timeout: float = 10.0,
        database: MemoryDatabase | None = None,
    ) -> None:
        self._memory = database
        if settings.event_store == "memory":
            self._memory = database if database is not None else MemoryDatabase()
            env = {"PERSISTENCE_MODULE": "eventsourcing.popo"}
        else:
            url = require(settings.postgres_url, "postgres_url")
            env = postgres_env(
                url, schema=self.spec.schema, pool_size=pool_size, pool_timeout=pool_timeout
            )
        super().__init__(env)

    def construct_mapper(self) -> Mapper[UUID]:
        return MetadataMapper(transcoder=self.construct_transcoder())

    def construct_recorder(self) -> ApplicationRecorder:
        if self._memory is not None:
            return MemoryRecorder(self._memory)
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
        rows: Sequence[Row] = (),
        guards: Sequence[Guard] = (),
    ) -> list[Recording[UUID]]:
        """Store the aggregates' new events, the tracking record and ``rows`` atomically.

        ``guards`` check first, in the same transaction; the rows that follow from the
        events themselves (:meth:`rows_for`) are written after ``rows``.
        """
        processing = ProcessingEvent[UUID](tracking=tracking)
        processing.collect_events(*objs)
        derived = self.rows_for(processing.events)
        processing.collect_events(rows=[*rows, *derived], guards=list(guards))
        recordings = self._record(processing)
        self._notify(recordings)
        return recordings

    def rows_for(self, events: Sequence[object]) -> list[Row]:
        """Rows that the context keeps in step with its events (none by default)."""
        return []

    def position_of(self, aggregate_id: UUID, version: int | None = None) -> int | None:
        """The position of the aggregate's event ``version`` in this log (None: its latest)."""
        recorder = self.recorder
        if not isinstance(recorder, (TransactionalRecorder, MemoryRecorder)):  # pragma: no cover
            raise TypeError("the application's recorder cannot tell positions")
        return recorder.position_of(aggregate_id, version)

    def tracked_position(self, source: str) -> int:
        """The last position of application ``source``'s log answered by a step stored here."""
        recorder = self.recorder
        found = recorder.max_tracking_id(source)  # type: ignore[attr-defined]
        return int(found) if found is not None else 0

    @staticmethod
    def last_position(recordings: Sequence[Recording[UUID]]) -> int | None:
        return recordings[-1].notification.id if recordings else None


class Bookings(ContextApplication):
    name = BOOKING.application
    spec = BOOKING

    def rows_for(self, events: Sequence[object]) -> list[Row]:
        """Keep ``booking.bookings_in_progress`` and ``booking.customer_bookings`` in step."""
        return [*in_progress_rows(events), *customer_booking_rows(events)]

    def customer_bookings(self, customer_id: str) -> list[UUID]:
        """The ids of every booking the customer requested (``booking.customer_bookings``)."""
        return bookings_of(self.recorder, customer_id)

    def find_data_subject(self, customer_id: str) -> DataSubject | None:
        """The customer's data subject, if an erasure was ever recorded for them."""
        try:
            found: object = self.repository.get(data_subject_id(customer_id))
        except AggregateNotFoundError:
            return None
        return found if isinstance(found, DataSubject) else None

    def booking(self, booking_id: UUID) -> Booking:
        """The booking (raises ``AggregateNotFoundError``)."""
        found: Booking = self.repository.get(booking_id)
        return found

    def find_booking(self, booking_id: UUID) -> Booking | None:
        try:
            found: object = self.repository.get(booking_id)
        except AggregateNotFoundError:
            return None
        return found if isinstance(found, Booking) else None


class Inventory(ContextApplication):
    name = INVENTORY.application
    spec = INVENTORY

    def flight(self, flight_id: UUID) -> FlightInventory:
        """The flight (raises ``AggregateNotFoundError``)."""
        found: FlightInventory = self.repository.get(flight_id)
        return found

    def find_flight(self, flight_id: UUID) -> FlightInventory | None:
        try:
            found: object = self.repository.get(flight_id)
        except AggregateNotFoundError:
            return None
        return found if isinstance(found, FlightInventory) else None


class Payments(ContextApplication):
    name = PAYMENT.application
    spec = PAYMENT

    def payment_of(self, booking_id: UUID) -> Payment | None:
        """The payment of a booking, if there is one yet."""
        try:
            found: object = self.repository.get(payment_id_for(booking_id))
        except AggregateNotFoundError:
            return None
        return found if isinstance(found, Payment) else None


class EventStore:
    """The write model: the three applications on one database (or one in-memory store).

    Args:
        settings: Where the events are stored.
        pool_size: PostgreSQL connections each application may hold.
    """

    def __init__(
        self, settings: Settings, *, pool_size: int = 5, pool_timeout: float = 10.0
    ) -> None:
        self.memory = MemoryDatabase() if settings.event_store == "memory" else None
        size, wait, memory = pool_size, pool_timeout, self.memory
        self.bookings = Bookings(settings, pool_size=size, pool_timeout=wait, database=memory)
        self.inventory = Inventory(settings, pool_size=size, pool_timeout=wait, database=memory)
        self.payments = Payments(settings, pool_size=size, pool_timeout=wait, database=memory)

    @property
    def applications(self) -> tuple[Bookings, Inventory, Payments]:
        return (self.bookings, self.inventory, self.payments)

    def __iter__(self) -> Iterator[ContextApplication]:
        return iter(self.applications)

    def application(self, context: str) -> ContextApplication:
        """The application of ``context`` (``booking``, ``inventory``, ``payment``)."""
        for app in self.applications:
            if app.spec.name == context:
                return app
        raise KeyError(context)

    def close(self) -> None:
        for app in self.applications:
            app.close()


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
