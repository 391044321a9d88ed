"""The relay against the session's PostgreSQL and Kafka: complete, ordered, gap-safe."""

from __future__ import annotations

import collections
import datetime as dt
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import msgspec
import psycopg
import pytest
from confluent_kafka import Consumer
from psycopg_pool import ConnectionPool

from flightbook.bootstrap import build_relay
from flightbook.config.settings import Settings
from flightbook.contracts.envelope import decoder
from flightbook.domain.booking import Booking
from flightbook.domain.payment import Payment, payment_id_for
from flightbook.domain.values import Money
from flightbook.eventstore.applications import Bookings, EventStore
from flightbook.eventstore.contexts import CONTEXT_NAMES as CONTEXTS
from flightbook.eventstore.contexts import topic_for
from flightbook.eventstore.metadata import recording
from flightbook.relay.process import KafkaBroker, RelayProcess
from flightbook.relay.relay import Checkpoints, MemoryCheckpoints, PostgresCheckpoints
from flightbook.relay.translate import to_envelope
from tests.support.builders import a_booking, a_flight
from tests.support.relay import (
    checkpoints_of,
    envelopes_by_context,
    read_topics,
    stored_positions,
    wait_until_relayed,
)
from tests.support.writeside import WriteSide

pytestmark = pytest.mark.integration


@dataclass
class RunningRelay:
    process: RelayProcess
    thread: threading.Thread


@pytest.fixture
def start_relay(settings: Settings) -> Iterator[Callable[..., RunningRelay]]:
    """Runs the relay's loop in a thread (as commands/relay.py does in its main thread)."""
    running: list[tuple[RunningRelay, Callable[[], None]]] = []

    def start(**changes: object) -> RunningRelay:
        options = {"relay_poll_seconds": 0.05, "relay_batch_size": 50, **changes}
        process, close = build_relay(msgspec.structs.replace(settings, **options))
        thread = threading.Thread(target=process.run, name="relay", daemon=True)
        thread.start()
        relay = RunningRelay(process, thread)
        running.append((relay, close))
        return relay

    yield start
    for relay, close in running:
        relay.process.stop()
        relay.thread.join(30)
        close()


def _metric(process: RelayProcess, name: str, **labels: str) -> float:
    value = process.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


# -- tests ----------------------------------------------------------------------------------


def test_every_event_arrives_in_aggregate_order_and_decodes_with_the_published_contract(
    settings: Settings, write_side: WriteSide, start_relay: Callable[..., RunningRelay]
) -> None:
    """30 bookings on 3 flights go through holds, payments and confirmation, interleaved in
    the logs; the relay tails them as they are written. Every stored event is on its
    context's topic, keyed by its aggregate, each aggregate in one partition with strictly
    increasing versions, and each message is what the contract makes of the stored event."""
    relay = start_relay()
    flights = [write_side.schedule_flight(seats=20) for _ in range(3)]
    bookings = [
        write_side.request_booking(flights[n % 3], correlation_id=f"req-{n}") for n in range(30)
    ]
    expires = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=15)
    for booking_id in bookings:  # one step of every booking at a time: the logs interleave
        booking = write_side.booking(booking_id)
        flight = write_side.flight(booking.flight_id)
        flight.hold_seats(booking_id, "Y", 1, expires)
        booking.mark_seats_held(expires)
        with recording(actor="saga"):
            write_side.inventory.record(flight)
            write_side.bookings.record(booking)
    for booking_id in bookings:
        booking = write_side.booking(booking_id)
        authorized = Payment.authorized(
            payment_id=payment_id_for(booking_id),
            booking_id=booking_id,
            amount=booking.price_amount,
            currency=booking.currency,
            gateway_ref=f"gw-{booking_id}",
        )
        booking.mark_payment_authorized(authorized.id)
        with recording(actor="saga"):
            write_side.payments.record(authorized)
            write_side.bookings.record(booking)
    for flight_id in flights:
        flight = write_side.flight(flight_id)
        flight.change_fare("Y", price=Money(47000, "EUR"))
        with recording(actor="ops"):
            write_side.inventory.record(flight)
    for booking_id in bookings:
        booking = write_side.booking(booking_id)
        flight = write_side.flight(booking.flight_id)
        payment: Payment = write_side.payments.repository.get(payment_id_for(booking_id))
        booking.confirm()
        flight.confirm_hold(booking_id)
        payment.capture(f"cap-{booking_id}")
        with recording(actor="saga"):
            write_side.bookings.record(booking)
            write_side.inventory.record(flight)
            write_side.payments.record(payment)

    wait_until_relayed(settings)
    topics = [topic_for(settings.topic_prefix, c) for c in CONTEXTS]
    stored = stored_positions(settings)
    records = read_topics(settings, topics, at_least=sum(len(p) for p in stored.values()))

    published = envelopes_by_context(records, settings.topic_prefix)
    assert {c: sorted(e.position for e in published[c]) for c in CONTEXTS} == stored
    assert sum(len(p) for p in stored.values()) == 3 + 30 * 4 + 30 * 2 + 3 + 30 * 2
    apps = {"booking": write_side.bookings, "inventory": write_side.inventory}
    apps["payment"] = write_side.payments
    for context in CONTEXTS:  # each message is the contract's view of its stored event
        envelopes = published[context]
        log = apps[context].recorder.select_notifications(start=1, limit=10_000)
        expected = {
            n.id: to_envelope(context, n, *apps[context].metadata_mapper.decode(n)) for n in log
        }
        assert all(expected[e.position] == e for e in envelopes)
    partitions_of: dict[uuid.UUID, set[int]] = collections.defaultdict(set)
    versions: dict[uuid.UUID, list[int]] = collections.defaultdict(list)
    for record in sorted(records, key=lambda r: (r.topic, r.partition, r.offset)):
        envelope = decoder.decode(record.value)
        assert record.key == str(envelope.aggregate_id).encode()
        assert record.headers == {
            "event-id": envelope.event_id.encode(),
            "type": envelope.type.encode(),
            "position": str(envelope.position).encode(),
            "correlation-id": envelope.correlation_id.encode(),
            "contract-version": b"1",
        }
        partitions_of[envelope.aggregate_id].add(record.partition)
        versions[envelope.aggregate_id].append(envelope.aggregate_version)
    assert all(len(p) == 1 for p in partitions_of.values())
    assert all(v == list(range(1, len(v) + 1)) for v in versions.values())
    assert len({p for ps in partitions_of.values() for p in ps}) > 1  # keys spread out
    requested = [e for e in published["booking"] if e.type == "booking.requested"]
    assert {e.correlation_id for e in requested} == {f"req-{n}" for n in range(30)}
    metadata_partitions = _partition_counts(settings, topics)
    assert metadata_partitions == dict.fromkeys(topics, settings.kafka_partitions)
    process = relay.process
    for context in CONTEXTS:
        count = _metric(process, "flightbook_relay_events_published_total", context=context)
        assert count == len(stored[context])
    assert process.ready()


def _partition_counts(settings: Settings, topics: list[str]) -> dict[str, int]:
    assert settings.kafka_bootstrap is not None
    consumer = Consumer(
        {"bootstrap.servers": settings.kafka_bootstrap, "group.id": f"meta-{uuid.uuid4().hex}"}
    )
    try:
        metadata = consumer.list_topics(timeout=10)
        return {t: len(metadata.topics[t].partitions) for t in topics}
    finally:
        consumer.close()


def _new_booking(flight_id: uuid.UUID, customer: str) -> Booking:
    return a_booking(flight_id, customer=customer, sealed="pii1:eA==")


def test_sixteen_concurrent_writers_while_the_relay_tails_leave_no_position_unpublished(
    settings: Settings, start_relay: Callable[..., RunningRelay]
) -> None:
    """Writers race each other for the booking table while the relay reads small batches
    every few milliseconds; every position of the log reaches Kafka."""
    assert settings.postgres_url is not None
    start_relay(relay_batch_size=7, relay_poll_seconds=0.01)
    flight_id = uuid.uuid4()
    errors: list[BaseException] = []
    start = threading.Barrier(16)

    def writer(number: int) -> None:
        assert settings.postgres_url is not None
        app = Bookings(settings, pool_size=1)
        try:
            start.wait()
            for _ in range(30):
                with recording(actor=f"writer-{number}"):
                    app.record(_new_booking(flight_id, f"c{number}"))
        except BaseException as exc:
            errors.append(exc)
        finally:
            app.close()

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert errors == []
    wait_until_relayed(settings)
    stored = stored_positions(settings)["booking"]
    assert stored == list(range(1, 16 * 30 + 1))  # no rolled-back ids: 1..max is the whole log
    booking_topic = topic_for(settings.topic_prefix, "booking")
    records = read_topics(settings, [booking_topic], at_least=len(stored))
    assert sorted({decoder.decode(r.value).position for r in records}) == stored


def test_a_late_committing_transaction_is_published_and_nothing_after_it_is_skipped(
    settings: Settings, write_side: WriteSide, start_relay: Callable[..., RunningRelay]
) -> None:
    """A writer takes position N and then waits before committing, while other writers
    queue and the relay keeps polling; after the commit, N and everything after it is
    published.

    Why it is safe: the library's insert path (``POSTGRES_ENABLE_DB_FUNCTIONS`` off) runs
    ``LOCK TABLE <events> IN EXCLUSIVE MODE`` before it draws notification ids and keeps
    the lock until commit. Every other writer blocks on that lock, so no transaction can
    take position N+1 (let alone commit it) before N is committed: positions become
    visible in order, and a reader that has seen position M never later finds a new row
    below M. The lock does not block the relay's SELECT (ACCESS SHARE), so the relay keeps
    polling and simply sees nothing new until N commits. (Even a bare INSERT holds ROW
    EXCLUSIVE, which conflicts with the EXCLUSIVE lock the library's writers take first.)
    With the DB-functions insert path there is no such lock, and a tailing reader was seen
    to skip about 1% of events under concurrent writers (DESIGN.md).
    """
    assert settings.postgres_url is not None
    relay = start_relay(relay_batch_size=10, relay_poll_seconds=0.02)
    flight_id = write_side.schedule_flight()
    for n in range(5):
        write_side.request_booking(flight_id, customer=f"early-{n}")
    wait_until_relayed(settings)
    late = _new_booking(flight_id, "late")
    stored_event = write_side.bookings.mapper.to_stored_event(late.collect_events()[0])
    queued: list[threading.Thread] = []
    with psycopg.connect(settings.postgres_url) as conn, conn.transaction():
        conn.execute("LOCK TABLE booking.bookings_events IN EXCLUSIVE MODE")
        row = conn.execute(
            "INSERT INTO booking.bookings_events "
            "(originator_id, originator_version, topic, state) "
            "VALUES (%s, %s, %s, %s) RETURNING notification_id",
            (
                stored_event.originator_id,
                stored_event.originator_version,
                stored_event.topic,
                stored_event.state,
            ),
        ).fetchone()
        assert row is not None
        late_position = row[0]

        def writer(number: int) -> None:
            for k in range(5):
                write_side.request_booking(flight_id, customer=f"after-{number}-{k}")

        queued = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
        for thread in queued:
            thread.start()
        time.sleep(1.0)  # the relay polls ~50 times; the writers wait for the lock
        assert all(thread.is_alive() for thread in queued)
        assert checkpoints_of(settings)["booking"] == late_position - 1
    # commit: the late event becomes visible, then the queued writers go on
    for thread in queued:
        thread.join(30)

    wait_until_relayed(settings)
    stored = stored_positions(settings)["booking"]
    booking_topic = topic_for(settings.topic_prefix, "booking")
    records = read_topics(settings, [booking_topic], at_least=len(stored))
    published = sorted(decoder.decode(r.value).position for r in records)
    assert published == stored == list(range(1, late_position + 21))
    assert relay.process.ready()


@pytest.fixture(params=["memory", "postgres"])
def checkpoints(request: pytest.FixtureRequest, settings: Settings) -> Iterator[Checkpoints]:
    """The same checkpoint contract on the fake and on PostgreSQL (STYLE G12)."""
    if request.param == "memory":
        yield MemoryCheckpoints()
        return
    assert settings.postgres_url is not None
    with ConnectionPool(settings.postgres_url, min_size=1, max_size=1, open=True) as pool:
        yield PostgresCheckpoints(pool)


def test_a_checkpoint_starts_at_zero_and_only_moves_forward(checkpoints: Checkpoints) -> None:
    assert checkpoints.position("booking") == 0

    checkpoints.advance("booking", 40)
    checkpoints.advance("booking", 12)
    checkpoints.advance("payment", 3)

    assert checkpoints.position("booking") == 40
    assert checkpoints.position("payment") == 3
    assert checkpoints.position("inventory") == 0


class FailingFirstWrite(PostgresCheckpoints):
    """The relay's checkpoints, whose first write fails: a crash after the broker
    acknowledged a round and before its checkpoint was written. Each write is recorded."""

    def __init__(self, pool: ConnectionPool) -> None:
        super().__init__(pool)
        self.writes: list[dict[str, int]] = []

    def advance_many(self, positions: dict[str, int]) -> None:
        self.writes.append(dict(positions))
        if len(self.writes) == 1:
            raise RuntimeError("the relay died before its checkpoint was written")
        super().advance_many(positions)


def test_a_round_lost_between_the_acknowledgement_and_its_checkpoint_is_published_again(
    settings: Settings, write_side: WriteSide
) -> None:
    """120 flights wait in the inventory log; the relay pages 50 at a time. The first
    round's checkpoint write fails after the broker acknowledged it: the relay starts over
    from the stored checkpoint and publishes that round again (positions 1-50 twice, the
    consumers pass over them) and loses nothing. Each round after writes one checkpoint."""
    with recording(actor="ops"):
        for start in range(0, 120, 40):
            write_side.inventory.record(
                *(
                    a_flight(
                        departure=dt.datetime(2027, 3, 1, 8, tzinfo=dt.UTC)
                        + dt.timedelta(minutes=start + n),
                        flight_number=f"FB{start + n + 1}",
                    )
                    for n in range(40)
                )
            )
    assert settings.postgres_url is not None
    assert settings.kafka_bootstrap is not None
    pool = ConnectionPool(settings.postgres_url, min_size=1, max_size=2, open=True)
    store = EventStore(settings, pool_size=2)
    checkpoints = FailingFirstWrite(pool)
    relay = RelayProcess(
        store=store,
        checkpoints=checkpoints,
        broker=KafkaBroker(
            settings.kafka_bootstrap,
            topics=[topic_for(settings.topic_prefix, c) for c in CONTEXTS],
            partitions=settings.kafka_partitions,
        ),
        postgres_url=settings.postgres_url,
        topic_prefix=settings.topic_prefix,
        batch_size=50,
        poll_seconds=0.05,
        max_backoff_seconds=0.1,
    )
    thread = threading.Thread(target=relay.run, name="relay", daemon=True)
    thread.start()
    try:
        wait_until_relayed(settings, timeout=30)
    finally:
        relay.stop()
        thread.join(30)
        store.close()
        pool.close()

    assert checkpoints.writes == [
        {"inventory": 50},  # failed: the round is published again
        {"inventory": 50},
        {"inventory": 100},
        {"inventory": 120},
    ]
    topic = topic_for(settings.topic_prefix, "inventory")
    published = read_topics(settings, [topic], at_least=170, idle=1.0)
    times = collections.Counter(r.envelope.position for r in published)
    assert sorted(times) == stored_positions(settings)["inventory"] == list(range(1, 121))
    assert {p for p, n in times.items() if n > 1} == set(range(1, 51))
    assert max(times.values()) == 2
