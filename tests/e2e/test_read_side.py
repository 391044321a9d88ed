"""The whole pipeline as real processes, through both HTTP APIs.

command API -> event store -> saga / relay -> Kafka -> projection workers -> MongoDB and
Redis -> query API. A customer's first read with ``X-Flightbook-After`` already shows what
their command did; what the saga does afterwards shows up by polling with a deadline.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import msgspec
import pytest

from flightbook.config.settings import Settings
from tests.support.api import fare_body, flight_body
from tests.support.system import RunningSystem, eventually, running_system

pytestmark = pytest.mark.e2e

DAY = "2031-12-24"
FLIGHT = flight_body(
    flight_number="FB202",
    departure=f"{DAY}T10:00:00Z",
    arrival=f"{DAY}T18:00:00Z",
    fares=[fare_body(seats=10, refundable=True)],
)


def seats_left(search: httpx.Response, flight_id: str) -> int | None:
    for item in search.json()["items"]:
        if item["flight_id"] == flight_id:
            return int(item["fares"][0]["seats_left"])
    return None


@pytest.fixture
def system(settings: Settings, tmp_path: Path) -> Iterator[RunningSystem]:
    fast = msgspec.structs.replace(
        settings,
        saga_workers=2,
        saga_poll_seconds=0.1,
        relay_poll_seconds=0.1,
        projection_poll_seconds=0.1,
        query_wait_seconds=20.0,  # the first read may meet workers still joining their group
    )
    with running_system(fast, tmp_path) as up:
        yield up


def test_a_booking_is_read_back_at_once_confirmed_then_cancelled_and_seats_follow(
    system: RunningSystem,
) -> None:
    ops = system.command_caller("olga", "ops")
    alice = system.command_caller("alice", "customer")
    alice_reads = system.query_caller("alice", "customer")
    bob_reads = system.query_caller("bob", "customer")
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
