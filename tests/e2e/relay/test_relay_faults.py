"""The relay process (commands/relay.py) under SIGKILL, SIGTERM and a broker that restarts empty."""

from __future__ import annotations

import collections
import datetime as dt
import json
import random
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import msgspec
import psycopg
import pytest

from flightbook.config.settings import Settings
from flightbook.domain.inventory import FlightInventory
from flightbook.domain.values import Money
from flightbook.eventstore.contexts import CONTEXT_NAMES as CONTEXTS
from flightbook.eventstore.contexts import topic_for
from flightbook.eventstore.metadata import recording
from tests.support.builders import a_flight
from tests.support.processes import ROOT, PrivateBroker, SystemProcess, free_port
from tests.support.relay import (
    Record,
    checkpoints_of,
    partition_count,
    read_topics,
    stored_positions,
    wait_until_relayed,
)
from tests.support.writeside import WriteSide

pytestmark = pytest.mark.e2e

REPORTS = ROOT / ".flightbook" / "reports"


class RelayRunner(SystemProcess):
    """``commands/relay.py`` as a real process, its output in ``log``."""

    def __init__(self, settings: Settings, log: Path, **env: str) -> None:
        port = free_port()
        super().__init__("commands/relay.py", settings, FLIGHTBOOK_RELAY_HTTP_PORT=str(port), **env)
        self.port, self.log = port, log


@pytest.fixture
def relays() -> Iterator[list[RelayRunner]]:
    started: list[RelayRunner] = []
    yield started
    for relay in started:
        if relay.process is not None and relay.process.poll() is None:
            relay.process.kill()
            relay.process.wait()


def _flight(number: int) -> FlightInventory:
    return a_flight(
        seats=150,
        departure=dt.datetime(2027, 3, 1, 8, 0, tzinfo=dt.UTC) + dt.timedelta(minutes=number),
        flight_number=f"FB{number % 9000 + 1}",
    )


def _wait_for_progress(settings: Settings, timeout: float) -> None:
    """Until the inventory checkpoint moves (or ``timeout`` passes)."""
    assert settings.postgres_url is not None
    query = "SELECT coalesce(max(position), 0) FROM relay.checkpoints WHERE context = 'inventory'"
    with psycopg.connect(settings.postgres_url, autocommit=True) as conn:

        def position() -> int:
            row = conn.execute(query).fetchone()
            return int(row[0]) if row else 0

        first, deadline = position(), time.monotonic() + timeout
        while position() == first and time.monotonic() < deadline:
            time.sleep(0.001)


def in_order_per_aggregate(published: list[Record]) -> dict[uuid.UUID, int]:
    """What a consumer that skips versions it already applied ends with, per aggregate.

    Fails if an aggregate shows up in two partitions, or if a version arrives before the
    one just before it (a gap such a consumer could not fill).
    """
    applied: dict[uuid.UUID, int] = {}
    partition_of: dict[uuid.UUID, int] = {}
    for item in sorted(published, key=lambda p: (p.partition, p.offset)):
        envelope = item.envelope
        assert item.key == str(envelope.aggregate_id).encode()
        assert partition_of.setdefault(envelope.aggregate_id, item.partition) == item.partition
        last = applied.get(envelope.aggregate_id, 0)
        assert envelope.aggregate_version <= last + 1, (envelope.aggregate_id, last, envelope)
        applied[envelope.aggregate_id] = max(last, envelope.aggregate_version)
    return applied


# -- tests ----------------------------------------------------------------------------------


def test_killing_the_relay_at_random_moments_publishes_every_event_at_least_once(
    settings: Settings, write_side: WriteSide, relays: list[RelayRunner], tmp_path: Path
) -> None:
    """10,000 events are written in 100 transactions (100 new flights each, or fare changes
    of ten earlier flights) while the relay is SIGKILLed 20 times, each a random moment
    after it came up again, when it is catching up with what was written while it was
    down. Afterwards every event is on Kafka, each aggregate's events in one partition
    and in order once duplicates are skipped; the duplicates are counted and reported
    (``.flightbook/reports/relay_crash.json``)."""
    started = time.monotonic()
    relay = RelayRunner(settings, tmp_path / "relay.log", FLIGHTBOOK_RELAY_POLL_SECONDS="0.1")
    relays.append(relay)
    rng = random.Random(20)
    scheduled: list[uuid.UUID] = []
    changed_versions: collections.Counter[uuid.UUID] = collections.Counter()
    failures: list[BaseException] = []

    def write() -> None:
        try:
            for chunk in range(100):
                with recording(actor="ops", correlation_id=f"chunk-{chunk}"):
                    if chunk % 10 == 9:  # ten earlier flights get ten new prices each
                        ids = scheduled[chunk * 10 : chunk * 10 + 10]
                        flights = [write_side.flight(f) for f in ids]
                        for flight in flights:
                            for step in range(10):
                                flight.change_fare("Y", price=Money(46000 + step, "EUR"))
                                changed_versions[flight.id] += 1
                    else:
                        flights = [_flight(chunk * 100 + n) for n in range(100)]
                        scheduled.extend(f.id for f in flights)
                    write_side.inventory.record(*flights)
                time.sleep(0.15)
        except BaseException as exc:
            failures.append(exc)

    writer = threading.Thread(target=write, name="writer")
    writer.start()
    try:
        while writer.is_alive() or relay.kills < 20:
            relay.start().wait_ready(poll=0.01)
            if relay.kills % 2:
                time.sleep(rng.uniform(0.0, 1.0))  # anywhere: warming up, publishing, idle
            else:  # just after a batch was checkpointed: in the next one if there is a backlog
                _wait_for_progress(settings, timeout=5.0)
                time.sleep(rng.uniform(0.0, 0.02))
            relay.kill()
            if relay.kills >= 20 and writer.is_alive():
                writer.join()
    finally:
        writer.join()
    assert failures == []
    relay.start().wait_ready()  # ready: its SIGTERM handler is in place
    wait_until_relayed(settings, timeout=60)
    assert relay.stop() == 0  # SIGTERM: finish the batch in hand, checkpoint, exit cleanly

    stored = stored_positions(settings)["inventory"]
    topic = topic_for(settings.topic_prefix, "inventory")
    published = read_topics(settings, [topic], at_least=len(stored), idle=1.5)
    positions = collections.Counter(p.envelope.position for p in published)
    duplicates = len(published) - len(positions)
    report = {
        "events": len(stored),
        "messages": len(published),
        "duplicates": duplicates,
        "sigkills": relay.kills,
        "seconds": round(time.monotonic() - started, 1),
    }
    REPORTS.mkdir(parents=True, exist_ok=True)
    (REPORTS / "relay_crash.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nrelay crash test: {report}")  # the figure this test exists for

    assert len(stored) == 10_000
    assert relay.kills >= 20
    assert sorted(positions) == stored  # every event at least once, nothing else
    applied = in_order_per_aggregate(published)
    assert applied == {f: 1 + changed_versions[f] for f in scheduled}


def test_sigterm_stops_after_the_batch_in_hand_and_a_restart_publishes_no_duplicate(
    settings: Settings, write_side: WriteSide, relays: list[RelayRunner], tmp_path: Path
) -> None:
    """A graceful stop checkpoints everything it published, so nothing is published twice."""
    with recording(actor="ops"):
        for start in range(0, 3000, 100):
            write_side.inventory.record(*(_flight(start + n) for n in range(100)))
    relay = RelayRunner(settings, tmp_path / "relay.log", FLIGHTBOOK_RELAY_BATCH_SIZE="50")
    relays.append(relay)
    relay.start()
    deadline = time.monotonic() + 30
    while checkpoints_of(settings).get("inventory", 0) == 0:
        assert time.monotonic() < deadline
        time.sleep(0.01)

    assert relay.stop() == 0
    stopped_at = checkpoints_of(settings)["inventory"]
    assert stopped_at % 50 == 0 or stopped_at == 3000  # a batch boundary
    relay.start().wait_ready()
    wait_until_relayed(settings)
    assert relay.stop() == 0

    topic = topic_for(settings.topic_prefix, "inventory")
    published = read_topics(settings, [topic], at_least=3000, idle=1.5)
    assert sorted(p.envelope.position for p in published) == list(range(1, 3001))


def test_a_broker_that_comes_back_empty_gets_its_topics_and_every_unpublished_event(
    settings: Settings,
    write_side: WriteSide,
    relays: list[RelayRunner],
    private_broker: PrivateBroker,
    tmp_path: Path,
) -> None:
    """The broker dies and comes back with nothing; the writers never notice; the relay
    re-creates the topics with the configured partitions and publishes exactly the events
    after its checkpoint. It does not publish history again: its checkpoint says those
    were acknowledged, and consumers that lost them catch up from the event store."""
    on_private = msgspec.structs.replace(settings, kafka_bootstrap=private_broker.url)
    relay = RelayRunner(on_private, tmp_path / "relay.log", FLIGHTBOOK_RELAY_POLL_SECONDS="0.1")
    relays.append(relay)
    relay.start().wait_ready()
    flight_id = write_side.schedule_flight(seats=100)
    for n in range(20):
        write_side.request_booking(flight_id, customer=f"before-{n}")
    wait_until_relayed(on_private)
    before = checkpoints_of(on_private)

    private_broker.kill()
    writing = time.monotonic()
    for n in range(30):
        write_side.request_booking(flight_id, customer=f"during-{n}")
    for _ in range(5):
        write_side.schedule_flight()
    assert time.monotonic() - writing < 10  # the write side does not wait for the broker
    time.sleep(2.0)
    assert checkpoints_of(on_private) == before  # nothing counts as published without a broker
    private_broker.start()  # same port, no topics, no messages

    wait_until_relayed(on_private, timeout=60)
    relay.wait_ready()
    stored = stored_positions(on_private)
    for context in CONTEXTS:
        topic = topic_for(on_private.topic_prefix, context)
        assert partition_count(on_private, topic) == settings.kafka_partitions
    expected = {c: [p for p in stored[c] if p > before.get(c, 0)] for c in CONTEXTS}
    assert [len(expected[c]) for c in CONTEXTS] == [30, 5, 0]
    for context in ("booking", "inventory"):
        topic = topic_for(on_private.topic_prefix, context)
        published = read_topics(on_private, [topic], at_least=len(expected[context]), idle=1.0)
        assert sorted({p.envelope.position for p in published}) == expected[context]
    assert relay.metric("flightbook_relay_errors_total") > 0
    assert relay.stop() == 0
