"""The wire contract: what the relay publishes on Kafka, and the only shapes consumers import.

Every message on ``<topic_prefix>.<context>.events`` is one JSON-encoded :class:`Envelope`.
Its ``payload`` is a tagged union: one frozen Struct per public domain event, tagged
with a stable name (``"booking.requested"``) that does not depend on where the Python
class lives. Translating domain events here (STYLE G8) keeps consumers independent of
the domain model's field names and lets an event stay private (``to_envelope`` -> None).

Evolution rules (msgspec schema evolution; ``docs/contracts.md`` has the full text):
new payload fields get defaults and go last; fields are never renamed, retyped or
removed; new payload types may appear at any time (consumers skip tags they do not
know); anything else is a new :data:`CONTRACT_VERSION`.

``python -m flightbook.contracts > docs/contracts.schema.json`` regenerates the JSON
Schema kept in the repository.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from functools import singledispatch
from typing import TYPE_CHECKING, Annotated, Any, Literal
from uuid import UUID

import msgspec

from flightbook.domain.booking import Booking
from flightbook.domain.inventory import FlightInventory
from flightbook.domain.payment import Payment

if TYPE_CHECKING:
    from eventsourcing.persistence import Notification

    from flightbook.eventstore.metadata import EventMetadata

__all__ = (
    "CONTEXTS",
    "CONTRACT_VERSION",
    "KNOWN_TYPES",
    "PAYLOAD_TYPES",
    "AnyPayload",
    "BookingCancelled",
    "BookingConfirmed",
    "BookingPaymentAuthorized",
    "BookingRejected",
    "BookingRequested",
    "BookingSeatsHeld",
    "Context",
    "Envelope",
    "FareChanged",
    "FareTerms",
    "FlightCancelled",
    "FlightScheduled",
    "HoldConfirmed",
    "HoldExpired",
    "HoldReleased",
    "Money",
    "Payload",
    "PaymentAuthorized",
    "PaymentCaptured",
    "PaymentDeclined",
    "PaymentRefunded",
    "PaymentVoided",
    "SeatsHeld",
    "SoldSeatsReturned",
    "decoder",
    "encoder",
    "payload_type_name",
    "schema",
    "schema_json",
    "to_envelope",
    "to_payload",
    "topic_for",
)

CONTRACT_VERSION = 1
"""Version of the envelope and payload shapes; bumped only for a breaking change."""

Context = Literal["booking", "inventory", "payment"]
CONTEXTS: tuple[Context, ...] = ("booking", "inventory", "payment")

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


def payload_type_name(payload_type: type[Payload]) -> str:
    """The stable public name of a payload type (its tag), e.g. ``"booking.requested"``."""
    return str(payload_type.__struct_config__.tag)


KNOWN_TYPES: frozenset[str] = frozenset(payload_type_name(t) for t in PAYLOAD_TYPES)
"""Every ``type`` this version knows: skip messages whose ``type`` header is not here."""


class Envelope(msgspec.Struct, frozen=True, kw_only=True):
    """One published event: where it comes from, who caused it, and what happened."""

    event_id: str
    """Unique id of the stored event (UUID text; empty for events stored before metadata)."""
    type: str
    """The payload's tag, e.g. ``"booking.requested"`` (also the ``type`` header)."""
    version: int
    """:data:`CONTRACT_VERSION` the message was written with."""
    context: Context
    aggregate_id: UUID
    aggregate_version: Annotated[int, msgspec.Meta(ge=1)]
    """1 for the aggregate's first event, +1 for each next one: apply only if newer."""
    position: Annotated[int, msgspec.Meta(ge=1)]
    """Position in the context's event log: increasing, unique per context, may have gaps."""
    occurred_at: UtcDateTime
    correlation_id: str
    """The request that started the chain of events (empty if none)."""
    causation_id: str
    """The event or command that caused this one."""
    actor: str
    """Who: a customer id, an agent, ``ops``, ``saga``, ``system``."""
    payload: AnyPayload


encoder = msgspec.json.Encoder()
"""The one encoder of the relay (reuse it: building one per message is slow)."""
decoder: msgspec.json.Decoder[Envelope] = msgspec.json.Decoder(Envelope)
"""The one decoder consumers need: ``decoder.decode(message.value())``."""


def topic_for(topic_prefix: str, context: Context | str) -> str:
    """The topic of a context's events, e.g. ``flightbook.booking.events``."""
    return f"{topic_prefix}.{context}.events"


# -- translation from the domain -------------------------------------------------------------


def _utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC)


def _uuid(value: UUID | str) -> UUID:
    return value if isinstance(value, UUID) else UUID(value)


def _occurred_at(domain_event: object) -> datetime:
    moment = getattr(domain_event, "timestamp", None)  # every eventsourcing DomainEvent has one
    if not isinstance(moment, datetime):
        raise TypeError(f"{type(domain_event).__qualname__} has no timestamp")
    return _utc(moment)


@singledispatch
def to_payload(domain_event: object) -> AnyPayload | None:
    """The public payload of a domain event, or None when the event stays private."""
    return None


@to_payload.register(Booking.Requested)
def _booking_requested(e: Booking.Requested) -> BookingRequested:
    return BookingRequested(
        customer_id=e.customer_id,
        flight_id=e.flight_id,
        fare=e.fare,
        passenger_count=e.passenger_count,
        passengers=e.passengers,  # sealed text, never plaintext; the payment token stays out
        price=Money(amount=e.price_amount, currency=e.currency),
        refundable=e.refundable,
        channel=e.channel,
    )


@to_payload.register(Booking.SeatsHeld)
def _booking_seats_held(e: Booking.SeatsHeld) -> BookingSeatsHeld:
    return BookingSeatsHeld(hold_expires_at=_utc(e.hold_expires_at))


@to_payload.register(Booking.PaymentAuthorized)
def _booking_payment_authorized(e: Booking.PaymentAuthorized) -> BookingPaymentAuthorized:
    return BookingPaymentAuthorized(payment_id=e.payment_id)


@to_payload.register(Booking.Confirmed)
def _booking_confirmed(_e: Booking.Confirmed) -> BookingConfirmed:
    return BookingConfirmed()


@to_payload.register(Booking.Rejected)
def _booking_rejected(e: Booking.Rejected) -> BookingRejected:
    return BookingRejected(reason=e.reason)


@to_payload.register(Booking.Cancelled)
def _booking_cancelled(e: Booking.Cancelled) -> BookingCancelled:
    return BookingCancelled(
        reason=e.reason,
        cancelled_by=e.by,
        refund_amount=e.refund_amount,
        was_confirmed=e.was_confirmed,
    )


def _fare_terms(data: dict[str, str | int | bool]) -> FareTerms:
    return FareTerms(
        code=str(data["code"]),
        cabin=str(data["cabin"]),
        price=Money(amount=int(data["price_amount"]), currency=str(data["currency"])),
        seats=int(data["seats"]),
        refundable=bool(data["refundable"]),
        overbooking=int(data.get("overbooking", 0)),
    )


@to_payload.register(FlightInventory.Scheduled)
def _flight_scheduled(e: FlightInventory.Scheduled) -> FlightScheduled:
    return FlightScheduled(
        flight_number=e.flight_number,
        origin=e.origin,
        destination=e.destination,
        departure=_utc(e.departure),
        arrival=_utc(e.arrival),
        fares=[_fare_terms(fare) for fare in e.fares],
    )


@to_payload.register(FlightInventory.SeatsHeld)
def _seats_held(e: FlightInventory.SeatsHeld) -> SeatsHeld:
    return SeatsHeld(
        booking_id=e.booking_id,
        fare_code=e.fare_code,
        seats=e.seats,
        expires_at=_utc(e.expires_at),
    )


@to_payload.register(FlightInventory.HoldConfirmed)
def _hold_confirmed(e: FlightInventory.HoldConfirmed) -> HoldConfirmed:
    return HoldConfirmed(booking_id=e.booking_id, fare_code=e.fare_code, seats=e.seats)


@to_payload.register(FlightInventory.HoldReleased)
def _hold_released(e: FlightInventory.HoldReleased) -> HoldReleased:
    return HoldReleased(
        booking_id=e.booking_id, fare_code=e.fare_code, seats=e.seats, reason=e.reason
    )


@to_payload.register(FlightInventory.HoldExpired)
def _hold_expired(e: FlightInventory.HoldExpired) -> HoldExpired:
    return HoldExpired(
        booking_id=e.booking_id,
        fare_code=e.fare_code,
        seats=e.seats,
        expired_at=_utc(e.expired_at),
    )


@to_payload.register(FlightInventory.SoldSeatsReturned)
def _sold_seats_returned(e: FlightInventory.SoldSeatsReturned) -> SoldSeatsReturned:
    return SoldSeatsReturned(
        booking_id=e.booking_id, fare_code=e.fare_code, seats=e.seats, reason=e.reason
    )


@to_payload.register(FlightInventory.FareChanged)
def _fare_changed(e: FlightInventory.FareChanged) -> FareChanged:
    return FareChanged(
        fare_code=e.fare_code,
        price=Money(amount=e.price_amount, currency=e.currency),
        seats=e.seats,
        overbooking=e.overbooking,
    )


@to_payload.register(FlightInventory.FlightCancelled)
def _flight_cancelled(e: FlightInventory.FlightCancelled) -> FlightCancelled:
    return FlightCancelled(reason=e.reason)


@to_payload.register(Payment.Authorized)
def _payment_authorized(e: Payment.Authorized) -> PaymentAuthorized:
    return PaymentAuthorized(
        booking_id=e.booking_id,
        amount=Money(amount=e.amount, currency=e.currency),
        gateway_ref=e.gateway_ref,
    )


@to_payload.register(Payment.Declined)
def _payment_declined(e: Payment.Declined) -> PaymentDeclined:
    return PaymentDeclined(
        booking_id=e.booking_id,
        amount=Money(amount=e.amount, currency=e.currency),
        reason=e.reason,
    )


@to_payload.register(Payment.Captured)
def _payment_captured(e: Payment.Captured) -> PaymentCaptured:
    return PaymentCaptured(gateway_ref=e.gateway_ref)


@to_payload.register(Payment.Voided)
def _payment_voided(_e: Payment.Voided) -> PaymentVoided:
    return PaymentVoided()


@to_payload.register(Payment.Refunded)
def _payment_refunded(e: Payment.Refunded) -> PaymentRefunded:
    return PaymentRefunded(refunded_amount=e.amount, gateway_ref=e.gateway_ref)


def to_envelope(
    context: Context,
    notification: Notification,
    domain_event: object,
    meta: EventMetadata,
) -> Envelope | None:
    """The envelope to publish for one stored event, or None if the event is private.

    Args:
        context: The bounded context whose log the event is in.
        notification: The stored event as read from the log (position, aggregate, version).
        domain_event: The decoded domain event (``MetadataMapper.decode``).
        meta: Its metadata (``MetadataMapper.decode``).
    """
    payload = to_payload(domain_event)
    if payload is None:
        return None
    return Envelope(
        event_id=meta.event_id,
        type=payload_type_name(type(payload)),
        version=CONTRACT_VERSION,
        context=context,
        aggregate_id=_uuid(notification.originator_id),
        aggregate_version=notification.originator_version,
        position=notification.id,
        occurred_at=_occurred_at(domain_event),
        correlation_id=meta.correlation_id,
        causation_id=meta.causation_id,
        actor=meta.actor,
        payload=payload,
    )


def schema() -> dict[str, Any]:
    """The JSON Schema of :class:`Envelope` (kept as ``docs/contracts.schema.json``)."""
    return msgspec.json.schema(Envelope)


def schema_json() -> str:
    """:func:`schema` as the exact text of ``docs/contracts.schema.json``."""
    return json.dumps(schema(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    import sys

    sys.stdout.write(schema_json())
