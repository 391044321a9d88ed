"""Bookings sealed as the command API seals them, and an erasure as ``privacy erase`` records it."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from flightbook.domain.subject import DataSubject, ErasureReason
from flightbook.eventstore.metadata import recording
from tests.support.builders import a_booking

if TYPE_CHECKING:
    import uuid

    from flightbook.eventstore.pii import PersonalDataVault
    from tests.support.writeside import WriteSide


def book_sealed(
    side: WriteSide,
    vault: PersonalDataVault,
    flight_id: uuid.UUID,
    customer: str,
    *,
    passengers: list[dict[str, str]],
    token: str = "tok_ok",  # noqa: S107 - a test card token
) -> uuid.UUID:
    """A booking whose passengers and payment token are sealed for ``customer``."""
    booking = a_booking(
        flight_id,
        customer=customer,
        passengers=len(passengers),
        sealed=vault.seal(customer, json.dumps(passengers)),
        token=vault.seal(customer, token),
    )
    with recording(actor=customer):
        side.bookings.record(booking)
    return booking.id


def record_erasure(
    side: WriteSide,
    vault: PersonalDataVault,
    customer: str,
    *,
    actor: str = "dpo",
    reason: ErasureReason = ErasureReason.CUSTOMER_REQUEST,
) -> None:
    """Each (final) booking's ``PassengersErased`` and the subject's ``Erased``; keys gone.

    The same events as ``CommandService.erase_personal_data``, without its guards: for the
    tests of what reads them (projections, audit, export).
    """
    bookings = [side.booking(b) for b in side.bookings.customer_bookings(customer)]
    for booking in bookings:
        booking.erase_personal_data(reason)
    subject = DataSubject.open(customer)
    subject.erase(reason, bookings=len(bookings))
    with recording(actor=actor):
        side.bookings.record(*bookings, subject)
    vault.erase(customer)
