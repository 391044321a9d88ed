"""What the saga does for each event: one decision, written to ONE context.

Every step loads the current state, decides, and returns the aggregates to save and
the job rows to write, all of which the follower stores in one transaction with
the tracking record of the event it answered. Decisions are state-driven, so a step
that runs again after a crash (or sees an event out of the usual order) does nothing
twice: the aggregates' commands are no-ops when already done.
"""

from __future__ import annotations

import copy
import datetime as dt
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from eventsourcing.application import AggregateNotFoundError

from flightbook.domain.booking import Booking, BookingStatus, CancellationReason, RejectionReason
from flightbook.domain.errors import (
    FlightNotBookableError,
    HoldConflictError,
    IllegalTransitionError,
    SeatsUnavailableError,
    UnknownFareError,
)
from flightbook.domain.inventory import FlightInventory, FlightStatus
from flightbook.domain.payment import Payment
from flightbook.payments.gateway import PAYER_BUDGET_EXHAUSTED
from flightbook.saga.jobs import JobKind, drop_job, schedule_job

if TYPE_CHECKING:
    from collections.abc import Callable
    from uuid import UUID

    from eventsourcing.domain import Aggregate

    from flightbook.eventstore.applications import ContextApplication, EventStore
    from flightbook.eventstore.rows import Row

__all__ = ("Loader", "SagaSteps", "Step")


class Loader(Protocol):
    """Where a step reads the current state of the aggregates it decides on."""

    def booking(self, booking_id: UUID) -> Booking:
        """The booking (raises ``AggregateNotFoundError``)."""
        ...

    def flight(self, flight_id: UUID) -> FlightInventory:
        """The flight (raises ``AggregateNotFoundError``)."""
        ...


@dataclass
class Step:
    """Aggregates to save and rows to write in ``target``, with the tracking record."""

    target: ContextApplication
    aggregates: list[Aggregate] = field(default_factory=list)
    rows: list[Row] = field(default_factory=list)
    note: str = ""


class SagaSteps:
    """The saga's decisions, one method per event it answers.

    Args:
        store: the three applications.
        hold_seconds: how long seats are held for a booking's payment.
        clock: the current UTC time (injected for tests).
    """

    def __init__(
        self, *, store: EventStore, hold_seconds: float, clock: Callable[[], dt.datetime]
    ) -> None:
        self.bookings = store.bookings
        self.inventory = store.inventory
        self.payments = store.payments
        self.hold = dt.timedelta(seconds=hold_seconds)
        self.clock = clock
        self.load: Loader = _Stored(store)

        self._handlers: dict[type, Callable[[Any, str], Step | None]] = {
            Booking.Requested: self._booking_requested,
            Booking.SeatsHeld: self._booking_seats_held,
            Booking.PaymentAuthorized: self._booking_payment_authorized,
            Booking.Confirmed: self._booking_confirmed,
            Booking.Rejected: self._booking_ended,
            Booking.Cancelled: self._booking_ended,
            FlightInventory.SeatsHeld: self._seats_held,
            FlightInventory.HoldConfirmed: self._hold_confirmed,
            FlightInventory.HoldExpired: self._hold_expired,
            FlightInventory.FlightCancelled: self._flight_cancelled,
            Payment.Authorized: self._payment_authorized,
            Payment.Declined: self._payment_declined,
        }

    def reading(self, loader: Loader) -> SagaSteps:
        """These decisions, reading the aggregates from ``loader`` (a round's own state)."""
        bound = copy.copy(self)
        bound.load = loader
        bound._handlers = {kind: getattr(bound, h.__name__) for kind, h in self._handlers.items()}
        return bound

    def answers(self) -> frozenset[type]:
        """The event types the saga answers."""
        return frozenset(self._handlers)

    def decide(self, event: object, correlation_id: str) -> Step | None:
        """The step for ``event``, or None when the saga does not answer it."""
        handler = self._handlers.get(type(event))
        return handler(event, correlation_id) if handler else None

    # -- Booking log ------------------------------------------------------------------------

    def _booking_requested(self, event: Booking.Requested, correlation_id: str) -> Step:
        booking = self.load.booking(event.originator_id)
        if booking.is_final:
            return Step(self.bookings, note="booking already ended")
        try:
            flight = self.load.flight(booking.flight_id)
        except AggregateNotFoundError:
            booking.reject(RejectionReason.NO_SEATS)
            return Step(self.bookings, [booking], note="unknown flight")
        now = self.clock()
        expires_at = now + self.hold
        existing = flight.hold_of(booking.id)
        if existing is not None:
            expires_at = existing.expires_at  # answered before a crash: keep that deadline
        try:
            flight.hold_seats(
                booking.id, booking.fare, booking.passenger_count, expires_at, now=now
            )
        except FlightNotBookableError:
            booking.reject(RejectionReason.FLIGHT_CANCELLED)
            return Step(self.bookings, [booking], note="flight not bookable")
        except (SeatsUnavailableError, UnknownFareError, HoldConflictError):
            booking.reject(RejectionReason.NO_SEATS)
            return Step(self.bookings, [booking], note="no seats")
        return Step(
            self.inventory,
            [flight],
            [
                schedule_job(booking.id, JobKind.EXPIRE_HOLD, expires_at, correlation_id),
            ],
            note="seats held",
        )

    def _booking_seats_held(self, event: Booking.SeatsHeld, correlation_id: str) -> Step:
        booking = self.load.booking(event.originator_id)
        if booking.status is not BookingStatus.SEATS_HELD:
            return Step(self.payments, note="booking moved on")
        return Step(
            self.payments,
            rows=[
                schedule_job(booking.id, JobKind.AUTHORIZE_PAYMENT, self.clock(), correlation_id),
            ],
            note="payment to authorize",
        )

    def _booking_payment_authorized(
        self, event: Booking.PaymentAuthorized, correlation_id: str
    ) -> Step:
        booking = self.load.booking(event.originator_id)
        flight = self.load.flight(booking.flight_id)
        if booking.status is not BookingStatus.PAYMENT_AUTHORIZED:
            return Step(self.inventory, note="booking moved on")
        if flight.hold_of(booking.id) is None:
            return Step(self.inventory, note="hold already gone")  # expiry rejects the booking
        if flight.status is FlightStatus.CANCELLED:
            # The flight's cancellation cancels the booking, which releases the hold and
            # voids the payment; confirming would be refused (and block the log for ever).
            return Step(self.inventory, note="flight cancelled")
        flight.confirm_hold(booking.id)
        return Step(
            self.inventory,
            [flight],
            [drop_job(booking.id, JobKind.EXPIRE_HOLD)],
            note="hold confirmed",
        )

    def _booking_confirmed(self, event: Booking.Confirmed, correlation_id: str) -> Step:
        return Step(
            self.payments,
            rows=[
                schedule_job(
                    event.originator_id, JobKind.SETTLE_PAYMENT, self.clock(), correlation_id
                ),
            ],
            note="payment to capture",
        )

    def _booking_ended(
        self, event: Booking.Rejected | Booking.Cancelled, correlation_id: str
    ) -> Step:
        booking = self.load.booking(event.originator_id)
        rows: list[Row] = [
            drop_job(booking.id, JobKind.EXPIRE_HOLD),
            drop_job(booking.id, JobKind.AUTHORIZE_PAYMENT),
            schedule_job(booking.id, JobKind.SETTLE_PAYMENT, self.clock(), correlation_id),
        ]
        try:
            flight = self.load.flight(booking.flight_id)
        except AggregateNotFoundError:
            return Step(self.inventory, rows=rows, note="unknown flight")
        reason = f"booking {booking.status.lower()}"
        if flight.hold_of(booking.id) is not None:
            flight.release_hold(booking.id, reason)
        else:
            flight.return_sold_seats(booking.id, reason)  # no-op when nothing was sold
        return Step(self.inventory, [flight], rows, note="seats given back")

    # -- Inventory log ----------------------------------------------------------------------

    def _seats_held(self, event: FlightInventory.SeatsHeld, correlation_id: str) -> Step:
        booking = self.load.booking(event.booking_id)
        if booking.is_final:  # ended before its seats were held: give them back
            flight = self.load.flight(event.originator_id)
            flight.release_hold(booking.id, f"booking {booking.status.lower()}")
            return Step(
                self.inventory,
                [flight],
                [drop_job(booking.id, JobKind.EXPIRE_HOLD)],
                note="late hold released",
            )
        if booking.status is not BookingStatus.REQUESTED:
            return Step(self.bookings, note="booking moved on")
        booking.mark_seats_held(event.expires_at)
        return Step(self.bookings, [booking], note="booking seats held")

    def _hold_confirmed(self, event: FlightInventory.HoldConfirmed, correlation_id: str) -> Step:
        booking = self.load.booking(event.booking_id)
        if booking.is_final and booking.status is not BookingStatus.CONFIRMED:
            flight = self.load.flight(event.originator_id)
            flight.return_sold_seats(booking.id, f"booking {booking.status.lower()}")
            return Step(self.inventory, [flight], note="late confirmation undone")
        try:
            booking.confirm()
        except IllegalTransitionError:
            return Step(self.bookings, note="booking not authorized")
        return Step(self.bookings, [booking], note="booking confirmed")

    def _hold_expired(self, event: FlightInventory.HoldExpired, correlation_id: str) -> Step:
        booking = self.load.booking(event.booking_id)
        if booking.is_final or booking.status is BookingStatus.CONFIRMED:
            return Step(self.bookings, note="booking already ended")
        booking.reject(RejectionReason.HOLD_EXPIRED)
        return Step(self.bookings, [booking], note="booking rejected: hold expired")

    def _flight_cancelled(
        self, event: FlightInventory.FlightCancelled, correlation_id: str
    ) -> Step:
        flight = self.load.flight(event.originator_id)
        cancelled: list[Aggregate] = []
        for booking_id in sorted(flight.bookings_on_flight()):
            booking = self.load.booking(booking_id)
            if booking.is_final:
                continue
            booking.cancel(CancellationReason.FLIGHT_CANCELLED, by="system")
            cancelled.append(booking)
        return Step(self.bookings, cancelled, note="bookings cancelled")

    # -- Payment log ------------------------------------------------------------------------

    def _payment_authorized(self, event: Payment.Authorized, correlation_id: str) -> Step:
        booking = self.load.booking(event.booking_id)
        if booking.status is BookingStatus.SEATS_HELD:
            booking.mark_payment_authorized(event.originator_id)
            return Step(self.bookings, [booking], note="booking payment authorized")
        if booking.is_final:  # authorized too late: release the money
            return Step(
                self.payments,
                rows=[
                    schedule_job(booking.id, JobKind.SETTLE_PAYMENT, self.clock(), correlation_id),
                ],
                note="late authorization to void",
            )
        return Step(self.bookings, note="booking moved on")

    def _payment_declined(self, event: Payment.Declined, correlation_id: str) -> Step:
        booking = self.load.booking(event.booking_id)
        if booking.is_final or booking.status is BookingStatus.CONFIRMED:
            return Step(self.bookings, note="booking already ended")
        if event.reason == PAYER_BUDGET_EXHAUSTED:  # declined without a call (issue 15)
            booking.reject(RejectionReason.PAYMENT_UNAVAILABLE)
            return Step(self.bookings, [booking], note="booking rejected: payment unavailable")
        booking.reject(RejectionReason.PAYMENT_DECLINED)
        return Step(self.bookings, [booking], note="booking rejected: payment declined")


class _Stored:
    """The aggregates as stored: each load reads the application's repository."""

    def __init__(self, store: EventStore) -> None:
        self._bookings = store.bookings
        self._inventory = store.inventory

    def booking(self, booking_id: UUID) -> Booking:
        return self._bookings.booking(booking_id)

    def flight(self, flight_id: UUID) -> FlightInventory:
        return self._inventory.flight(flight_id)
