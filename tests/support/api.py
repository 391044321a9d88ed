"""Bodies and clients of the HTTP APIs under test."""

from __future__ import annotations

import contextlib
import copy
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
        "fares": [fare_body()],
    }
    body.update(changes)
    return body


def fare_body(**changes: Any) -> dict[str, Any]:
    """One fare of a flight's body (``flight_body(fares=[fare_body(seats=10)])``)."""
    body: dict[str, Any] = {
        "code": "Y",
        "cabin": "economy",
        "price": {"amount": 45000, "currency": "EUR"},
        "seats": 150,
        "refundable": False,
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


def edited(body: dict[str, Any], *path: str | int, value: Any) -> dict[str, Any]:
    """A copy of ``body`` with the member at ``path`` (e.g. ``"fares", 0, "seats"``) set."""
    changed = copy.deepcopy(body)
    _holder(changed, path)[path[-1]] = value
    return changed


def without(body: dict[str, Any], *path: str | int) -> dict[str, Any]:
    """A copy of ``body`` without the member at ``path``."""
    changed = copy.deepcopy(body)
    del _holder(changed, path)[path[-1]]
    return changed


def _holder(body: dict[str, Any], path: tuple[str | int, ...]) -> Any:
    place: Any = body
    for step in path[:-1]:
        place = place[step]
    return place


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
