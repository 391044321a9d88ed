"""Bodies and clients of the HTTP APIs under test."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from litestar import Litestar
from litestar.testing import TestClient

Api = TestClient[Litestar]


Headers = Callable[..., dict[str, str]]


def flight_body(**changes: Any) -> dict[str, Any]:
    departure = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(days=30)
    body: dict[str, Any] = {
        "flight_number": "FB101",
        "origin": "LHR",
        "destination": "JFK",
        "departure": departure.isoformat().replace("+00:00", "Z"),
        "arrival": (departure + dt.timedelta(hours=8)).isoformat().replace("+00:00", "Z"),
        "fares": [
            {
                "code": "Y",
                "cabin": "economy",
                "price": {"amount": 45000, "currency": "EUR"},
                "seats": 150,
                "refundable": False,
            }
        ],
    }
    body.update(changes)
    return body


def booking_body(flight_id: str, **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "flight_id": flight_id,
        "fare": "Y",
        "passengers": [{"name": "Ada Lovelace", "email": "ada@example.com"}],
        "payment_token": "tok_ok",
    }
    body.update(changes)
    return body
