"""A saga wired to real PostgreSQL, driven step by step by the tests (no threads)."""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from psycopg_pool import ConnectionPool

from flightbook.commands.applications import Bookings, Inventory, Payments
from flightbook.domain.booking import Booking
from flightbook.domain.inventory import FlightInventory
from flightbook.domain.values import Cabin, Fare, Money
from flightbook.eventstore.metadata import recording
from flightbook.payments.resilience import ResilientGateway
from flightbook.payments.simulated import SimulatedGateway
from flightbook.saga.process import SagaProcess
from flightbook.settings import Settings


@dataclass
class SagaHarness:
    saga: SagaProcess
    bookings: Bookings
    inventory: Inventory
    payments: Payments
    gateway: SimulatedGateway

    def schedule_flight(self, *, seats: int = 10, refundable: bool = False) -> uuid.UUID:
        departure = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(days=30)
        flight = FlightInventory.schedule(
            flight_number="FB101",
            origin="LHR",
            destination="JFK",
            departure=departure,
            arrival=departure + dt.timedelta(hours=8),
            fares=[
                Fare(
                    code="Y",
                    cabin=Cabin.ECONOMY,
                    price=Money(45000, "EUR"),
                    seats=seats,
                    refundable=refundable,
                )
            ],
        )
        with recording(actor="ops"):
            self.inventory.record(flight)
        return flight.id

    def request_booking(
        self,
        flight_id: uuid.UUID,
        *,
        token: str = "tok_ok",  # noqa: S107 - a test card token
        passengers: int = 1,
        refundable: bool = False,
        correlation_id: str | None = None,
    ) -> uuid.UUID:
        booking = Booking.request(
            booking_id=uuid.uuid4(),
            customer_id="alice",
            flight_id=flight_id,
            fare="Y",
            passengers="sealed",
            passenger_count=passengers,
            price_amount=45000 * passengers,
            currency="EUR",
            refundable=refundable,
            payment_token=token,
        )
        with recording(actor="alice", correlation_id=correlation_id):
            self.bookings.record(booking)
        return booking.id

    def settle(self, timeout: float = 30.0) -> None:
        """Run the follower and the due jobs until nothing is left to do now."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            moved = self.saga.follower.run_once() + self.saga.runner.run_due(10)
            if moved == 0:
                return
        raise AssertionError("the saga did not settle")

    def run_until(self, done: Callable[[], bool], timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.saga.follower.run_once()
            self.saga.runner.run_due(10)
            if done():
                return
            time.sleep(0.05)
        raise AssertionError("condition not reached")

    def booking(self, booking_id: uuid.UUID) -> Booking:
        found: Booking = self.bookings.repository.get(booking_id)
        return found

    def flight(self, flight_id: uuid.UUID) -> FlightInventory:
        found: FlightInventory = self.inventory.repository.get(flight_id)
        return found


@pytest.fixture
def harness(settings: Settings) -> Iterator[SagaHarness]:
    yield from make_harness(settings)


def make_harness(
    settings: Settings, *, hold_seconds: float = 60.0, gateway_timeout: float = 0.2
) -> Iterator[SagaHarness]:
    assert settings.postgres_url is not None
    url = settings.postgres_url
    bookings, inventory, payments = Bookings(url), Inventory(url), Payments(url)
    pool = ConnectionPool(url, min_size=1, max_size=4, open=True)
    gateway = SimulatedGateway(pool, timeout=gateway_timeout)
    gateway.ensure_schema()
    resilient = ResilientGateway(
        gateway,
        max_attempts=4,
        base_delay=0.01,
        max_delay=0.05,
        max_elapsed=0.5,
        breaker_fail_max=1000,
    )
    saga = SagaProcess(
        bookings=bookings,
        inventory=inventory,
        payments=payments,
        gateway=resilient,
        pool=pool,
        postgres_url=url,
        hold_seconds=hold_seconds,
        workers=1,
        poll_seconds=0.05,
    )
    try:
        yield SagaHarness(saga, bookings, inventory, payments, gateway)
    finally:
        for app in (bookings, inventory, payments):
            app.close()
        pool.close()
