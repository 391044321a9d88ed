"""A message that cannot be applied goes to the dead letters; the worker goes on."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import uuid

import pytest
from confluent_kafka import Producer

from flightbook.config.settings import Settings
from flightbook.contracts.envelope import CONTRACT_VERSION, Envelope, encoder, payload_type_name
from flightbook.contracts.payloads import BookingConfirmed
from flightbook.eventstore.contexts import topic_for
from flightbook.eventstore.metadata import recording
from tests.support.builders import a_booking
from tests.support.pipeline import (
    Pipeline,
    Process,
    book_many,
    fast,
    schedule,
    wait_for_read_models,
    wait_until,
)
from tests.support.processes import ROOT

pytestmark = pytest.mark.e2e


def _publish(settings: Settings, key: bytes, value: bytes) -> None:
    assert settings.kafka_bootstrap is not None
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap})
    producer.produce(topic_for(settings.topic_prefix, "booking"), value=value, key=key)
    assert producer.flush(10) == 0


def _flightbook(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flightbook.cli", *args],
        env={"PATH": "/usr/bin:/bin", **settings.to_env()},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.timeout(180)
def test_poison_messages_are_dead_lettered_and_replayable_once_fixed(
    pipeline: Pipeline,
) -> None:
    """Two poison messages: bytes that are not an envelope (never applicable), and a valid
    envelope of a booking the event store does not have yet (its gap cannot be repaired).
    Both become dead letters; later events are applied; the worker keeps running. Once the
    booking exists in the event store ("the fix"), replaying the dead letters applies the
    second and leaves the first, with its error."""
    settings, write_side, vault, mongo, cache, started, logs = pipeline
    config = fast(settings)
    relay, bookings, flights = (Process(n, config, logs) for n in ("relay", "bookings", "flights"))
    started += [relay, bookings, flights]
    flight = schedule(write_side, seats=100)
    for process in (relay, bookings, flights):
        process.start()
    bookings.wait_ready()
    book_many(write_side, vault, [flight], 5)
    wait_for_read_models(settings, mongo, cache, timeout=60)

    future = uuid.uuid4()
    stray = Envelope(
        event_id=str(uuid.uuid4()),
        type=payload_type_name(BookingConfirmed),
        version=CONTRACT_VERSION,
        context="booking",
        aggregate_id=future,
        aggregate_version=2,
        position=10**9,
        occurred_at=dt.datetime.now(dt.UTC),
        correlation_id="",
        causation_id="",
        actor="elsewhere",
        payload=BookingConfirmed(),
    )
    _publish(settings, b"garbage", b"\xff\xfe not an envelope")
    _publish(settings, str(future).encode(), encoder.encode(stray))
    later = book_many(write_side, vault, [flight], 5, start=5)

    wait_until(lambda: mongo["dead_letters"].count_documents({}) == 2, 30, "two dead letters")
    wait_until(
        lambda: (
            mongo["bookings_v1"].count_documents({"_id": {"$in": [str(b) for b in later]}}) == 5
        ),
        30,
        "the later bookings applied",
    )
    assert bookings.running()
    listed = _flightbook(settings, "projections", "dead-letters", "--read-model", "bookings")
    assert listed.returncode == 0, listed.stderr
    assert "DecodeError" in listed.stdout or "ValidationError" in listed.stdout
    assert "RepairError" in listed.stdout

    booking = a_booking(  # the fix: the booking now exists in the event store
        flight,
        booking_id=future,
        customer="zoe",
        sealed=vault.seal("zoe", '[{"name": "Zoe", "email": "zoe@example.com"}]'),
    )
    booking.mark_seats_held(dt.datetime.now(dt.UTC) + dt.timedelta(hours=1))
    with recording(actor="zoe"):
        write_side.bookings.record(booking)
    replayed = _flightbook(settings, "projections", "replay-dead-letters")

    assert replayed.returncode == 1, replayed.stderr  # one letter can never be applied
    assert "1 replayed, 1 still failing" in replayed.stderr
    letters = {str(d["_id"]): d for d in mongo["dead_letters"].find({})}
    fixed = next(d for d in letters.values() if d["key"] == str(future))
    broken = next(d for d in letters.values() if d["key"] == "garbage")
    assert fixed["replayed_at"] is not None
    assert broken["replayed_at"] is None
    assert int(broken["attempts"]) == 2  # type: ignore[call-overload]
    doc = mongo["bookings_v1"].find_one({"_id": str(future)})
    assert doc is not None
    assert (doc["status"], doc["_v"]) == ("SEATS_HELD", 2)
    assert wait_for_read_models(settings, mongo, cache, timeout=30) == []
    status = _flightbook(settings, "projections", "status")
    assert status.returncode == 0, status.stderr
    assert "bookings" in status.stdout
    verified = _flightbook(settings, "audit", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "0 difference(s)" in verified.stderr
    mongo["bookings_v1"].update_one({"_id": str(future)}, {"$set": {"status": "LOST"}})
    tampered = _flightbook(settings, "audit", "verify")
    assert tampered.returncode == 1
    assert f"bookings_v1 {future} status: expected 'SEATS_HELD', found 'LOST'" in tampered.stdout
    assert bookings.running()
