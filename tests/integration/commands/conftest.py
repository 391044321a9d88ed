"""The command API built by ``build_command_api`` on the test's own database."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import psycopg
import pytest
from litestar.testing import TestClient
from prometheus_client import CollectorRegistry

from flightbook.bootstrap import build_command_api
from flightbook.config.settings import Settings
from tests.support.api import Api, Headers, flight_body


@pytest.fixture
def registry() -> CollectorRegistry:
    """Where the API's metrics go (its ops port serves them: ``tests.support.api.ops_metrics``)."""
    return CollectorRegistry()


@pytest.fixture
def api(settings: Settings, registry: CollectorRegistry) -> Iterator[Api]:
    """A client of the real command API (lifespan run: pools opened, then closed)."""
    with TestClient(build_command_api(settings, registry=registry)) as client:
        yield client


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
