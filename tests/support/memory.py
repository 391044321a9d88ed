"""An in-memory write side for unit tests: the three applications, flights, bookings, the saga.

Everything runs on the library's POPO recorders sharing one
:class:`~flightbook.eventstore.memory.MemoryDatabase` (``Settings(event_store="memory")``):
no sockets, nothing survives the test. Time is a :class:`Clock` that only the test moves,
so a hold expires when the test says so and job deadlines are exact.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from eventsourcing.domain import Aggregate

from flightbook.commands.idempotency import MemoryIdempotencyKeys
from flightbook.commands.service import CommandService
from flightbook.config.settings import Settings
from flightbook.domain.booking import Booking, CancellationReason
from flightbook.domain.inventory import FlightInventory
from flightbook.domain.payment import Payment
from flightbook.domain.values import Cabin, Fare, Money
from flightbook.eventstore.applications import ContextApplication, EventStore
from flightbook.eventstore.memory import MemoryDatabase
from flightbook.eventstore.metadata import EventMetadata, recording
from flightbook.eventstore.pii import PersonalDataVault
from flightbook.payments.memory import InMemoryGateway
from flightbook.saga.follower import LogFollower
from flightbook.saga.jobs import JobKind, MemoryJobQueue
from flightbook.saga.rounds import RoundFollower
from flightbook.saga.runner import JobRunner
from flightbook.saga.steps import SagaSteps
from tests.support.builders import a_booking, a_flight

__all__ = (
    "HOLD_SECONDS",
    "MEMORY",
    "PRICE",
    "START",
    "Clock",
    "MemorySaga",
    "cancel_booking",
    "cancel_flight",
    "command_service",
    "event_counts",
    "fare",
    "memory_of",
    "memory_store",
    "memory_vault",
    "request_booking",
    "save",
    "schedule_flight",
    "stored",
)

E = TypeVar("E")

START = dt.datetime(2030, 1, 7, 9, 0, tzinfo=dt.UTC)
"""Where every :class:`Clock` starts: flights are scheduled relative to it."""
HOLD_SECONDS = 600.0
PRICE = 45_000
"""Price of one seat of the default fare, in minor units of EUR."""
MEMORY = Settings(event_store="memory")


class Clock:
    """The current UTC time, moved only by :meth:`advance`."""

    def __init__(self, start: dt.datetime = START) -> None:
        self.now = start

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, seconds: float) -> dt.datetime:
        self.now += dt.timedelta(seconds=seconds)
        return self.now


class Seconds:
    """A monotonic clock in seconds (as ``time.monotonic``), moved by setting :attr:`now`."""

    def __init__(self, start: float = 0.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


# -- the write side ----------------------------------------------------------------------------


def memory_store() -> EventStore:
    """The three applications on one fresh in-memory database."""
    return EventStore(MEMORY)


def memory_of(store: EventStore) -> MemoryDatabase:
    """The tables the store's rows go to (idempotency keys, jobs, personal-data keys)."""
    if store.memory is None:
        raise TypeError("not an in-memory event store")
    return store.memory


def memory_vault(store: EventStore) -> PersonalDataVault:
    """A vault whose keys are in the store's in-memory tables, under a KEK of its own.

    Two vaults made this way cannot open each other's keys: share one (``MemorySaga.vault``)
    between the command side and the saga.
    """
    return PersonalDataVault.in_memory(memory_of(store))


def command_service(
    store: EventStore, clock: Clock, *, vault: PersonalDataVault | None = None
) -> CommandService:
    """The command use cases on ``store``, with in-memory keys and vault."""
    return CommandService(
        store=store,
        keys=MemoryIdempotencyKeys(memory_of(store)),
        vault=vault if vault is not None else memory_vault(store),
        settings=MEMORY,
        clock=clock,
    )


def save(app: ContextApplication, *aggregates: Aggregate, actor: str = "test") -> None:
    """Store the aggregates' new events as ``actor`` would (outside the saga)."""
    with recording(actor=actor):
        app.record(*aggregates)


def fare(
    code: str = "Y",
    *,
    seats: int = 10,
    refundable: bool = False,
    price: int = PRICE,
    overbooking: int = 0,
) -> Fare:
    return Fare(
        code=code,
        cabin=Cabin.ECONOMY,
        price=Money(price, "EUR"),
        seats=seats,
        refundable=refundable,
        overbooking=overbooking,
    )


def schedule_flight(
    store: EventStore,
    *,
    seats: int = 10,
    refundable: bool = False,
    price: int = PRICE,
    departure: dt.datetime | None = None,
    fares: Sequence[Fare] | None = None,
) -> uuid.UUID:
    """Store a flight LHR-JFK (one fare ``Y`` unless ``fares``), departing 30 days after START."""
    departs = departure if departure is not None else START + dt.timedelta(days=30)
    if fares is None:
        fares = [fare(seats=seats, refundable=refundable, price=price)]
    flight = a_flight(departure=departs, fares=list(fares))
    save(store.inventory, flight, actor="ops")
    return flight.id


def request_booking(
    store: EventStore,
    flight_id: uuid.UUID,
    *,
    token: str = "tok_ok",  # noqa: S107 - a test card token
    passengers: int = 1,
    customer: str = "alice",
    fare_code: str = "Y",
    correlation_id: str | None = None,
) -> uuid.UUID:
    """Store a ``Booking.Requested`` as the command side would (priced from the flight's fare).

    A flight that does not exist (or lacks the fare) gets the default price, not refundable.
    """
    flight = store.inventory.find_flight(flight_id)
    terms: dict[str, Any] = {"price": PRICE, "refundable": False, "fare": fare_code}
    terms.update(customer=customer, token=token, passengers=passengers, sealed="pii1:sealed")
    if flight is not None and fare_code in flight.fares:
        booked = flight.fare(fare_code)
        terms.update(price=booked.price.amount, refundable=booked.refundable)
    booking = a_booking(flight_id, **terms)
    with recording(actor=customer, correlation_id=correlation_id):
        store.bookings.record(booking)
    return booking.id


def cancel_booking(
    store: EventStore,
    booking_id: uuid.UUID,
    *,
    by: str = "alice",
    reason: CancellationReason = CancellationReason.CUSTOMER,
) -> None:
    """Store the booking's cancellation, as its owner (or an agent) asking for it would."""
    booking = store.bookings.booking(booking_id)
    booking.cancel(reason, by=by)
    save(store.bookings, booking, actor=by)


def cancel_flight(store: EventStore, flight_id: uuid.UUID, reason: str = "weather") -> None:
    flight = store.inventory.flight(flight_id)
    flight.cancel(reason)
    save(store.inventory, flight, actor="ops")


# -- reading the logs --------------------------------------------------------------------------


def stored(app: ContextApplication) -> list[tuple[object, EventMetadata]]:
    """Every event of the application's log, oldest first, with its metadata."""
    notifications = app.recorder.select_notifications(start=1, limit=100_000)
    return [app.metadata_mapper.decode(n) for n in notifications]


def event_counts(store: EventStore) -> dict[str, int]:
    """How many events each context's log holds."""
    return {app.spec.name: app.recorder.max_notification_id() or 0 for app in store}


# -- the saga ----------------------------------------------------------------------------------


class MemorySaga:
    """The saga on an in-memory store, driven by the test: no threads, no sockets.

    :meth:`answer` is one pass of the log follower over the three logs (each log read to
    its end, in the order bookings, inventory, payments), :meth:`run_jobs` runs the jobs
    due now, :meth:`settle` alternates both until nothing moves, :meth:`advance` moves
    the clock. The gateway never sleeps (``tok_timeout`` fails at once).

    Args:
        store: the write side (default: a fresh in-memory one).
        hold_seconds: how long seats are held for a payment.
        clock: the time (default: a :class:`Clock` at :data:`START`).
        gateway: the payment gateway (default: an :class:`InMemoryGateway`).
        steps_class: the saga's decisions (a subclass may watch them).
        runner_class: the job runner (a subclass may watch the jobs).
        batched: follow the logs in rounds (the saga process's :class:`RoundFollower`)
            rather than one event per step (the reference :class:`LogFollower`).
    """

    def __init__(
        self,
        store: EventStore | None = None,
        *,
        hold_seconds: float = HOLD_SECONDS,
        clock: Clock | None = None,
        gateway: InMemoryGateway | None = None,
        steps_class: type[SagaSteps] = SagaSteps,
        runner_class: type[JobRunner] = JobRunner,
        batched: bool = False,
    ) -> None:
        self.store = store if store is not None else memory_store()
        self.clock = clock if clock is not None else Clock()
        self.gateway = gateway if gateway is not None else InMemoryGateway(sleep=_no_sleep)
        self.hold_seconds = hold_seconds
        self.steps = steps_class(store=self.store, hold_seconds=hold_seconds, clock=self.clock)
        apps = self.store.applications
        self.notes: list[str] = []
        """The outcome of every step the follower stored, in order (``"seats held"``...)."""
        self.follower: LogFollower
        if batched:
            self.follower = RoundFollower(
                store=self.store,
                steps=self.steps,
                postgres_url="",
                clock=self.clock,
                on_step=lambda _source, note: self.notes.append(note),
            )
        else:
            self.follower = LogFollower(
                sources=apps,
                targets=apps,
                steps=self.steps,
                postgres_url="",
                on_step=lambda _source, note: self.notes.append(note),
            )
        self.queue = MemoryJobQueue(memory_of(self.store))
        self.vault = memory_vault(self.store)
        """The vault the command side seals with (the saga opens the payment tokens)."""
        self.runner = runner_class(
            queue=self.queue,
            store=self.store,
            gateway=self.gateway,
            vault=self.vault,
            clock=self.clock,
        )

    # -- driving --------------------------------------------------------------------------------

    def answer(self) -> int:
        """One pass of the follower: answer every event stored so far; how many it read."""
        return self.follower.run_once()

    def run_jobs(self, *, max_jobs: int = 1000) -> int:
        """Run the jobs due now (and those they make due now); how many ran."""
        ran = 0
        while ran < max_jobs:
            batch = self.runner.run_due(10)
            if batch == 0:
                return ran
            ran += batch
        raise AssertionError(f"jobs kept coming due: {self.queue.jobs()}")

    def settle(self, *, max_rounds: int = 100) -> None:
        """Answer events and run due jobs until nothing is left to do at this time."""
        for _ in range(max_rounds):
            if self.answer() + self.run_jobs() == 0:
                return
        raise AssertionError("the saga did not settle")

    def run_until(self, done: Callable[[], bool], *, max_moves: int = 50) -> None:
        """Move in the smallest steps there are (a follower pass, else the due jobs) until
        ``done()``: a test can stop the saga exactly where the next event is unanswered."""
        for _ in range(max_moves):
            if done():
                return
            if self.answer() == 0 and self.run_jobs() == 0:
                raise AssertionError("the saga settled before the condition held")
        raise AssertionError("the condition did not hold")

    def advance(self, seconds: float) -> None:
        """Move the clock (nothing runs until the next :meth:`settle`)."""
        self.clock.advance(seconds)

    def pending_jobs(self) -> set[tuple[uuid.UUID, JobKind]]:
        return set(self.queue.jobs())

    # -- shortcuts ------------------------------------------------------------------------------

    def schedule_flight(
        self,
        *,
        seats: int = 10,
        refundable: bool = False,
        price: int = PRICE,
        departure: dt.datetime | None = None,
    ) -> uuid.UUID:
        return schedule_flight(
            self.store, seats=seats, refundable=refundable, price=price, departure=departure
        )

    def request_booking(
        self,
        flight_id: uuid.UUID,
        *,
        token: str = "tok_ok",  # noqa: S107 - a test card token
        passengers: int = 1,
        customer: str = "alice",
    ) -> uuid.UUID:
        return request_booking(
            self.store, flight_id, token=token, passengers=passengers, customer=customer
        )

    def cancel_booking(self, booking_id: uuid.UUID, *, by: str = "alice") -> None:
        cancel_booking(self.store, booking_id, by=by)

    def cancel_flight(self, flight_id: uuid.UUID, reason: str = "weather") -> None:
        cancel_flight(self.store, flight_id, reason)

    def booking(self, booking_id: uuid.UUID) -> Booking:
        return self.store.bookings.booking(booking_id)

    def flight(self, flight_id: uuid.UUID) -> FlightInventory:
        return self.store.inventory.flight(flight_id)

    def payment(self, booking_id: uuid.UUID) -> Payment | None:
        return self.store.payments.payment_of(booking_id)

    def ledger(self, booking_id: uuid.UUID) -> list[tuple[str, int]]:
        """(operation, amount) of what the gateway accepted for the booking, oldest first."""
        return [(e.operation, e.amount) for e in self.gateway.entries_for_booking(str(booking_id))]

    def last(self, event_type: type[E], booking_id: uuid.UUID | None = None) -> E:
        """The newest stored event of ``event_type`` (about ``booking_id``, if given)."""
        for app in self.store:
            for event, _meta in reversed(stored(app)):
                if isinstance(event, event_type) and (
                    booking_id is None or booking_id in _bookings_of(event)
                ):
                    return event
        raise LookupError(f"no {event_type.__qualname__} stored")


def _bookings_of(event: object) -> set[object]:
    """The ids an event may be about: its aggregate's, and the booking it names."""
    return {getattr(event, "originator_id", None), getattr(event, "booking_id", None)}


def _no_sleep(_seconds: float) -> None:
    return None
