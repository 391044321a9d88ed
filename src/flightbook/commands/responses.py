"""The bodies the command API answers with (DESIGN.md "HTTP contract")."""

from __future__ import annotations

from uuid import UUID

import msgspec

from flightbook.domain.booking import BookingStatus
from flightbook.domain.inventory import FlightStatus

__all__ = ("BookingAccepted", "ErasureDone", "FlightCancellation", "FlightScheduled")


class FlightScheduled(msgspec.Struct, frozen=True, kw_only=True):
    """``201`` to ``POST /flights``."""

    flight_id: UUID


class BookingAccepted(msgspec.Struct, frozen=True, kw_only=True):
    """``202`` to ``POST /bookings`` and ``POST /bookings/{id}/cancel``.

    The booking goes on by itself (the saga): ``status`` is where it stands now.
    """

    booking_id: UUID
    status: BookingStatus


class FlightCancellation(msgspec.Struct, frozen=True, kw_only=True):
    """``202`` to ``POST /flights/{id}/cancel``; the flight's bookings are cancelled next."""

    flight_id: UUID
    status: FlightStatus


class ErasureDone(msgspec.Struct, frozen=True, kw_only=True):
    """``200`` to ``POST /customers/{customer_id}/erasure``: the customer's data is erased.

    Every key of the customer is gone; read models follow within seconds.
    """

    customer_id: str
    bookings_erased: int
    """Bookings whose passengers this request erased (0 when ``already_erased``)."""
    already_erased: bool
    """True when nothing was left to erase: an earlier erasure did it (nothing stored)."""
