"""The whole pipeline as real processes, through both HTTP APIs.

command API -> event store -> saga / relay -> Kafka -> projection workers -> MongoDB and
Redis -> query API. A customer's first read with ``X-Flightbook-After`` already shows what
their command did; what the saga does afterwards shows up by polling with a deadline.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

import httpx
import msgspec
import pytest

from flightbook.config.settings import Settings
from flightbook.http.tokens import mint_token
from tests.support.api import fare_body, flight_body
from tests.support.processes import SystemProcess, free_port

pytestmark = pytest.mark.e2e

T = TypeVar("T")
DAY = "2031-12-24"
FLIGHT = flight_body(
    flight_number="FB202",
    departure=f"{DAY}T10:00:00Z",
    arrival=f"{DAY}T18:00:00Z",
    fares=[fare_body(seats=10, refundable=True)],
)
WORKERS = {
    # composition root -> extra environment (its ops HTTP port: any free one)
    "commands/saga.py": {"FLIGHTBOOK_SAGA_HTTP_PORT": "0"},
    "commands/relay.py": {"FLIGHTBOOK_RELAY_HTTP_PORT": "0"},
    "projections/bookings.py": {"FLIGHTBOOK_PROJECTION_BOOKINGS_HTTP_PORT": "0"},
    "projections/flights.py": {"FLIGHTBOOK_PROJECTION_FLIGHTS_HTTP_PORT": "0"},
}


def eventually(probe: Callable[[], T], done: Callable[[T], bool], *, within: float = 60.0) -> T:
    """Call ``probe`` until ``done`` says yes about its answer; the last answer otherwise."""
    deadline = time.monotonic() + within
    answer = probe()
    while not done(answer) and time.monotonic() < deadline:
        time.sleep(0.2)
        answer = probe()
    return answer


class Caller:
    """Someone with a token, calling one of the APIs."""

    def __init__(self, base: str, settings: Settings, subject: str, role: str) -> None:
        self.base = base
        self.token = mint_token(settings, subject=subject, roles=[role])

    def headers(self, **extra: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}", **extra}

    def get(self, path: str, *, after: str | None = None) -> httpx.Response:
        extra = {"X-Flightbook-After": after} if after else {}
        return httpx.get(f"{self.base}{path}", headers=self.headers(**extra), timeout=30)

    def post(self, path: str, body: Any = None, **headers: str) -> httpx.Response:
        return httpx.post(
            f"{self.base}{path}", json=body, headers=self.headers(**headers), timeout=30
        )


def seats_left(search: httpx.Response, flight_id: str) -> int | None:
    for item in search.json()["items"]:
        if item["flight_id"] == flight_id:
            return int(item["fares"][0]["seats_left"])
    return None


def test_a_booking_is_read_back_at_once_confirmed_then_cancelled_and_seats_follow(
    settings: Settings, processes: list[SystemProcess]
) -> None:
    fast = msgspec.structs.replace(
        settings,
        saga_workers=2,
        saga_poll_seconds=0.1,
        relay_poll_seconds=0.1,
        projection_poll_seconds=0.1,
        query_wait_seconds=20.0,  # the first read may meet workers still joining their group
    )
    command_port, query_port = free_port(), free_port()
    command_api = SystemProcess(
        "commands/api.py", fast, FLIGHTBOOK_COMMAND_PORT=str(command_port)
    ).start()
    query_api = SystemProcess("queries/api.py", fast, FLIGHTBOOK_QUERY_PORT=str(query_port)).start()
    processes += [command_api, query_api]
    processes += [SystemProcess(script, fast, **env).start() for script, env in WORKERS.items()]
    commands, queries = f"http://127.0.0.1:{command_port}", f"http://127.0.0.1:{query_port}"
    command_api.wait_http(f"{commands}/health/ready")
    query_api.wait_http(f"{queries}/health/ready")
    ops = Caller(commands, settings, "olga", "ops")
    alice = Caller(commands, settings, "alice", "customer")
    alice_reads = Caller(queries, settings, "alice", "customer")
    bob_reads = Caller(queries, settings, "bob", "customer")
    search = f"/flights?origin=LHR&destination=JFK&date={DAY}"

    scheduled = ops.post("/flights", FLIGHT)
    assert scheduled.status_code == 201, scheduled.text
    flight_id = scheduled.json()["flight_id"]
    found = alice_reads.get(search, after=scheduled.headers["X-Flightbook-Position"])
    assert found.status_code == 200, found.text
    assert seats_left(found, flight_id) == 10

    booked = alice.post(
        "/bookings",
        {
            "flight_id": flight_id,
            "fare": "Y",
            "passengers": [{"name": "Ada Lovelace", "email": "ada@example.com"}],
            "payment_token": "tok_ok",
        },
        **{"Idempotency-Key": str(uuid.uuid4())},
    )
    assert booked.status_code == 202, booked.text
    booking_id = booked.json()["booking_id"]

    first = alice_reads.get(
        f"/bookings/{booking_id}", after=booked.headers["X-Flightbook-Position"]
    )
    assert first.status_code == 200, first.text
    assert first.json()["booking_id"] == booking_id
    assert first.json()["customer_id"] == "alice"
    assert first.json()["passengers"] == [{"name": "Ada Lovelace", "email": "ada@example.com"}]
    assert first.json()["price"] == {"amount": 45000, "currency": "EUR"}

    confirmed = eventually(
        lambda: alice_reads.get(f"/bookings/{booking_id}"),
        lambda r: r.status_code == 200 and r.json()["status"] == "CONFIRMED",
    )
    assert confirmed.json()["status"] == "CONFIRMED", confirmed.text
    fewer = eventually(lambda: alice_reads.get(search), lambda r: seats_left(r, flight_id) == 9)
    assert seats_left(fewer, flight_id) == 9

    not_yours = bob_reads.get(f"/bookings/{booking_id}")
    unknown = bob_reads.get(f"/bookings/{uuid.uuid4()}")
    assert not_yours.status_code == unknown.status_code == 404
    assert not_yours.content == unknown.content
    assert booking_id not in {b["booking_id"] for b in bob_reads.get("/bookings").json()["items"]}
    assert booking_id in {b["booking_id"] for b in alice_reads.get("/bookings").json()["items"]}

    cancelled = alice.post(f"/bookings/{booking_id}/cancel")
    assert cancelled.status_code == 202, cancelled.text
    after_cancel = alice_reads.get(
        f"/bookings/{booking_id}", after=cancelled.headers["X-Flightbook-Position"]
    )
    assert after_cancel.status_code == 200, after_cancel.text
    assert after_cancel.json()["status"] == "CANCELLED"
    back = eventually(lambda: alice_reads.get(search), lambda r: seats_left(r, flight_id) == 10)
    assert seats_left(back, flight_id) == 10
    assert booking_id not in {b["booking_id"] for b in bob_reads.get("/bookings").json()["items"]}
