"""60 customers race for 10 seats through the real command API and saga processes."""

from __future__ import annotations

import collections
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import msgspec
import pytest
from psycopg_pool import ConnectionPool

from flightbook.config.settings import Settings
from flightbook.domain.booking import BookingStatus
from flightbook.http.tokens import mint_token
from flightbook.payments.simulated import SimulatedGateway
from tests.support.api import fare_body, flight_body
from tests.support.gateway import capture_counts
from tests.support.processes import SystemProcess, free_port
from tests.support.writeside import WriteSide

pytestmark = pytest.mark.e2e

FLIGHT = flight_body(fares=[fare_body(seats=10)])


def test_sixty_concurrent_bookings_for_ten_seats_confirm_exactly_ten(
    settings: Settings, write_side: WriteSide, processes: list[SystemProcess]
) -> None:
    port = free_port()
    fast = msgspec.structs.replace(settings, saga_workers=4, saga_poll_seconds=0.1)
    api = SystemProcess("commands/api.py", fast, FLIGHTBOOK_COMMAND_PORT=str(port)).start()
    saga = SystemProcess("commands/saga.py", fast, FLIGHTBOOK_SAGA_HTTP_PORT="0").start()
    processes += [api, saga]
    base = f"http://127.0.0.1:{port}"
    api.wait_http(f"{base}/health/ready")
    ops = mint_token(settings, subject="olga", roles=["ops"])
    flight = httpx.post(
        f"{base}/flights", json=FLIGHT, headers={"Authorization": f"Bearer {ops}"}, timeout=10
    )
    assert flight.status_code == 201, flight.text
    flight_id = flight.json()["flight_id"]

    def book(n: int) -> httpx.Response:
        token = mint_token(settings, subject=f"customer-{n}", roles=["customer"])
        body: dict[str, Any] = {
            "flight_id": flight_id,
            "fare": "Y",
            "payment_token": "tok_ok",
            "passengers": [{"name": f"Passenger {n}", "email": f"p{n}@example.com"}],
        }
        return httpx.post(
            f"{base}/bookings",
            json=body,
            timeout=30,
            headers={"Authorization": f"Bearer {token}", "Idempotency-Key": str(uuid.uuid4())},
        )

    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(book, range(60)))

    assert [a.status_code for a in answers] == [202] * 60
    booking_ids = [uuid.UUID(a.json()["booking_id"]) for a in answers]
    assert len(set(booking_ids)) == 60
    deadline = time.monotonic() + 120
    statuses: collections.Counter[BookingStatus] = collections.Counter()
    while time.monotonic() < deadline:
        statuses = collections.Counter(write_side.booking(b).status for b in booking_ids)
        if statuses[BookingStatus.CONFIRMED] + statuses[BookingStatus.REJECTED] == 60:
            break
        time.sleep(0.5)
    assert statuses == {BookingStatus.CONFIRMED: 10, BookingStatus.REJECTED: 50}
    inventory = write_side.flight(uuid.UUID(flight_id))
    assert (inventory.sold("Y"), inventory.held("Y")) == (10, 0)
    ledger = settings.gateway_database()
    assert ledger is not None
    confirmed = {b for b in booking_ids if write_side.booking(b).status is BookingStatus.CONFIRMED}
    with ConnectionPool(ledger, min_size=1, max_size=1) as db:
        gateway = SimulatedGateway(db)

        def captures() -> dict[uuid.UUID, int]:
            return capture_counts(gateway, booking_ids)

        # The payment is captured by a job the saga schedules when it confirms the booking,
        # so the last captures may come a moment after the last CONFIRMED.
        expected = {b: (1 if b in confirmed else 0) for b in booking_ids}
        found = captures()
        while found != expected and time.monotonic() < deadline + 30:
            time.sleep(0.2)
            found = captures()
        assert found == expected
