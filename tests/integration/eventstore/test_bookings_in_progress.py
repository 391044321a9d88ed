"""``booking.bookings_in_progress`` and the caps guard: one contract, in memory and PostgreSQL.

Every assertion of the contract runs against both event stores; the PostgreSQL-only tests
are what memory cannot show: that the table is derivable from the log (migration 0006),
and that customers racing from separate connection pools (as separate API processes
would) cannot slip under a cap together.
"""

from __future__ import annotations

import datetime as dt
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg_pool import ConnectionPool

from flightbook.config.settings import Settings
from flightbook.domain.booking import Booking, CancellationReason, RejectionReason
from flightbook.domain.caps import BookingCaps, Cap, CapExceededError, InProgress
from flightbook.eventstore.applications import EventStore
from flightbook.eventstore.inprogress import (
    BookingsInProgress,
    CapsGuard,
    MemoryBookingsInProgress,
    PostgresBookingsInProgress,
)
from flightbook.eventstore.metadata import recording
from tests.support.builders import a_booking
from tests.support.memory import memory_of, memory_store

pytestmark = pytest.mark.integration

CAPS = BookingCaps(bookings_in_progress=5, seats_held=18, seats_held_per_flight=9)
MIGRATION = (
    Path(__file__).resolve().parents[3] / "migrations/postgres/0006_bookings_in_progress.sql"
)
HOLD = dt.datetime(2031, 1, 1, tzinfo=dt.UTC)


class Contract:
    """A store and its table, whichever the kind."""

    def __init__(self, store: EventStore, table: BookingsInProgress) -> None:
        self.store = store
        self.table = table

    def book(
        self,
        customer: str = "alice",
        *,
        flight: uuid.UUID | None = None,
        seats: int = 1,
        guarded: bool = False,
        booking_id: uuid.UUID | None = None,
    ) -> Booking:
        booking = a_booking(
            flight or uuid.uuid4(), customer=customer, passengers=seats, booking_id=booking_id
        )
        guard = CapsGuard(
            caps=CAPS,
            customer_id=customer,
            booking_id=booking.id,
            flight_id=booking.flight_id,
            seats=seats,
        )
        with recording(actor=customer):
            self.store.bookings.record(booking, guards=[guard] if guarded else [])
        return booking

    def save(self, booking: Booking) -> None:
        with recording(actor="saga"):
            self.store.bookings.record(booking)

    def count(self) -> int:
        return self.store.bookings.recorder.max_notification_id() or 0


@pytest.fixture(params=["memory", "postgres"])
def contract(request: pytest.FixtureRequest) -> Iterator[Contract]:
    if request.param == "memory":
        store = memory_store()
        yield Contract(store, MemoryBookingsInProgress(memory_of(store)))
        return
    settings = request.getfixturevalue("settings")
    store = EventStore(settings)
    pool = ConnectionPool(settings.postgres_url, min_size=1, max_size=2, open=True)
    try:
        yield Contract(store, PostgresBookingsInProgress(pool))
    finally:
        pool.close()
        store.close()


def test_a_requested_booking_is_in_progress_with_its_flight_and_seats(
    contract: Contract,
) -> None:
    flight = uuid.uuid4()
    booking = contract.book("alice", flight=flight, seats=3)
    contract.book("bob")

    assert contract.table.of_customer("alice") == [InProgress(booking.id, flight, 3)]


def test_a_booking_stays_in_progress_while_its_seats_are_held_and_its_payment_authorized(
    contract: Contract,
) -> None:
    booking = contract.book(seats=2)
    booking.mark_seats_held(HOLD)
    contract.save(booking)
    booking.mark_payment_authorized(uuid.uuid4())
    contract.save(booking)

    assert [row.booking_id for row in contract.table.of_customer("alice")] == [booking.id]


def _confirm(booking: Booking) -> None:
    booking.mark_seats_held(HOLD)
    booking.mark_payment_authorized(uuid.uuid4())
    booking.confirm()


ENDINGS: dict[str, Callable[[Booking], None]] = {
    "confirmed": _confirm,
    "rejected": lambda b: b.reject(RejectionReason.HOLD_EXPIRED),
    "cancelled": lambda b: b.cancel(CancellationReason.CUSTOMER, by="alice"),
}


@pytest.mark.parametrize("ending", list(ENDINGS))
def test_a_booking_that_ends_is_no_longer_in_progress(contract: Contract, ending: str) -> None:
    kept = contract.book()
    ended = contract.book()

    ENDINGS[ending](ended)
    contract.save(ended)

    assert [row.booking_id for row in contract.table.of_customer("alice")] == [kept.id]


def test_a_booking_requested_and_ended_in_one_transaction_leaves_no_row(
    contract: Contract,
) -> None:
    booking = a_booking(uuid.uuid4())
    booking.reject(RejectionReason.NO_SEATS)

    contract.save(booking)

    assert contract.table.of_customer("alice") == []


def test_the_guard_refuses_a_booking_past_a_cap_and_nothing_of_it_is_stored(
    contract: Contract,
) -> None:
    flight = uuid.uuid4()
    contract.book(flight=flight, seats=6, guarded=True)
    before = (contract.count(), contract.table.of_customer("alice"))

    with pytest.raises(CapExceededError) as refused:
        contract.book(flight=flight, seats=4, guarded=True)

    assert (refused.value.cap, refused.value.current, refused.value.requested) == (
        Cap.SEATS_HELD_PER_FLIGHT,
        6,
        4,
    )
    assert (contract.count(), contract.table.of_customer("alice")) == before
    contract.book("bob", flight=flight, seats=9, guarded=True)  # another customer's caps


def test_the_guard_lets_a_customer_book_again_once_a_booking_ended(contract: Contract) -> None:
    bookings = [contract.book(guarded=True) for _ in range(CAPS.bookings_in_progress)]
    with pytest.raises(CapExceededError):
        contract.book(guarded=True)

    bookings[0].cancel(CancellationReason.CUSTOMER, by="alice")
    contract.save(bookings[0])

    contract.book(guarded=True)
    assert len(contract.table.of_customer("alice")) == CAPS.bookings_in_progress


def test_the_guard_does_not_count_the_booking_it_guards(contract: Contract) -> None:
    """A concurrent duplicate of a request carries the same booking id: the cap must not
    refuse it before the duplicate key does (the caller then answers with the first)."""
    flight = uuid.uuid4()
    first = contract.book(flight=flight, seats=9, guarded=True)

    with pytest.raises(Exception) as refused:  # noqa: PT011 - whichever uniqueness error
        contract.book(flight=flight, seats=9, guarded=True, booking_id=first.id)

    assert not isinstance(refused.value, CapExceededError)


# -- PostgreSQL only ---------------------------------------------------------------------------


def _rows(url: str) -> set[tuple[object, ...]]:
    with psycopg.connect(url) as conn:
        found = conn.execute(
            "SELECT booking_id, customer_id, flight_id, seats FROM booking.bookings_in_progress"
        ).fetchall()
    return set(found)


def test_the_table_is_what_migration_0006_derives_from_the_log(settings: Settings) -> None:
    url = settings.postgres_url
    assert url is not None
    store = EventStore(settings)
    try:
        contract = Contract(store, MemoryBookingsInProgress(memory_of(memory_store())))
        flights = [uuid.uuid4(), uuid.uuid4()]
        kept = [contract.book(c, flight=flights[n % 2], seats=n + 1) for n, c in enumerate("abc")]
        for ending in ENDINGS.values():
            booking = contract.book("a", flight=flights[0])
            ending(booking)
            contract.save(booking)
        kept[1].mark_seats_held(HOLD)
        contract.save(kept[1])
    finally:
        store.close()
    written = _rows(url)
    assert len(written) == len(kept)

    with psycopg.connect(url) as conn:
        conn.execute("TRUNCATE booking.bookings_in_progress")
        conn.execute(MIGRATION.read_text())

    assert _rows(url) == written


def test_a_customer_racing_from_two_processes_never_gets_past_a_cap(settings: Settings) -> None:
    """20 bookings of one customer at once, through two stores (two pools, as two API
    processes): exactly the cap's number are stored, the others refused."""
    stores = [EventStore(settings, pool_size=10) for _ in range(2)]
    flight = uuid.uuid4()
    outcomes: list[str] = []
    start = threading.Barrier(20)

    def attempt(n: int) -> None:
        contract = Contract(stores[n % 2], MemoryBookingsInProgress(memory_of(memory_store())))
        start.wait()
        try:
            contract.book("mallory", flight=flight, seats=1, guarded=True)
        except CapExceededError as exc:
            outcomes.append(exc.cap.value)
        else:
            outcomes.append("stored")

    threads = [threading.Thread(target=attempt, args=(n,)) for n in range(20)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    finally:
        for store in stores:
            store.close()

    assert outcomes.count("stored") == CAPS.bookings_in_progress
    assert outcomes.count(Cap.BOOKINGS_IN_PROGRESS.value) == 20 - CAPS.bookings_in_progress
    assert settings.postgres_url is not None
    assert len(_rows(settings.postgres_url)) == CAPS.bookings_in_progress
