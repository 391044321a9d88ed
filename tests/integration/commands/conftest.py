"""The command API built by ``build_command_api`` on the test's own database."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from litestar import Litestar
from litestar.testing import TestClient

from flightbook.bootstrap import build_command_api
from flightbook.config.settings import Settings
from flightbook.http.tokens import mint_token

Api = TestClient[Litestar]
Headers = Callable[..., dict[str, str]]


@pytest.fixture
def api(settings: Settings) -> Iterator[Api]:
    """A client of the real command API (lifespan run: pools opened, then closed)."""
    with TestClient(build_command_api(settings)) as client:
        yield client


@pytest.fixture
def auth(settings: Settings) -> Headers:
    """``auth("alice", "customer")`` -> headers with a bearer token for alice as a customer."""

    def headers(subject: str, *roles: str, **extra: str) -> dict[str, str]:
        token = mint_token(settings, subject=subject, roles=roles)
        return {"Authorization": f"Bearer {token}", **extra}

    return headers


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


@pytest.fixture
def flight_id(api: Api, auth: Headers) -> str:
    """A flight scheduled through the API (fare Y, 150 seats, 450.00 EUR, not refundable)."""
    response = api.post("/flights", json=flight_body(), headers=auth("ops-1", "ops"))
    assert response.status_code == 201, response.text
    return str(response.json()["flight_id"])


@pytest.fixture
def event_counts(settings: Settings) -> Callable[[], dict[str, int]]:
    """Rows in each events table and in booking.idempotency_keys, right now."""
    assert settings.postgres_url is not None
    url = settings.postgres_url

    def counts() -> dict[str, int]:
        with psycopg.connect(url) as conn:
            row = conn.execute(
                "SELECT (SELECT count(*) FROM booking.bookings_events),"
                " (SELECT count(*) FROM inventory.inventory_events),"
                " (SELECT count(*) FROM payment.payments_events),"
                " (SELECT count(*) FROM booking.idempotency_keys)"
            ).fetchone()
        assert row is not None
        return dict(zip(("booking", "inventory", "payment", "idempotency_keys"), row, strict=True))

    return counts
