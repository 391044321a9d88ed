"""The saga process survives SIGKILL at any moment: no step skipped, none done twice."""

from __future__ import annotations

import collections
import datetime as dt
import random
import time
import uuid
from collections.abc import Iterator

import msgspec
import pytest
from psycopg_pool import ConnectionPool

from flightbook.config.settings import Settings
from flightbook.domain.booking import BookingStatus, CancellationReason
from flightbook.eventstore.metadata import recording
from flightbook.payments.simulated import SimulatedGateway
from tests.support.processes import SystemProcess
from tests.support.writeside import WriteSide

pytestmark = pytest.mark.e2e

FINAL = {BookingStatus.CONFIRMED, BookingStatus.REJECTED, BookingStatus.CANCELLED}


def saga_process(settings: Settings) -> SystemProcess:
    return SystemProcess("commands/saga.py", settings, FLIGHTBOOK_SAGA_HTTP_PORT="0")


def _settings(settings: Settings, **changes: object) -> Settings:
    return msgspec.structs.replace(settings, **changes)


@pytest.fixture
def gateway(settings: Settings) -> Iterator[SimulatedGateway]:
    ledger = settings.gateway_database()
    assert ledger is not None
    with ConnectionPool(ledger, min_size=1, max_size=2) as pool:
        simulated = SimulatedGateway(pool)
        simulated.ensure_schema()
        yield simulated


def _wait_until(condition: object, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.2)
    raise AssertionError("condition not reached in time")


def test_killing_the_saga_at_random_moments_never_skips_or_repeats_a_step(
    settings: Settings, write_side: WriteSide, gateway: SimulatedGateway
) -> None:
    """2,000 bookings with every token and cancellations mixed in, 20+ SIGKILLs of the saga
    while its rounds and jobs work (issue 12): every booking final, at most one capture
    each and exactly one per ``CONFIRMED``, no event twice, no seat both sold and released.
    """
    saga = saga_process(
        _settings(
            settings,
            hold_seconds=4.0,
            gateway_timeout_seconds=0.3,
            gateway_max_elapsed_seconds=1.0,
            saga_workers=4,
            saga_poll_seconds=0.1,
        )
    )
    rng = random.Random(7)
    tokens = ["tok_ok"] * 5 + ["tok_declined", "tok_insufficient_funds", "tok_flaky", "tok_timeout"]
    flights = [write_side.schedule_flight(seats=300, refundable=n % 2 == 0) for n in range(8)]
    booked: dict[uuid.UUID, str] = {}
    saga.start()
    try:
        for n in range(2000):
            token = rng.choice(tokens)
            flight = flights[n % len(flights)]
            booked[
                write_side.request_booking(
                    flight, token=token, refundable=n % 8 < 4, customer=f"c{n % 37}"
                )
            ] = token
            if n % 100 == 99:  # a kill every 100 bookings, at a random moment of the work
                time.sleep(rng.uniform(0.05, 0.6))
                saga.kill()
                saga.start()
            if n % 10 == 5:  # some customers cancel while their booking is in flight
                victim = rng.choice(list(booked))
                booking = write_side.booking(victim)
                if booking.status is not BookingStatus.REJECTED:
                    booking.cancel(CancellationReason.CUSTOMER, by=booking.customer_id)
                    with recording(actor=booking.customer_id):
                        write_side.bookings.record(booking)
        while saga.kills < 24:
            time.sleep(rng.uniform(0.2, 0.8))
            saga.kill()
            saga.start()

        final: set[uuid.UUID] = set()  # a final booking stays final: not read again
        _wait_until(lambda: _all_final(write_side, booked, final), 300)
        _wait_until(lambda: _no_pending_jobs(settings), 60)
    finally:
        saga.stop()

    assert saga.kills >= 20
    bookings = {b: write_side.booking(b) for b in booked}
    statuses = collections.Counter(booking.status for booking in bookings.values())
    assert set(statuses) <= FINAL
    reasons = collections.Counter(
        (bookings[b].status.value, bookings[b].reason, token) for b, token in booked.items()
    )
    assert statuses[BookingStatus.CONFIRMED] > 0, reasons
    assert statuses[BookingStatus.REJECTED] > 0, reasons
    assert statuses[BookingStatus.CANCELLED] > 0, reasons
    topics = _topics_by_aggregate(write_side)  # each log read once
    for booking_id, token in booked.items():
        booking = bookings[booking_id]
        entries = gateway.entries_for_booking(str(booking_id))
        captures = [e for e in entries if e.operation == "capture"]
        assert len(captures) <= 1, (booking_id, token, entries)
        if booking.status is BookingStatus.CONFIRMED:
            assert len(captures) == 1, (booking_id, token, entries)
        if token in {"tok_declined", "tok_insufficient_funds", "tok_timeout"}:
            assert captures == []
        # every event type at most once per booking: no step applied twice
        types = topics[booking_id]
        assert len(types) == len(set(types)), types
    for flight_id in flights:
        inventory = write_side.flight(flight_id)
        sold_to = {b for b in booked if b in inventory.fares["Y"].sold}
        assert inventory.held("Y") == 0
        assert sold_to == {
            b
            for b, booking in bookings.items()
            if booking.flight_id == flight_id and booking.status is BookingStatus.CONFIRMED
        }
        _assert_no_seat_both_sold_and_released(write_side, flight_id)


def _all_final(write_side: WriteSide, booked: dict[uuid.UUID, str], final: set[uuid.UUID]) -> bool:
    for booking_id in booked:
        if booking_id in final:
            continue
        if write_side.booking(booking_id).status not in FINAL:
            return False
        final.add(booking_id)
    return True


def _topics_by_aggregate(write_side: WriteSide) -> dict[uuid.UUID, list[str]]:
    topics: dict[uuid.UUID, list[str]] = collections.defaultdict(list)
    recorder = write_side.bookings.recorder
    after = 0
    while True:
        page = recorder.select_notifications(start=after + 1, limit=10_000)
        for notification in page:
            topics[uuid.UUID(str(notification.originator_id))].append(notification.topic)
        if len(page) < 10_000:
            return topics
        after = page[-1].id


def _no_pending_jobs(settings: Settings) -> bool:
    import psycopg

    assert settings.postgres_url is not None
    with psycopg.connect(settings.postgres_url) as conn:
        row = conn.execute("SELECT count(*) FROM saga.jobs").fetchone()
    return row is not None and row[0] == 0


def _assert_no_seat_both_sold_and_released(write_side: WriteSide, flight_id: uuid.UUID) -> None:
    """A hold is either confirmed (sold) or released/expired, never both."""
    outcomes: dict[uuid.UUID, list[str]] = collections.defaultdict(list)
    mapper = write_side.inventory.metadata_mapper
    for notification in write_side.inventory.recorder.select_notifications(
        start=None, limit=100000
    ):
        if notification.originator_id != flight_id:
            continue
        event, _ = mapper.decode(notification)
        name = type(event).__name__
        if name in {"HoldConfirmed", "HoldReleased", "HoldExpired"}:
            outcomes[event.booking_id].append(name)  # type: ignore[attr-defined]
    for booking_id, names in outcomes.items():
        assert len(names) == 1, (booking_id, names)


def test_a_hold_that_expires_while_the_saga_is_down_is_released_after_restart(
    settings: Settings, write_side: WriteSide
) -> None:
    saga = saga_process(
        _settings(
            settings,
            hold_seconds=2.0,
            gateway_timeout_seconds=0.2,
            gateway_max_elapsed_seconds=0.5,
            saga_poll_seconds=0.1,
        )
    )
    flight_id = write_side.schedule_flight(seats=2)
    booking_id = write_side.request_booking(flight_id, token="tok_timeout", passengers=2)
    saga.start()
    try:
        # The booking learns its hold deadline one step after the flight holds the seats:
        # wait for that fact itself, which is what is read next.
        _wait_until(lambda: write_side.booking(booking_id).hold_expires_at is not None, 30)
        saga.kill()
        deadline = write_side.booking(booking_id).hold_expires_at
        assert deadline is not None
        # the deadline passes while no saga runs
        _wait_until(lambda: dt.datetime.now(dt.UTC) > deadline + dt.timedelta(seconds=0.5), 30)

        saga.start()
        started = time.monotonic()
        _wait_until(lambda: write_side.booking(booking_id).status is BookingStatus.REJECTED, 30)
        took = time.monotonic() - started
    finally:
        saga.stop()

    booking = write_side.booking(booking_id)
    assert booking.reason == "HOLD_EXPIRED"
    assert write_side.flight(flight_id).seats_left("Y") == 2
    assert took < 15  # "within seconds" of coming back; generous for a loaded CI machine
