"""A booking history made by the real saga, to project and compare."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field

from flightbook.domain.booking import BookingStatus, CancellationReason
from flightbook.domain.values import Money
from flightbook.eventstore.metadata import recording
from flightbook.eventstore.pii import PersonalDataVault
from tests.support.builders import a_booking
from tests.support.saga import SagaHarness


@dataclass
class History:
    """What the history holds, for the assertions."""

    flights: dict[str, uuid.UUID] = field(default_factory=dict)
    bookings: dict[str, list[uuid.UUID]] = field(default_factory=dict)
    named: uuid.UUID | None = None


def request_sealed(
    harness: SagaHarness, vault: PersonalDataVault, flight_id: uuid.UUID
) -> uuid.UUID:
    """A booking whose passengers are really sealed (the worker opens them with the vault)."""
    passengers = [{"name": "Ada Lovelace", "email": "ada@example.com"}]
    booking = a_booking(
        flight_id, customer="ada", sealed=vault.seal("ada", json.dumps(passengers)), refundable=True
    )
    with recording(actor="ada", correlation_id="req-ada"):
        harness.bookings.record(booking)
    return booking.id


def build_history(harness: SagaHarness, vault: PersonalDataVault) -> History:
    """Flights, bookings of every outcome, cancellations, a fare change, a cancelled flight."""
    history = History()
    small = harness.schedule_flight(seats=3, refundable=True)
    big = harness.schedule_flight(seats=30)
    doomed = harness.schedule_flight(seats=10)
    history.flights = {"small": small, "big": big, "doomed": doomed}
    tokens = ["tok_ok", "tok_ok", "tok_declined", "tok_flaky", "tok_ok"]
    history.bookings["small"] = [harness.request_booking(small, refundable=True) for _ in range(5)]
    history.bookings["big"] = [
        harness.request_booking(big, token=tokens[n % len(tokens)], customer=f"c{n % 3}")
        for n in range(10)
    ]
    history.bookings["doomed"] = [harness.request_booking(doomed) for _ in range(3)]
    history.named = request_sealed(harness, vault, big)
    harness.settle()

    for booking_id in history.bookings["small"][:1] + history.bookings["big"][:1]:
        booking = harness.booking(booking_id)
        if booking.status is BookingStatus.CONFIRMED:
            booking.cancel(CancellationReason.CUSTOMER, by=booking.customer_id)
            with recording(actor=booking.customer_id):
                harness.bookings.record(booking)
    flight = harness.flight(big)
    flight.change_fare("Y", price=Money(50000, "EUR"), seats=40)
    with recording(actor="ops"):
        harness.inventory.record(flight)
    flight = harness.flight(doomed)
    flight.cancel("weather")
    with recording(actor="ops"):
        harness.inventory.record(flight)
    harness.settle()
    return history
