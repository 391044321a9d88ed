"""Business-flow caps: how much of the seat stock one customer may tie up at once.

A booking is *in progress* from its request until it is confirmed, rejected or
cancelled (``REQUESTED``, ``SEATS_HELD``, ``PAYMENT_AUTHORIZED``): its seats are held,
or about to be, for the customer and nobody else can buy them. Without a bound, five
bookings of nine passengers with a payment that never answers held a whole flight for
the hold time (issue 15, OWASP API6). :func:`check_caps` decides whether one more
booking keeps a customer within :class:`BookingCaps`; it is pure, the count it is given
comes from ``booking.bookings_in_progress`` (:mod:`flightbook.eventstore.inprogress`).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from flightbook.domain.errors import DomainError

if TYPE_CHECKING:
    from collections.abc import Iterable
    from uuid import UUID

__all__ = ("BookingCaps", "Cap", "CapExceededError", "InProgress", "check_caps")


class Cap(StrEnum):
    """The caps, by the name a refused client reads."""

    BOOKINGS_IN_PROGRESS = "bookings_in_progress"
    SEATS_HELD = "seats_held"
    SEATS_HELD_PER_FLIGHT = "seats_held_per_flight"


@dataclass(frozen=True)
class BookingCaps:
    """The limits (settings ``cap_bookings_in_progress``, ``cap_seats_held``...)."""

    bookings_in_progress: int
    seats_held: int
    seats_held_per_flight: int


@dataclass(frozen=True)
class InProgress:
    """One booking of a customer that is not finished: its flight and its seats."""

    booking_id: UUID
    flight_id: UUID
    seats: int


class CapExceededError(DomainError):
    """One more booking would take the customer past a cap; nothing is stored.

    Attributes:
        cap: which cap.
        limit: its limit.
        current: what the customer has now (bookings, or seats held).
        requested: what the refused booking adds (1 booking, or its seats).
    """

    default_code = "cap_exceeded"

    def __init__(self, cap: Cap, *, limit: int, current: int, requested: int) -> None:
        what = "bookings in progress" if cap is Cap.BOOKINGS_IN_PROGRESS else "seats held"
        where = " on this flight" if cap is Cap.SEATS_HELD_PER_FLIGHT else ""
        super().__init__(
            f"cap {cap.value}: you have {current} {what}{where}, this booking adds "
            f"{requested} and the limit is {limit}; wait until a booking is confirmed, "
            "rejected or cancelled"
        )
        self.cap = cap
        self.limit = limit
        self.current = current
        self.requested = requested


def check_caps(
    caps: BookingCaps, in_progress: Iterable[InProgress], *, flight_id: UUID, seats: int
) -> None:
    """Refuse a booking of ``seats`` on ``flight_id`` that would break a cap.

    Args:
        caps: the limits.
        in_progress: the customer's bookings in progress (without the one asked for).
        flight_id: the flight of the booking asked for.
        seats: its number of passengers.

    Raises:
        CapExceededError: naming the first cap broken, checked in the order bookings in
            progress, seats held on the flight, seats held in all.
    """
    bookings = list(in_progress)
    on_flight = sum(b.seats for b in bookings if b.flight_id == flight_id)
    held = sum(b.seats for b in bookings)
    checks = (
        (Cap.BOOKINGS_IN_PROGRESS, caps.bookings_in_progress, len(bookings), 1),
        (Cap.SEATS_HELD_PER_FLIGHT, caps.seats_held_per_flight, on_flight, seats),
        (Cap.SEATS_HELD, caps.seats_held, held, seats),
    )
    for cap, limit, current, requested in checks:
        if current + requested > limit:
            raise CapExceededError(cap, limit=limit, current=current, requested=requested)
