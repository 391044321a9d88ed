"""The payloads of the wire contract: one frozen Struct per public domain event.

Each payload is tagged with a stable public name (``"booking.requested"``) that does not
depend on where the Python class of the domain event lives. This module imports nothing
from the domain: the translation from domain events is the relay's
(:mod:`flightbook.relay.translate`). Evolution rules: ``docs/contracts.md``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

import msgspec

__all__ = (
    "PAYLOAD_TYPES",
    "AnyPayload",
    "BookingCancelled",
    "BookingConfirmed",
    "BookingPaymentAuthorized",
    "BookingRejected",
    "BookingRequested",
    "BookingSeatsHeld",
    "DataSubjectErased",
    "FareChanged",
    "FareTerms",
    "FlightCancelled",
    "FlightScheduled",
    "HoldConfirmed",
    "HoldExpired",
    "HoldReleased",
    "Money",
    "PassengersErased",
    "Payload",
    "PaymentAuthorized",
    "PaymentCaptured",
    "PaymentDeclined",
    "PaymentRefunded",
    "PaymentVoided",
    "SeatsHeld",
    "SoldSeatsReturned",
    "UtcDateTime",
)

UtcDateTime = Annotated[datetime, msgspec.Meta(tz=True, description="RFC 3339, UTC")]
MinorUnits = Annotated[
    int, msgspec.Meta(ge=0, description="Integer minor units of the currency (cents)")
]
SeatCount = Annotated[int, msgspec.Meta(ge=0)]
Currency = Annotated[str, msgspec.Meta(pattern="^[A-Z]{3}$", description="ISO 4217 code")]


# -- value shapes ----------------------------------------------------------------------------


class Money(msgspec.Struct, frozen=True, kw_only=True):
    """An amount in integer minor units of one currency (never a float)."""

    amount: MinorUnits
    currency: Currency


class FareTerms(msgspec.Struct, frozen=True, kw_only=True):
    """A fare class of a flight as scheduled: its price and its seats."""

    code: str
    cabin: str
    price: Money
    seats: SeatCount
    refundable: bool
    overbooking: SeatCount = 0


# -- payloads --------------------------------------------------------------------------------


class Payload(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    """Base of every payload; the ``type`` tag is the stable public event name."""


# booking context: one aggregate per booking


class BookingRequested(Payload, frozen=True, kw_only=True, tag="booking.requested"):
    """A customer asked for seats; the saga takes it from here."""

    customer_id: str
    flight_id: UUID
    fare: str
    passenger_count: Annotated[int, msgspec.Meta(ge=1)]
    passengers: str
    """Sealed passenger data (names, emails): opaque, opened only with the vault."""
    price: Money
    refundable: bool
    channel: str = "api"
    status: Literal["REQUESTED"] = "REQUESTED"


class BookingSeatsHeld(Payload, frozen=True, kw_only=True, tag="booking.seats_held"):
    """The flight holds the booking's seats until ``hold_expires_at``."""

    hold_expires_at: UtcDateTime
    status: Literal["SEATS_HELD"] = "SEATS_HELD"


class BookingPaymentAuthorized(
    Payload, frozen=True, kw_only=True, tag="booking.payment_authorized"
):
    payment_id: UUID
    status: Literal["PAYMENT_AUTHORIZED"] = "PAYMENT_AUTHORIZED"


class BookingConfirmed(Payload, frozen=True, kw_only=True, tag="booking.confirmed"):
    status: Literal["CONFIRMED"] = "CONFIRMED"


class BookingRejected(Payload, frozen=True, kw_only=True, tag="booking.rejected"):
    """Final: NO_SEATS, PAYMENT_DECLINED, HOLD_EXPIRED, FLIGHT_CANCELLED, PAYMENT_UNAVAILABLE."""

    reason: str
    status: Literal["REJECTED"] = "REJECTED"


class BookingCancelled(Payload, frozen=True, kw_only=True, tag="booking.cancelled"):
    """Final: cancelled by the customer, an agent, or because the flight was cancelled."""

    reason: str
    cancelled_by: str
    refund_amount: MinorUnits
    """In the booking's currency (``booking.requested`` ``price.currency``); 0 = no refund."""
    was_confirmed: bool
    status: Literal["CANCELLED"] = "CANCELLED"


class PassengersErased(Payload, frozen=True, kw_only=True, tag="booking.passengers_erased"):
    """The booking's personal data was erased: its sealed passengers can no longer be opened.

    The booking keeps its status (this payload has none). A read model that holds the
    opened passengers replaces each field with ``"[erased]"``. The customer is the one of
    ``booking.requested``; the ``booking.data_subject_erased`` that follows names them.
    """

    booking_id: UUID
    reason: str
    """``customer_request``, ``retention`` or ``legal_order`` (a code, never free text)."""


class DataSubjectErased(Payload, frozen=True, kw_only=True, tag="booking.data_subject_erased"):
    """Every personal datum of a customer was erased (their keys are gone).

    The aggregate is the data subject (not a booking); the ``booking.passengers_erased`` of
    each of their bookings precede it in the same transaction. A consumer that caches the
    customer's keys or opened data drops them.
    """

    customer_id: str
    reason: str
    """``customer_request``, ``retention`` or ``legal_order``."""
    bookings: Annotated[int, msgspec.Meta(ge=0)]
    """How many bookings were erased."""


# inventory context: one aggregate per scheduled flight


class FlightScheduled(Payload, frozen=True, kw_only=True, tag="inventory.flight_scheduled"):
    flight_number: str
    origin: str
    destination: str
    departure: UtcDateTime
    arrival: UtcDateTime
    fares: list[FareTerms]
    status: Literal["SCHEDULED"] = "SCHEDULED"


class SeatsHeld(Payload, frozen=True, kw_only=True, tag="inventory.seats_held"):
    booking_id: UUID
    fare_code: str
    seats: SeatCount
    expires_at: UtcDateTime


class HoldConfirmed(Payload, frozen=True, kw_only=True, tag="inventory.hold_confirmed"):
    """The booking's held seats are sold."""

    booking_id: UUID
    fare_code: str
    seats: SeatCount


class HoldReleased(Payload, frozen=True, kw_only=True, tag="inventory.hold_released"):
    booking_id: UUID
    fare_code: str
    seats: SeatCount
    reason: str


class HoldExpired(Payload, frozen=True, kw_only=True, tag="inventory.hold_expired"):
    booking_id: UUID
    fare_code: str
    seats: SeatCount
    expired_at: UtcDateTime
    """The hold's deadline (not the moment the expiry was noticed)."""


class SoldSeatsReturned(Payload, frozen=True, kw_only=True, tag="inventory.sold_seats_returned"):
    """A cancelled booking's sold seats are on sale again."""

    booking_id: UUID
    fare_code: str
    seats: SeatCount
    reason: str


class FareChanged(Payload, frozen=True, kw_only=True, tag="inventory.fare_changed"):
    """The fare's full new terms (not a delta); code, cabin and refundability never change."""

    fare_code: str
    price: Money
    seats: SeatCount
    overbooking: SeatCount


class FlightCancelled(Payload, frozen=True, kw_only=True, tag="inventory.flight_cancelled"):
    reason: str
    status: Literal["CANCELLED"] = "CANCELLED"


# payment context: one aggregate per booking payment


class PaymentAuthorized(Payload, frozen=True, kw_only=True, tag="payment.authorized"):
    booking_id: UUID
    amount: Money
    gateway_ref: str
    status: Literal["AUTHORIZED"] = "AUTHORIZED"


class PaymentDeclined(Payload, frozen=True, kw_only=True, tag="payment.declined"):
    booking_id: UUID
    amount: Money
    reason: str
    status: Literal["DECLINED"] = "DECLINED"


class PaymentCaptured(Payload, frozen=True, kw_only=True, tag="payment.captured"):
    gateway_ref: str
    status: Literal["CAPTURED"] = "CAPTURED"


class PaymentVoided(Payload, frozen=True, kw_only=True, tag="payment.voided"):
    status: Literal["VOIDED"] = "VOIDED"


class PaymentRefunded(Payload, frozen=True, kw_only=True, tag="payment.refunded"):
    refunded_amount: MinorUnits
    """In the payment's currency (``payment.authorized`` ``amount.currency``)."""
    gateway_ref: str
    status: Literal["REFUNDED"] = "REFUNDED"


AnyPayload = (
    BookingRequested
    | BookingSeatsHeld
    | BookingPaymentAuthorized
    | BookingConfirmed
    | BookingRejected
    | BookingCancelled
    | PassengersErased
    | DataSubjectErased
    | FlightScheduled
    | SeatsHeld
    | HoldConfirmed
    | HoldReleased
    | HoldExpired
    | SoldSeatsReturned
    | FareChanged
    | FlightCancelled
    | PaymentAuthorized
    | PaymentDeclined
    | PaymentCaptured
    | PaymentVoided
    | PaymentRefunded
)

PAYLOAD_TYPES: tuple[type[Payload], ...] = (
    BookingRequested,
    BookingSeatsHeld,
    BookingPaymentAuthorized,
    BookingConfirmed,
    BookingRejected,
    BookingCancelled,
    PassengersErased,
    DataSubjectErased,
    FlightScheduled,
    SeatsHeld,
    HoldConfirmed,
    HoldReleased,
    HoldExpired,
    SoldSeatsReturned,
    FareChanged,
    FlightCancelled,
    PaymentAuthorized,
    PaymentDeclined,
    PaymentCaptured,
    PaymentVoided,
    PaymentRefunded,
)
