"""The Booking context: one ``Booking`` aggregate per booking, driven by the saga.

Status graph::

    REQUESTED -> SEATS_HELD -> PAYMENT_AUTHORIZED -> CONFIRMED
        |             |                |                |
        +-------------+----------------+--> REJECTED    |
        +-------------+----------------+----------------+--> CANCELLED

Repeating a transition into the current status is a no-op (the saga retries);
any other transition outside the graph raises :class:`IllegalTransitionError`.
"""

from __future__ import annotations

from datetime import datetime  # noqa: TC003 - keep event annotations resolvable at runtime
from enum import StrEnum
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from flightbook.domain.errors import IllegalTransitionError, InvalidValueError
from flightbook.domain.subject import ErasureReason, erasure_reason
from flightbook.domain.values import Money, fare_code, utc_datetime

__all__ = (
    "ALLOWED_TRANSITIONS",
    "ERASABLE",
    "MAX_PASSENGERS",
    "Booking",
    "BookingStatus",
    "CancellationReason",
    "RejectionReason",
)

MAX_PASSENGERS = 9


class BookingStatus(StrEnum):
    REQUESTED = "REQUESTED"
    SEATS_HELD = "SEATS_HELD"
    PAYMENT_AUTHORIZED = "PAYMENT_AUTHORIZED"
    CONFIRMED = "CONFIRMED"
    REJECTED = "REJECTED"
    CANCELLED = "CANCELLED"


class RejectionReason(StrEnum):
    NO_SEATS = "NO_SEATS"
    PAYMENT_DECLINED = "PAYMENT_DECLINED"
    HOLD_EXPIRED = "HOLD_EXPIRED"
    FLIGHT_CANCELLED = "FLIGHT_CANCELLED"
    PAYMENT_UNAVAILABLE = "PAYMENT_UNAVAILABLE"


class CancellationReason(StrEnum):
    CUSTOMER = "CUSTOMER"
    AGENT = "AGENT"
    FLIGHT_CANCELLED = "FLIGHT_CANCELLED"


_S = BookingStatus
ALLOWED_TRANSITIONS: dict[BookingStatus, frozenset[BookingStatus]] = {
    _S.REQUESTED: frozenset({_S.SEATS_HELD, _S.REJECTED, _S.CANCELLED}),
    _S.SEATS_HELD: frozenset({_S.PAYMENT_AUTHORIZED, _S.REJECTED, _S.CANCELLED}),
    _S.PAYMENT_AUTHORIZED: frozenset({_S.CONFIRMED, _S.REJECTED, _S.CANCELLED}),
    _S.CONFIRMED: frozenset({_S.CANCELLED}),
    _S.REJECTED: frozenset(),
    _S.CANCELLED: frozenset(),
}
"""The status graph: where each status may go next."""

ERASABLE = frozenset({_S.CONFIRMED, _S.REJECTED, _S.CANCELLED})
"""Statuses in which a booking's personal data may be erased (the saga is done with it)."""


def _text(value: object, field: str, *, max_length: int | None = None) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidValueError(field, f"{field} must be a non-blank string")
    if max_length is not None and len(value) > max_length:
        raise InvalidValueError(field, f"{field} must be at most {max_length} characters")
    return value


def _uuid(value: object, field: str) -> UUID:
    if not isinstance(value, UUID):
        raise InvalidValueError(field, f"{field} must be a UUID")
    return value


class Booking(Aggregate):
    """A customer's booking of seats of one fare on one flight."""

    class Requested(Aggregate.Created):
        """The booking was asked for.

        Version 2 added ``channel``; version-1 events are upcast with ``"api"``.
        """

        class_version = 2

        customer_id: str
        flight_id: UUID
        fare: str
        passengers: str
        """Sealed (encrypted) passenger data made by the application; opaque here."""
        passenger_count: int
        price_amount: int
        currency: str
        refundable: bool
        payment_token: str
        """Sealed like ``passengers`` (``pii...``); a legacy event holds the plain token."""
        channel: str

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["channel"] = "api"

    class SeatsHeld(Aggregate.Event):
        hold_expires_at: datetime

    class PaymentAuthorized(Aggregate.Event):
        payment_id: UUID

    class Confirmed(Aggregate.Event):
        pass

    class Rejected(Aggregate.Event):
        reason: str

    class Cancelled(Aggregate.Event):
        reason: str
        by: str
        refund_amount: int
        """Minor units of the booking's currency to refund (0 if nothing was captured)."""
        was_confirmed: bool

    class PassengersErased(Aggregate.Event):
        """The customer's personal data was erased: the sealed fields no longer open.

        ``reason`` is an :class:`~flightbook.domain.subject.ErasureReason` code.
        """

        reason: str

    @event(Requested)
    def __init__(
        self,
        customer_id: str,
        flight_id: UUID,
        fare: str,
        passengers: str,
        passenger_count: int,
        price_amount: int,
        currency: str,
        refundable: bool,
        payment_token: str,
        channel: str,
    ) -> None:
        self.customer_id = customer_id
        self.flight_id = flight_id
        self.fare = fare
        self.passengers = passengers
        self.passenger_count = passenger_count
        self.price_amount = price_amount
        self.currency = currency
        self.refundable = refundable
        self.payment_token = payment_token
        self.channel = channel
        self.status = BookingStatus.REQUESTED
        self.reason: str | None = None
        self.payment_id: UUID | None = None
        self.hold_expires_at: datetime | None = None
        self.refund_amount = 0
        self.cancelled_by: str | None = None
        self.was_confirmed = False
        """Cancelled after it was confirmed (the fare's refund rule applies to the payment)."""
        self.personal_data_erased = False
        """Its sealed fields were erased: they read ``[erased]`` (the text stays, unreadable)."""

    # -- commands ---------------------------------------------------------------------------

    @classmethod
    def request(
        cls,
        *,
        booking_id: UUID,
        customer_id: str,
        flight_id: UUID,
        fare: str,
        passengers: str,
        passenger_count: int,
        price_amount: int,
        currency: str,
        refundable: bool,
        payment_token: str,
        channel: str = "api",
    ) -> Booking:
        """Open a booking under the id the caller chose (derived from its idempotency key)."""
        booking_id = _uuid(booking_id, "booking_id")
        customer_id = _text(customer_id, "customer_id", max_length=200)
        flight_id = _uuid(flight_id, "flight_id")
        fare = fare_code(fare, "fare")
        passengers = _text(passengers, "passengers")
        if (
            isinstance(passenger_count, bool)
            or not isinstance(passenger_count, int)
            or not 1 <= passenger_count <= MAX_PASSENGERS
        ):
            raise InvalidValueError("passengers", f"a booking has 1 to {MAX_PASSENGERS} passengers")
        price = Money.create(price_amount, currency, field="price")
        if not isinstance(refundable, bool):
            raise InvalidValueError("refundable", "refundable must be a boolean")
        # sealed: 200 characters of token (the request's limit) seal to about 350
        payment_token = _text(payment_token, "payment_token", max_length=1000)
        channel = _text(channel, "channel", max_length=32)
        # eventsourcing 9.5: BaseAggregate._create(event_class, id=...) uses the given
        # id as the originator id instead of calling create_id() (uuid4 by default).
        # Calling Booking(...) cannot take an id unless __init__ has an `id` parameter,
        # which would then have to be stored; _create keeps it out of the event body.
        return cls._create(
            cls.Requested,
            id=booking_id,
            customer_id=customer_id,
            flight_id=flight_id,
            fare=fare,
            passengers=passengers,
            passenger_count=passenger_count,
            price_amount=price.amount,
            currency=price.currency,
            refundable=refundable,
            payment_token=payment_token,
            channel=channel,
        )

    def mark_seats_held(self, hold_expires_at: datetime) -> None:
        deadline = utc_datetime(hold_expires_at, "hold_expires_at")
        if self._is_due(BookingStatus.SEATS_HELD):
            self._seats_held(deadline)

    def mark_payment_authorized(self, payment_id: UUID) -> None:
        payment_id = _uuid(payment_id, "payment_id")
        if self._is_due(BookingStatus.PAYMENT_AUTHORIZED):
            self._payment_authorized(payment_id)

    def confirm(self) -> None:
        if self._is_due(BookingStatus.CONFIRMED):
            self._confirmed()

    def reject(self, reason: RejectionReason) -> None:
        if not isinstance(reason, RejectionReason):
            raise InvalidValueError("reason", "reason must be a RejectionReason")
        if self._is_due(BookingStatus.REJECTED):
            self._rejected(reason.value)

    def cancel(self, reason: CancellationReason, by: str) -> None:
        """Cancel the booking; a confirmed one is refunded per the fare's rules.

        Full price back if the fare is refundable or the flight was cancelled,
        nothing otherwise. Before confirmation nothing was captured: the refund is
        0 and the saga voids the authorization instead.
        """
        if not isinstance(reason, CancellationReason):
            raise InvalidValueError("reason", "reason must be a CancellationReason")
        by = _text(by, "by", max_length=200)
        if not self._is_due(BookingStatus.CANCELLED):
            return
        was_confirmed = self.status is BookingStatus.CONFIRMED
        refund = 0
        if was_confirmed and (self.refundable or reason is CancellationReason.FLIGHT_CANCELLED):
            refund = self.price_amount
        self._cancelled(reason.value, by, refund, was_confirmed)

    def erase_personal_data(self, reason: ErasureReason) -> None:
        """Record that the customer's personal data was erased (a no-op the second time).

        Only once the saga is done with the booking (:data:`ERASABLE`): until then it needs
        the sealed payment token.
        """
        reason = erasure_reason(reason)
        if self.personal_data_erased:
            return
        if self.status not in ERASABLE:
            raise IllegalTransitionError(
                "booking",
                self.status.value,
                "PASSENGERS_ERASED",
                detail="its personal data can be erased once it is confirmed, rejected or "
                "cancelled",
            )
        self._passengers_erased(reason.value)

    # -- queries ----------------------------------------------------------------------------

    @property
    def price(self) -> Money:
        return Money(self.price_amount, self.currency)

    @property
    def created_at(self) -> datetime:
        """Timestamp of the ``Requested`` event."""
        return self.created_on

    @property
    def updated_at(self) -> datetime:
        """Timestamp of the latest event."""
        return self.modified_on

    @property
    def is_final(self) -> bool:
        """True once the booking can change no more (REJECTED or CANCELLED)."""
        return not ALLOWED_TRANSITIONS[self.status]

    # -- helpers ----------------------------------------------------------------------------

    def _is_due(self, target: BookingStatus) -> bool:
        """True if ``target`` is a legal next status, False if it is the current one."""
        if self.status is target:
            return False
        if target not in ALLOWED_TRANSITIONS[self.status]:
            raise IllegalTransitionError("booking", self.status.value, target.value)
        return True

    # -- evolution: assignments only, so that every stored history replays -------------------

    @event(SeatsHeld)
    def _seats_held(self, hold_expires_at: datetime) -> None:
        self.status = BookingStatus.SEATS_HELD
        self.hold_expires_at = hold_expires_at

    @event(PaymentAuthorized)
    def _payment_authorized(self, payment_id: UUID) -> None:
        self.status = BookingStatus.PAYMENT_AUTHORIZED
        self.payment_id = payment_id

    @event(Confirmed)
    def _confirmed(self) -> None:
        self.status = BookingStatus.CONFIRMED

    @event(Rejected)
    def _rejected(self, reason: str) -> None:
        self.status = BookingStatus.REJECTED
        self.reason = reason

    @event(Cancelled)
    def _cancelled(self, reason: str, by: str, refund_amount: int, was_confirmed: bool) -> None:
        self.status = BookingStatus.CANCELLED
        self.reason = reason
        self.cancelled_by = by
        self.refund_amount = refund_amount
        self.was_confirmed = was_confirmed

    @event(PassengersErased)
    def _passengers_erased(self, reason: str) -> None:
        self.personal_data_erased = True
