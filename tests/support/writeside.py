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

    def story(self, booking_id: uuid.UUID) -> dict[str, object]:
        """What the write side holds about a booking: to say why it is not final."""
        booking = self.bookings.find_booking(booking_id)
        if booking is None:
            return {"booking": "not stored"}
        stored = self.bookings.repository.event_store.get(booking_id)
        events = [type(event).__qualname__ for event in stored]
        payment = self.payments.payment_of(booking_id)
        flight = self.inventory.find_flight(booking.flight_id)
        hold = flight.hold_of(booking_id) if flight is not None else None
        datastore = self.bookings.recorder.datastore  # type: ignore[attr-defined]
        with datastore.get_connection() as conn, conn.cursor() as cursor:
            cursor.execute(
                "SELECT kind, due_at, attempts, last_error FROM saga.jobs WHERE booking_id = %s",
                (booking_id,),
            )
            jobs = [str(row) for row in cursor.fetchall()]
            cursor.execute(
                "SELECT 'booking', * FROM booking.bookings_tracking UNION ALL"
                " SELECT 'inventory', * FROM inventory.inventory_tracking UNION ALL"
                " SELECT 'payment', * FROM payment.payments_tracking"
            )
            tracking = [str(row) for row in cursor.fetchall()]
        return {
            "events": events,
            "payment": None if payment is None else payment.status,
            "hold": None if hold is None else str(hold),
            "jobs": jobs,
            "tracking": tracking,
        }

    def flight(self, flight_id: uuid.UUID) -> FlightInventory:
        found: FlightInventory = self.inventory.repository.get(flight_id)
        return found
