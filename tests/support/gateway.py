"""What the simulated payment gateway's ledger says about bookings."""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from flightbook.payments.simulated import SimulatedGateway

__all__ = ("capture_counts",)


def capture_counts(
    gateway: SimulatedGateway, bookings: Iterable[uuid.UUID]
) -> dict[uuid.UUID, int]:
    """How many captures the ledger holds for each booking."""
    return {
        booking: sum(e.operation == "capture" for e in gateway.entries_for_booking(str(booking)))
        for booking in bookings
    }
