"""Bodies and clients of the HTTP APIs under test."""

from __future__ import annotations

import contextlib
import datetime as dt
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

from litestar import Litestar
from litestar.testing import TestClient
from prometheus_client import CollectorRegistry

from flightbook.runtime.ops import OpsServer

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


@contextlib.contextmanager
def ops_metrics(registry: CollectorRegistry) -> Iterator[Callable[[], str]]:
    """An ops server (as an API process runs one) on a free port: ``fetch()`` -> its /metrics."""
    server = OpsServer(host="127.0.0.1", port=0, registry=registry, ready=lambda: True).start()

    def fetch() -> str:
        url = f"http://127.0.0.1:{server.port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            return str(response.read().decode())

    try:
        yield fetch
    finally:
        server.stop()
