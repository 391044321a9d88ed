"""The write side of a test: the three applications, and shortcuts to fill their logs."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from flightbook.domain.booking import Booking
from flightbook.domain.inventory import FlightInventory
from flightbook.eventstore.applications import Bookings, EventStore, Inventory, Payments
from flightbook.eventstore.metadata import recording
from tests.support.builders import a_booking, a_flight


@dataclass
class WriteSide:
    """The three applications, with shortcuts to put flights and bookings in the log."""

    store: EventStore

    @property
    def bookings(self) -> Bookings:
        return self.store.bookings

    @property
    def inventory(self) -> Inventory:
        return self.store.inventory

    @property
    def payments(self) -> Payments:
        return self.store.payments

    def schedule_flight(
        self, *, seats: int = 10, refundable: bool = False, price: int = 45000
    ) -> uuid.UUID:
        flight = a_flight(seats=seats, refundable=refundable, price=price)
        with recording(actor="ops"):
            self.inventory.record(flight)
        return flight.id

    def request_booking(
        self,
        flight_id: uuid.UUID,
        *,
        token: str = "tok_ok",  # noqa: S107
        passengers: int = 1,
        refundable: bool = False,
        price: int = 45000,
        customer: str = "alice",
        correlation_id: str | None = None,
    ) -> uuid.UUID:
        booking = a_booking(
            flight_id,
            customer=customer,
            token=token,
            passengers=passengers,
            price=price,
            refundable=refundable,
        )
        with recording(actor=customer, correlation_id=correlation_id):
            self.bookings.record(booking)
        return booking.id

    def booking(self, booking_id: uuid.UUID) -> Booking:
        found: Booking = self.bookings.repository.get(booking_id)
        return found

    def flight(self, flight_id: uuid.UUID) -> FlightInventory:
        found: FlightInventory = self.inventory.repository.get(flight_id)
        return found
