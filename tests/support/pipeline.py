"""The whole pipeline as processes, with the helpers its fault tests share."""

from __future__ import annotations

import datetime as dt
import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import msgspec
import psycopg
import pymongo
import redis
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Producer, TopicPartition

from flightbook.config.settings import Settings
from flightbook.domain.booking import Booking
from flightbook.eventstore.contexts import topic_for
from flightbook.eventstore.metadata import recording
from flightbook.eventstore.pii import PersonalDataVault
from flightbook.projections.tools.verify import Difference, compare_read_models, replay_read_models
from tests.support.builders import a_booking, a_flight
from tests.support.processes import SystemProcess, free_port
from tests.support.threads import Background
from tests.support.writeside import WriteSide

PROCESSES = {
    "command-api": ("commands/api.py", "FLIGHTBOOK_COMMAND_PORT"),
    "relay": ("commands/relay.py", "FLIGHTBOOK_RELAY_HTTP_PORT"),
    "saga": ("commands/saga.py", "FLIGHTBOOK_SAGA_HTTP_PORT"),
    "bookings": ("projections/bookings.py", "FLIGHTBOOK_PROJECTION_BOOKINGS_HTTP_PORT"),
    "flights": ("projections/flights.py", "FLIGHTBOOK_PROJECTION_FLIGHTS_HTTP_PORT"),
    "query-api": ("queries/api.py", "FLIGHTBOOK_QUERY_PORT"),
}


def fast(settings: Settings, **changes: object) -> Settings:
    """Settings for processes under test: short polls, quick broker checks."""
    return msgspec.structs.replace(
        settings,
        **{
            "relay_poll_seconds": 0.2,
            "saga_poll_seconds": 0.1,
            "projection_poll_seconds": 0.2,
            "projection_broker_check_seconds": 2.0,
            "projection_stall_seconds": 15.0,
            "hold_seconds": 3600.0,
            **changes,
        },
    )


class Process(SystemProcess):
    """A process of the pipeline by its short name, its output in ``<logs>/<name>.log``."""

    def __init__(self, name: str, settings: Settings, logs: Path) -> None:
        script, port_variable = PROCESSES[name]
        port = free_port()
        super().__init__(script, settings, **{port_variable: str(port)})
        self.name, self.port, self.log = name, port, logs / f"{name}.log"


def schedule(
    write_side: WriteSide, *, seats: int, number: str = "FB101", days: int = 40
) -> uuid.UUID:
    flight = a_flight(
        seats=seats,
        refundable=days % 2 == 0,
        departure=dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(days=days),
        flight_number=number,
        destination=["JFK", "CDG", "AMS", "FCO"][days % 4],
    )
    with recording(actor="ops"):
        write_side.inventory.record(flight)
    return flight.id


def book_many(
    write_side: WriteSide,
    vault: PersonalDataVault,
    flights: list[uuid.UUID],
    count: int,
    *,
    tokens: Callable[[int], str] = lambda n: "tok_declined" if n % 6 == 5 else "tok_ok",
    batch: int = 50,
    start: int = 0,
) -> list[uuid.UUID]:
    """``count`` bookings, ``batch`` per transaction, passengers sealed as the command API does."""
    made: list[uuid.UUID] = []
    pending: list[Booking] = []
    for n in range(start, start + count):
        customer = f"c{n % 11}"
        passengers = [{"name": f"Passenger {n}", "email": f"p{n}@example.com"}]
        pending.append(
            a_booking(
                flights[n % len(flights)],
                customer=customer,
                sealed=vault.seal(customer, json.dumps(passengers)),
                refundable=n % 2 == 0,
                token=tokens(n),
            )
        )
        if len(pending) == batch or n == start + count - 1:
            with recording(actor="customer", correlation_id=f"batch-{n}"):
                write_side.bookings.record(*pending)
            made += [b.id for b in pending]
            pending = []
    return made


def final_bookings(settings: Settings) -> dict[str, str]:
    """Each booking in a final state, by id: the last word of its final event's topic."""
    assert settings.postgres_url is not None
    with psycopg.connect(settings.postgres_url) as conn:
        rows = conn.execute(
            "SELECT originator_id::text, split_part(topic, '.', -1) FROM booking.bookings_events "
            "WHERE topic LIKE %s OR topic LIKE %s OR topic LIKE %s ORDER BY notification_id",
            ("%Booking.Confirmed", "%Booking.Rejected", "%Booking.Cancelled"),
        ).fetchall()
    return {str(b): str(kind) for b, kind in rows}


def saga_done(settings: Settings, count: int) -> bool:
    """Every booking final and no saga job waiting."""
    final = len(final_bookings(settings))
    assert settings.postgres_url is not None
    with psycopg.connect(settings.postgres_url) as conn:
        jobs = conn.execute("SELECT count(*) FROM saga.jobs").fetchone()
    return final >= count and jobs is not None and jobs[0] == 0


def heads(settings: Settings) -> dict[str, int]:
    assert settings.postgres_url is not None
    with psycopg.connect(settings.postgres_url) as conn:
        found = {}
        for context, table in (("booking", "bookings_events"), ("inventory", "inventory_events")):
            row = conn.execute(
                f"SELECT coalesce(max(notification_id), 0) FROM {context}.{table}"  # noqa: S608
            ).fetchone()
            found[context] = int(row[0]) if row else 0
    return found


def low_watermarks(mongo: pymongo.database.Database[dict[str, object]]) -> dict[str, int]:
    found = {}
    for key, context in (("bookings:booking", "booking"), ("flights:inventory", "inventory")):
        doc = mongo["projection_checkpoints"].find_one({"_id": key}) or {}
        found[context] = int(doc.get("low_watermark") or 0)  # type: ignore[call-overload]
    return found


def wait_until(
    condition: Callable[[], bool], timeout: float, what: str, pause: float = 0.5
) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not reached within {timeout:.0f}s: {what}"
        time.sleep(pause)


def wait_for_read_models(
    settings: Settings,
    mongo: pymongo.database.Database[dict[str, object]],
    cache: redis.Redis,
    timeout: float,
) -> list[Difference]:
    """Until every low watermark is at the head, then the differences from a fresh replay
    (polled until there are none, or the time is up)."""
    deadline = time.monotonic() + timeout
    wait_until(
        lambda: all(low_watermarks(mongo)[c] >= h for c, h in heads(settings).items()),
        timeout,
        "the low watermarks at the event-store head",
    )
    while True:
        differences = compare_read_models(replay_read_models(settings), mongo, cache)
        if not differences or time.monotonic() > deadline:
            return differences
        time.sleep(1.0)


class Duplicator(Background):
    """Publishes every message of the topics a second time (same key, same partition).

    Copies carry the header ``dup: 1`` and are not copied again. Started before the relay
    publishes anything; :meth:`stop` returns how many messages it copied.
    """

    def __init__(
        self, settings: Settings, contexts: tuple[str, ...] = ("booking", "inventory")
    ) -> None:
        assert settings.kafka_bootstrap is not None
        self.bootstrap = settings.kafka_bootstrap
        self.topics = [topic_for(settings.topic_prefix, c) for c in contexts]
        self.partitions = settings.kafka_partitions
        self.copied = 0
        self.seen_at = time.monotonic()
        super().__init__("duplicator")

    def stop(self) -> int:
        self.halt(30)
        return self.copied

    def idle_for(self, seconds: float) -> bool:
        return time.monotonic() - self.seen_at >= seconds

    def work(self) -> None:
        consumer = Consumer(
            {
                "bootstrap.servers": self.bootstrap,
                "group.id": f"duplicator-{uuid.uuid4().hex}",
                "enable.auto.commit": False,
                "topic.metadata.refresh.interval.ms": 1000,
            }
        )
        producer = Producer({"bootstrap.servers": self.bootstrap, "linger.ms": 5})
        try:
            while not self.stopping:
                try:
                    consumer.assign(
                        [
                            TopicPartition(topic, p, OFFSET_BEGINNING)
                            for topic in self.topics
                            for p in range(self.partitions)
                        ]
                    )
                    break
                except KafkaException:
                    time.sleep(0.2)
            while not self.stopping:
                for message in consumer.consume(num_messages=1000, timeout=0.2):
                    if message.error() is not None:
                        continue
                    raw = message.headers() or []
                    headers: list[tuple[str, str | bytes | None]] = [
                        (str(key), value)
                        for key, value in (raw.items() if isinstance(raw, dict) else raw)
                    ]
                    if any(key == "dup" for key, _ in headers):
                        continue
                    topic, partition = message.topic(), message.partition()
                    assert topic is not None
                    assert partition is not None
                    producer.produce(
                        topic,
                        value=message.value(),
                        key=message.key(),
                        partition=partition,
                        headers=[*headers, ("dup", b"1")],
                    )
                    self.copied += 1
                    self.seen_at = time.monotonic()
                producer.poll(0)
            producer.flush(10)
        finally:
            consumer.close()


class Pipeline(NamedTuple):
    """What a fault test of the whole pipeline works with (the ``pipeline`` fixture)."""

    settings: Settings
    write_side: WriteSide
    vault: PersonalDataVault
    mongo: pymongo.database.Database[dict[str, object]]
    cache: redis.Redis
    started: list[Process]
    """Register started processes here; each is stopped after the test."""
    logs: Path
    """Where each process writes its log."""
