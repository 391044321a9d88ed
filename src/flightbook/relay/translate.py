"""The relay's translation of a stored domain event into its published envelope.

The one place that knows both the domain events and the wire contract: a domain event
without a payload here stays private (never published). Readers of the event store that
must see exactly what the relay publishes (the projections' catch-up) use it too.
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import cache, singledispatch
from typing import TYPE_CHECKING
from uuid import UUID

from eventsourcing.utils import resolve_topic

from flightbook.contracts.envelope import CONTRACT_VERSION, Envelope, payload_type_name
from flightbook.contracts.payloads import (
    AnyPayload,
    BookingCancelled,
    BookingConfirmed,
    BookingPaymentAuthorized,
    BookingRejected,
    BookingRequested,
    BookingSeatsHeld,
    FareChanged,
    FareTerms,
    FlightCancelled,
    FlightScheduled,
    HoldConfirmed,
    HoldExpired,
    HoldReleased,
    Money,
    PaymentAuthorized,
    PaymentCaptured,
    PaymentDeclined,
    PaymentRefunded,
    PaymentVoided,
    SeatsHeld,
    SoldSeatsReturned,
)
from flightbook.domain.booking import Booking
from flightbook.domain.inventory import FlightInventory
from flightbook.domain.payment import Payment

if TYPE_CHECKING:
    from eventsourcing.persistence import Notification

    from flightbook.eventstore.contexts import Context
    from flightbook.eventstore.metadata import EventMetadata

__all__ = ("is_public_topic", "to_envelope", "to_payload")


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


@cache
def is_public_topic(topic: str) -> bool:
    """Whether events of this stored topic are published (have a payload in the contract)."""
    try:
        event_class = resolve_topic(topic)
    except Exception:
        return True  # unknown class: it must be looked at, so count it as one to apply
    return to_payload.dispatch(event_class) is not to_payload.dispatch(object)
