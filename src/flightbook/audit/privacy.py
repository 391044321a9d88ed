"""A data subject's access request (GDPR Art. 15): everything flightbook holds about a customer.

:func:`export_subject` reads the event store only (the truth; the read models are copies of
it): the customer's bookings (found through ``booking.customer_bookings``, or through the
booking log where that table does not exist yet), each replayed from its events with its
flight, its payment and its history, the passengers opened with the personal-data vault
(``"[erased]"`` once erased), and the customer's erasures (``DataSubject.Erased``).

Payment tokens are credentials, not data about the person: a token in an export file (a
file that is mailed, stored, forwarded) could be replayed against the gateway. The export
shows only their last four characters (:func:`mask_payment_token`), the way a card
statement shows a card number; the auditors' commands do the same.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import TYPE_CHECKING, Any

from flightbook.audit.log import plain
from flightbook.domain.payment import payment_id_for
from flightbook.domain.subject import data_subject_id
from flightbook.eventstore.pii import ERASED, SealedDataError, is_sealed

if TYPE_CHECKING:
    import uuid
    from collections.abc import Callable

    from flightbook.audit.log import EventLog
    from flightbook.eventstore.pii import PersonalDataVault

__all__ = (
    "EXPORT_FORMAT",
    "UNREADABLE",
    "export_subject",
    "mask_payment_token",
)

EXPORT_FORMAT = "flightbook.data-subject-export/1"
"""The ``format`` of the export document; a change of its shape gets a new number."""

UNREADABLE = "[unreadable]"
"""A sealed value that cannot be opened (altered, or sealed for someone else)."""

_SHOWN = 4
_PROGRESS_EVERY = 100


def mask_payment_token(token: str) -> str:
    """A payment token with all but its last four characters hidden (``"****k_ok"``).

    A token of four characters or fewer is hidden entirely: its end would be all of it.
    """
    if len(token) <= _SHOWN:
        return "*" * _SHOWN
    return "*" * _SHOWN + token[-_SHOWN:]


def _quiet(_line: str) -> None:
    pass


def _open(vault: PersonalDataVault, customer_id: str, sealed: str) -> str | None:
    """The plaintext, :data:`ERASED`, or None when it cannot be opened."""
    try:
        return vault.open(customer_id, sealed)
    except SealedDataError:
        return None


def _passengers(
    vault: PersonalDataVault, customer_id: str, sealed: str, count: int
) -> list[dict[str, Any]]:
    """Every passenger with every field sealed for them; erased ones keep their place."""
    plain_text = _open(vault, customer_id, sealed) if is_sealed(sealed) else None
    if plain_text == ERASED:
        return [{"name": ERASED, "email": ERASED} for _ in range(count)]
    try:
        data = json.loads(plain_text) if plain_text is not None else None
    except ValueError:
        data = None
    if not isinstance(data, list) or not all(isinstance(p, dict) for p in data):
        return [{"name": UNREADABLE, "email": UNREADABLE} for _ in range(count)]
    return [{str(k): plain(v) for k, v in passenger.items()} for passenger in data]


def _payment_token(vault: PersonalDataVault, customer_id: str, token: str) -> str:
    if not is_sealed(token):
        return mask_payment_token(token)  # a legacy event with the plain token
    opened = _open(vault, customer_id, token)
    if opened is None:
        return UNREADABLE
    return ERASED if opened == ERASED else mask_payment_token(opened)


def _replayed(log: EventLog, context: str, aggregate_id: uuid.UUID) -> tuple[Any, list[Any]]:
    """The aggregate rebuilt from its events, and the auditors' records of those events."""
    aggregate: Any = None
    records = []
    for notification, event in log.domain_events(context, aggregate_id):
        aggregate = event.mutate(aggregate)  # type: ignore[attr-defined]
        records.append(log.record(context, notification))
    return aggregate, records


def _time(value: object) -> str | None:
    return value.astimezone(dt.UTC).isoformat() if isinstance(value, dt.datetime) else None


def _money(amount: int, currency: str) -> dict[str, Any]:
    return {"amount": amount, "currency": currency}


def _flight(log: EventLog, flight_id: uuid.UUID) -> dict[str, Any]:
    found: dict[str, Any] = {"flight_id": str(flight_id)}
    first = log.first_event("inventory", flight_id)
    if first is None:
        return found
    for name in ("flight_number", "origin", "destination"):
        found[name] = getattr(first, name, None)
    for name in ("departure", "arrival"):
        found[name] = _time(getattr(first, name, None))
    return found


def _payment(log: EventLog, booking_id: uuid.UUID) -> dict[str, Any] | None:
    payment_id = payment_id_for(booking_id)
    payment, _records = _replayed(log, "payment", payment_id)
    if payment is None:
        return None
    return {
        "payment_id": str(payment_id),
        "status": plain(payment.status),
        "amount": _money(payment.amount, payment.currency),
        "refunded": _money(payment.refunded_amount, payment.currency),
    }


def _booking(
    log: EventLog, vault: PersonalDataVault, customer_id: str, booking_id: uuid.UUID
) -> dict[str, Any] | None:
    booking, records = _replayed(log, "booking", booking_id)
    if booking is None or getattr(booking, "customer_id", None) != customer_id:
        return None  # not a booking of this customer (never someone else's data)
    refund = booking.refund_amount if booking.status == "CANCELLED" else None
    return {
        "booking_id": str(booking_id),
        "flight": _flight(log, booking.flight_id),
        "fare": booking.fare,
        "status": plain(booking.status),
        "reason": booking.reason,
        "price": _money(booking.price_amount, booking.currency),
        "refund": _money(refund, booking.currency) if refund is not None else None,
        "refundable": booking.refundable,
        "channel": booking.channel,
        "created_at": _time(booking.created_on),
        "updated_at": _time(booking.modified_on),
        "passenger_count": booking.passenger_count,
        "passengers": _passengers(vault, customer_id, booking.passengers, booking.passenger_count),
        "payment_token": _payment_token(vault, customer_id, booking.payment_token),
        "personal_data_erased": bool(getattr(booking, "personal_data_erased", False)),
        "payment": _payment(log, booking_id),
        "events": [
            {
                "type": record.type,
                "occurred_at": _time(record.occurred_at),
                "actor": record.actor,
                "position": record.position,
                "event_id": record.event_id,
            }
            for record in records
        ],
    }


def _erasures(log: EventLog, customer_id: str) -> list[dict[str, Any]]:
    _subject, records = _replayed(log, "booking", data_subject_id(customer_id))
    return [
        {
            "occurred_at": _time(record.occurred_at),
            "reason": record.payload.get("reason"),
            "bookings": record.payload.get("bookings"),
            "actor": record.actor,
            "position": record.position,
            "event_id": record.event_id,
        }
        for record in records
        if record.type.endswith(".Erased")
    ]


def export_subject(
    log: EventLog,
    vault: PersonalDataVault,
    customer_id: str,
    *,
    say: Callable[[str], None] = _quiet,
    clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
) -> dict[str, Any]:
    """Everything the event store holds about ``customer_id``, as one JSON-able document.

    Args:
        log: The event logs (read-only).
        vault: Opens the customer's sealed personal data.
        customer_id: The customer (the ``sub`` of their tokens).
        say: Gets a progress line every 100 bookings.
        clock: When the export was made.
    """
    booking_ids = log.customer_bookings(customer_id)
    say(f"{len(booking_ids)} booking(s) found for customer {customer_id}")
    bookings = []
    for done, booking_id in enumerate(booking_ids, start=1):
        exported = _booking(log, vault, customer_id, booking_id)
        if exported is not None:
            bookings.append(exported)
        if done % _PROGRESS_EVERY == 0 or done == len(booking_ids):
            say(f"exported {done} of {len(booking_ids)} bookings")
    bookings.sort(key=lambda b: (b["created_at"] or "", b["booking_id"]))
    erasures = _erasures(log, customer_id)
    return {
        "format": EXPORT_FORMAT,
        "customer_id": customer_id,
        "generated_at": clock().astimezone(dt.UTC).isoformat(),
        "erasures": erasures,
        "bookings": bookings,
    }
