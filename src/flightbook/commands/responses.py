"""The bodies the command API answers with (DESIGN.md "HTTP contract")."""

from __future__ import annotations

from uuid import UUID

import msgspec

from flightbook.domain.booking import BookingStatus
from flightbook.domain.inventory import FlightStatus

__all__ = ("BookingAccepted", "FlightCancellation", "FlightScheduled")


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
