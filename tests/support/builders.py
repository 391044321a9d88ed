"""Domain objects to put in a log: a flight with one fare, a requested booking."""

from __future__ import annotations

import datetime as dt
import uuid

from flightbook.domain.booking import Booking
from flightbook.domain.inventory import FlightInventory
from flightbook.domain.values import Cabin, Fare, Money

PRICE = 45000
"""The default price of fare ``Y``, in cents."""


def a_flight(
    *,
    seats: int = 10,
    refundable: bool = False,
    price: int = PRICE,
    departure: dt.datetime | None = None,
    flight_number: str = "FB101",
    destination: str = "JFK",
    hours: int = 8,
    fares: list[Fare] | None = None,
) -> FlightInventory:
    """A flight from LHR with one economy fare ``Y`` (unless ``fares``), 30 days from now."""
    departs = departure or dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(days=30)
    return FlightInventory.schedule(
        flight_number=flight_number,
        origin="LHR",
        destination=destination,
        departure=departs,
        arrival=departs + dt.timedelta(hours=hours),
        fares=fares
        or [
            Fare(
                code="Y",
                cabin=Cabin.ECONOMY,
                price=Money(price, "EUR"),
                seats=seats,
                refundable=refundable,
            )
        ],
    )


def a_booking(
    flight_id: uuid.UUID,
    *,
    customer: str = "alice",
    token: str = "tok_ok",  # noqa: S107 - a test card token
    passengers: int = 1,
    price: int = PRICE,
    refundable: bool = False,
    fare: str = "Y",
    sealed: str = "sealed",
    booking_id: uuid.UUID | None = None,
) -> Booking:
    """A requested booking of ``passengers`` seats at ``price`` each (passengers sealed)."""
    return Booking.request(
        booking_id=booking_id or uuid.uuid4(),
        customer_id=customer,
        flight_id=flight_id,
        fare=fare,
        passengers=sealed,
        passenger_count=passengers,
        price_amount=price * passengers,
        currency="EUR",
        refundable=refundable,
        payment_token=token,
    )
