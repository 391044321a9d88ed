"""The worker's small decisions: which versions it writes, its consumer, passengers, letters."""

from __future__ import annotations

import datetime as dt
import json
import uuid

import pytest

from flightbook.contracts.envelope import decoder
from flightbook.contracts.payloads import BookingConfirmed
from flightbook.eventstore.pii import ERASED, SealedDataError
from flightbook.projections.deadletters import letter_for_envelope
from flightbook.projections.engine import Targets
from flightbook.projections.history import UNREADABLE, open_passengers
from flightbook.projections.kafka import consumer_config
from flightbook.projections.kinds import BookingsKind, FlightsKind
from flightbook.projections.memory import MemoryProgress
from flightbook.projections.versions import VersionCache
from tests.support.projections import FakeLookups, Log

pytestmark = pytest.mark.unit


def test_the_live_worker_writes_the_active_versions_and_every_version_being_built() -> None:
    progress = MemoryProgress()
    now = [0.0]
    versions = VersionCache(progress, ttl=1.0, clock=lambda: now[0])
    kind = BookingsKind(FakeLookups())

    before = versions.targets(kind)
    progress.start_building("bookings", 2)
    progress.start_building("redis", 2)
    cached = versions.targets(kind)
    now[0] = 1.0
    building = versions.targets(kind)
    progress.switch("bookings", 2)
    now[0] = 2.0
    switched = versions.targets(kind)

    assert before == Targets(documents=(1,), redis=(1,), analytics=(1,))
    assert cached == before  # read at most once a second
    assert building == Targets(documents=(1, 2), redis=(1, 2), analytics=(1,))
    assert switched == Targets(documents=(2,), redis=(1, 2), analytics=(1,))
    assert versions.targets(FlightsKind()).documents == (1,)


def test_the_consumer_commits_by_hand_and_heartbeats_well_inside_its_session() -> None:
    config = consumer_config(
        "k:9092", group="fb.projection.bookings", session_timeout_ms=2000, client_id="x"
    )

    assert config["enable.auto.commit"] is False
    assert config["auto.offset.reset"] == "earliest"
    assert config["session.timeout.ms"] == 2000
    assert config["heartbeat.interval.ms"] == 666
    assert config["allow.auto.create.topics"] is False


class FakeVault:
    def __init__(self, answer: str | Exception) -> None:
        self.answer = answer

    def open(self, subject_id: str, sealed: str) -> str:
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (json.dumps([{"name": "Ada", "email": "a@x.org"}]), [{"name": "Ada", "email": "a@x.org"}]),
        (ERASED, [{"name": ERASED, "email": ERASED}] * 2),
        (SealedDataError("not a sealed value"), [{"name": UNREADABLE, "email": UNREADABLE}] * 2),
        ("not json", [{"name": UNREADABLE, "email": UNREADABLE}] * 2),
    ],
)
def test_passengers_are_opened_or_keep_their_place_when_they_cannot_be(
    answer: str | Exception, expected: list[dict[str, str]]
) -> None:
    found = open_passengers(FakeVault(answer), "alice", "pii1:...", 2)  # type: ignore[arg-type]

    assert found == expected


def test_a_dead_letter_from_the_event_store_keeps_the_envelope_replayable() -> None:
    envelope = Log("booking").add(uuid.uuid4(), BookingConfirmed())
    at = dt.datetime(2031, 1, 1, tzinfo=dt.UTC)

    letter = letter_for_envelope("bookings", "booking", envelope, ValueError("boom"), at)

    assert letter.id == "bookings:eventstore:booking:1"
    assert (letter.topic, letter.offset, letter.error) == (
        "eventstore:booking",
        1,
        "ValueError: boom",
    )
    assert decoder.decode(letter.raw.encode()) == envelope
