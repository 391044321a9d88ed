"""The flights the benchmark writes straight into the event store (backlogs, raw limits)."""

from __future__ import annotations

import datetime as dt

from flightbook.domain.inventory import FlightInventory
from flightbook.domain.values import Cabin, Fare, Money

__all__ = ("bench_flight",)


def bench_flight(
    departure: dt.datetime,
    *,
    number: str = "FB1",
    route: tuple[str, str] = ("LHR", "JFK"),
    hours: int = 8,
    seats: int = 10,
    price: int = 100,
) -> FlightInventory:
    """A new flight with one economy fare ``Y``: one ``Scheduled`` event to store."""
    fare = Fare(
        code="Y", cabin=Cabin.ECONOMY, price=Money(price, "EUR"), seats=seats, refundable=False
    )
    origin, destination = route
    return FlightInventory.schedule(
        flight_number=number,
        origin=origin,
        destination=destination,
        departure=departure,
        arrival=departure + dt.timedelta(hours=hours),
        fares=[fare],
    )
