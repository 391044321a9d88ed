"""The relay's translation of a stored domain event into its published envelope.

The one place that knows both the domain events and the wire contract: a domain event
without a payload here stays private (never published). Readers of the event store that
must see exactly what the relay publishes (the projections' catch-up) use it too.
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime
from functools import cache, singledispatch
from typing import TYPE_CHECKING, Any, cast
from uuid import UUID

import msgspec
from eventsourcing.utils import resolve_topic

from flightbook.contracts import payloads
from flightbook.contracts.envelope import CONTRACT_VERSION, Envelope, payload_type_name
from flightbook.domain.booking import Booking
from flightbook.domain.inventory import FlightInventory
from flightbook.domain.payment import Payment
from flightbook.domain.subject import DataSubject

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
def to_payload(domain_event: object) -> payloads.AnyPayload | None:
    """The public payload of a domain event, or None when the event stays private."""
    return None


@to_payload.register(Booking.Requested)
def _booking_requested(e: Booking.Requested) -> payloads.BookingRequested:
    return payloads.BookingRequested(
        customer_id=e.customer_id,
        flight_id=e.flight_id,
        fare=e.fare,
        passenger_count=e.passenger_count,
        passengers=e.passengers,  # sealed text, never plaintext; the payment token stays out
        price=payloads.Money(amount=e.price_amount, currency=e.currency),
        refundable=e.refundable,
        channel=e.channel,
    )


@to_payload.register(Booking.PassengersErased)
def _passengers_erased(e: Booking.PassengersErased) -> payloads.PassengersErased:
    return payloads.PassengersErased(booking_id=_uuid(e.originator_id), reason=e.reason)


@to_payload.register(DataSubject.Erased)
def _data_subject_erased(e: DataSubject.Erased) -> payloads.DataSubjectErased:
    return payloads.DataSubjectErased(
        customer_id=e.customer_id, reason=e.reason, bookings=e.bookings
    )


@to_payload.register(Booking.Cancelled)
def _booking_cancelled(e: Booking.Cancelled) -> payloads.BookingCancelled:
    return payloads.BookingCancelled(
        reason=e.reason,
        cancelled_by=e.by,
        refund_amount=e.refund_amount,
        was_confirmed=e.was_confirmed,
    )


def _fare_terms(data: dict[str, str | int | bool]) -> payloads.FareTerms:
    return payloads.FareTerms(
        code=str(data["code"]),
        cabin=str(data["cabin"]),
        price=payloads.Money(amount=int(data["price_amount"]), currency=str(data["currency"])),
        seats=int(data["seats"]),
        refundable=bool(data["refundable"]),
        overbooking=int(data.get("overbooking", 0)),
    )


@to_payload.register(FlightInventory.Scheduled)
def _flight_scheduled(e: FlightInventory.Scheduled) -> payloads.FlightScheduled:
    return payloads.FlightScheduled(
        flight_number=e.flight_number,
        origin=e.origin,
        destination=e.destination,
        departure=_utc(e.departure),
        arrival=_utc(e.arrival),
        fares=[_fare_terms(fare) for fare in e.fares],
    )


@to_payload.register(FlightInventory.FareChanged)
def _fare_changed(e: FlightInventory.FareChanged) -> payloads.FareChanged:
    return payloads.FareChanged(
        fare_code=e.fare_code,
        price=payloads.Money(amount=e.price_amount, currency=e.currency),
        seats=e.seats,
        overbooking=e.overbooking,
    )


@to_payload.register(Payment.Authorized)
def _payment_authorized(e: Payment.Authorized) -> payloads.PaymentAuthorized:
    return payloads.PaymentAuthorized(
        booking_id=e.booking_id,
        amount=payloads.Money(amount=e.amount, currency=e.currency),
        gateway_ref=e.gateway_ref,
    )


@to_payload.register(Payment.Declined)
def _payment_declined(e: Payment.Declined) -> payloads.PaymentDeclined:
    return payloads.PaymentDeclined(
        booking_id=e.booking_id,
        amount=payloads.Money(amount=e.amount, currency=e.currency),
        reason=e.reason,
    )


@to_payload.register(Payment.Refunded)
def _payment_refunded(e: Payment.Refunded) -> payloads.PaymentRefunded:
    return payloads.PaymentRefunded(refunded_amount=e.amount, gateway_ref=e.gateway_ref)


_SAME_FIELDS: dict[type, type[payloads.Payload]] = {
    Booking.SeatsHeld: payloads.BookingSeatsHeld,
    Booking.PaymentAuthorized: payloads.BookingPaymentAuthorized,
    Booking.Confirmed: payloads.BookingConfirmed,
    Booking.Rejected: payloads.BookingRejected,
    FlightInventory.SeatsHeld: payloads.SeatsHeld,
    FlightInventory.HoldConfirmed: payloads.HoldConfirmed,
    FlightInventory.HoldReleased: payloads.HoldReleased,
    FlightInventory.HoldExpired: payloads.HoldExpired,
    FlightInventory.SoldSeatsReturned: payloads.SoldSeatsReturned,
    FlightInventory.FlightCancelled: payloads.FlightCancelled,
    Payment.Captured: payloads.PaymentCaptured,
    Payment.Voided: payloads.PaymentVoided,
}
"""Domain events whose payload is the event's fields of the same names (times in UTC)."""


def _same_fields(
    domain_event: object, *, payload_type: type[payloads.Payload]
) -> payloads.AnyPayload:
    values: dict[str, Any] = {}
    for field in msgspec.structs.fields(payload_type):
        if not hasattr(domain_event, field.name):
            if field.required:
                raise TypeError(f"{type(domain_event).__qualname__} has no {field.name}")
            continue  # a default of the contract (``status``)
        value = getattr(domain_event, field.name)
        values[field.name] = _utc(value) if isinstance(value, datetime) else value
    return cast("payloads.AnyPayload", payload_type(**values))


for _event_type, _payload_type in _SAME_FIELDS.items():
    to_payload.register(_event_type, functools.partial(_same_fields, payload_type=_payload_type))


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
