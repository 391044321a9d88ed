"""Woken by an event, the saga waits a moment for the events close behind it (ADR 0022)."""

from __future__ import annotations

import threading
import uuid

import psycopg
import pytest
from eventsourcing.utils import get_topic

from flightbook.config.settings import Settings
from flightbook.domain.inventory import FlightInventory
from tests.support.saga import SagaHarness
from tests.support.system import eventually

pytestmark = pytest.mark.integration

HELD = get_topic(FlightInventory.SeatsHeld)


def _holds(settings: Settings, flight_id: uuid.UUID) -> list[str]:
    """The transaction of each seat hold on the flight, oldest first."""
    assert settings.postgres_url is not None
    with psycopg.connect(settings.postgres_url) as conn:
        rows = conn.execute(
            "SELECT xmin::text FROM inventory.inventory_events "
            "WHERE originator_id = %s AND topic = %s ORDER BY originator_version",
            (flight_id, HELD),
        ).fetchall()
    return [str(row[0]) for row in rows]


def test_requests_committed_within_the_linger_are_answered_in_one_round(
    settings: Settings, harness: SagaHarness
) -> None:
    flight_id = harness.schedule_flight(seats=10)
    stop = threading.Event()
    follower = threading.Thread(
        target=harness.saga.follower.run,
        args=(stop.is_set, 30.0),  # no poll: only a notification wakes it
        kwargs={"linger_seconds": 2.0},
    )
    follower.start()
    try:
        harness.request_booking(flight_id)  # the follower listens once this is answered
        eventually(lambda: _holds(settings, flight_id), lambda h: len(h) == 1, what="first hold")

        # two requests, each committed on its own, well within the linger of each other
        harness.request_booking(flight_id, customer="bob")
        harness.request_booking(flight_id, customer="carol")
        holds = eventually(
            lambda: _holds(settings, flight_id), lambda h: len(h) == 3, what="both held"
        )
    finally:
        stop.set()
        harness.request_booking(flight_id, customer="dave")  # wakes it to see the stop
        follower.join(30)

    assert holds[1] == holds[2]  # one round, one transaction
    assert holds[0] != holds[1]
