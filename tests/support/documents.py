"""Read-model documents shaped as ``docs/read-model-shapes.md`` says the workers write them."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

DEPARTURE = dt.datetime(2026, 12, 24, 10, 0, tzinfo=dt.UTC)
CREATED = dt.datetime(2026, 11, 1, 9, 30, 0, 123000, tzinfo=dt.UTC)  # BSON keeps milliseconds


def new_id() -> str:
    return str(uuid.uuid4())


def money(amount: int, currency: str = "EUR") -> dict[str, Any]:
    return {"amount": amount, "currency": currency}


def fare_doc(
    code: str = "Y", *, seats: int = 150, held: int = 0, sold: int = 0, price: int = 45000
) -> dict[str, Any]:
    return {
        "code": code,
        "cabin": "economy" if code == "Y" else "business",
        "price": money(price),
        "seats": seats,
        "overbooking": 0,
        "refundable": False,
        "held": held,
        "sold": sold,
        "seats_left": max(0, seats - held - sold),
    }


def flight_doc(
    flight_id: str | None = None,
    *,
    origin: str = "LHR",
    destination: str = "JFK",
    departure: dt.datetime = DEPARTURE,
    status: str = "SCHEDULED",
    fares: list[dict[str, Any]] | None = None,
    flight_number: str = "FB101",
) -> dict[str, Any]:
    flight_id = flight_id or new_id()
    return {
        "_id": flight_id,
        "flight_id": flight_id,
        "flight_number": flight_number,
        "origin": origin,
        "destination": destination,
        "date": departure.date().isoformat(),
        "departure": departure,
        "arrival": departure + dt.timedelta(hours=8),
        "status": status,
        "fares": fares if fares is not None else [fare_doc()],
        "cancellation_reason": None,
        "updated_at": CREATED,
        "_v": 1,
        "_pos": 1,
    }


def booking_doc(
    booking_id: str | None = None,
    *,
    customer_id: str = "alice",
    flight_id: str | None = None,
    status: str = "REQUESTED",
    created_at: dt.datetime = CREATED,
    passengers: list[Any] | None = None,
    reason: str | None = None,
    refund: dict[str, Any] | None = None,
) -> dict[str, Any]:
    booking_id = booking_id or new_id()
    return {
        "_id": booking_id,
        "booking_id": booking_id,
        "customer_id": customer_id,
        "flight_id": flight_id or new_id(),
        "fare": "Y",
        "status": status,
        "passengers": passengers
        if passengers is not None
        else [{"name": "Ada Lovelace", "email": "ada@example.com"}],
        "passenger_count": 1,
        "price": money(45000),
        "reason": reason,
        "refund": refund,
        "hold_expires_at": None,
        "created_at": created_at,
        "updated_at": created_at + dt.timedelta(seconds=2),
        "reached": {"REQUESTED": created_at},
        "date": created_at.date().isoformat(),
        "route": "LHR-JFK",
        "_v": 1,
        "_pos": 1,
    }


def sales_doc(
    date: str, origin: str = "LHR", destination: str = "JFK", *, confirmed: int = 1
) -> dict[str, Any]:
    return {
        "_id": f"{date}:{origin}-{destination}",
        "date": date,
        "origin": origin,
        "destination": destination,
        "bookings_confirmed": confirmed,
        "seats_sold": confirmed,
        "revenue": money(45000 * confirmed),
        "cancellations": 0,
        "refunds": money(0),
    }


def load_factor_doc(flight_id: str, fare: str, *, seats: int, sold: int) -> dict[str, Any]:
    return {
        "_id": f"{flight_id}:{fare}",
        "flight_id": flight_id,
        "flight_number": "FB101",
        "date": "2026-12-24",
        "fare": fare,
        "seats": seats,
        "sold": sold,
        "held": 1,
        "load_factor": sold / seats,
    }


def funnel_doc(date: str, *, requested: int = 3) -> dict[str, Any]:
    return {
        "_id": date,
        "date": date,
        "requested": requested,
        "seats_held": requested - 1,
        "payment_authorized": requested - 1,
        "confirmed": requested - 2,
        "rejected": {"NO_SEATS": 1},
        "cancelled": {"CUSTOMER": 1},
    }


CONFIRMED_PATH = ("REQUESTED", "SEATS_HELD", "PAYMENT_AUTHORIZED", "CONFIRMED")
"""The statuses of a booking that is paid and confirmed, in order."""


def booking_through(statuses: int, booking_id: str | None = None, **fields: Any) -> dict[str, Any]:
    """A booking document that reached the first ``statuses`` of :data:`CONFIRMED_PATH`,
    a second apart, at version ``statuses`` (the same booking at each call for one id)."""
    booking_id = booking_id or new_id()
    fields.setdefault("flight_id", str(uuid.uuid5(uuid.NAMESPACE_OID, booking_id)))
    reached: dict[str, dt.datetime | None] = dict.fromkeys(
        (*CONFIRMED_PATH, "REJECTED", "CANCELLED"), None
    )
    for n, status in enumerate(CONFIRMED_PATH[:statuses]):
        reached[status] = CREATED + dt.timedelta(seconds=n)
    doc = booking_doc(booking_id, status=CONFIRMED_PATH[statuses - 1], **fields)
    return {**doc, "reached": reached, "_v": statuses}
