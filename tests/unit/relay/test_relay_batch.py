"""A relay round over one in-memory log, a fake producer and in-memory checkpoints (no sockets)."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from confluent_kafka import KafkaError
from eventsourcing.persistence import (
    DatetimeAsISO,
    DecimalAsStr,
    JSONTranscoder,
    Notification,
    UUIDAsHex,
)
from eventsourcing.popo import POPOApplicationRecorder
from structlog.testing import capture_logs

from flightbook.contracts.envelope import Envelope, decoder
from flightbook.eventstore.mapper import MetadataMapper
from flightbook.eventstore.metadata import recording
from flightbook.relay.relay import (
    BatchResult,
    LogSource,
    MemoryCheckpoints,
    RelayDeliveryError,
    relay_round,
)
from flightbook.relay.translate import to_envelope
from tests.support.builders import a_booking

pytestmark = pytest.mark.unit

TOPIC = "t.booking.events"
Callback = Callable[[KafkaError | None, object], None]


@dataclass
class Sent:
    topic: str
    value: bytes
    key: bytes
    headers: dict[str, bytes]
    on_delivery: Callback


@dataclass
class FakeProducer:
    """Acknowledges on flush, like confluent's Producer, unless told to fail or to stall."""

    failing: set[int] = field(default_factory=set)  # indexes (0-based, over all sends) to fail
    stall: bool = False  # flush() delivers nothing and reports everything as still queued
    buffer_full_once: bool = False
    before_flush: Callable[[], None] = lambda: None
    sent: list[Sent] = field(default_factory=list)
    pending: list[tuple[int, Sent]] = field(default_factory=list)
    flushes: int = 0

    def produce(
        self,
        topic: str,
        value: bytes,
        key: bytes,
        *,
        headers: list[tuple[str, str | bytes | None]],
        on_delivery: Callback,
    ) -> None:
        if self.buffer_full_once:
            self.buffer_full_once = False
            raise BufferError("Local: Queue full")
        message = Sent(
            topic, value, key, {k: v for k, v in headers if isinstance(v, bytes)}, on_delivery
        )
        self.pending.append((len(self.sent), message))
        self.sent.append(message)

    def poll(self, timeout: float) -> int:
        return 0

    def flush(self, timeout: float) -> int:
        self.flushes += 1
        self.before_flush()
        if self.stall:
            return len(self.pending)
        for index, message in self.pending:
            error = KafkaError(KafkaError._MSG_TIMED_OUT) if index in self.failing else None
            message.on_delivery(error, message)
        self.pending.clear()
        return 0


class Log:
    """An in-memory notification log with the mapper the applications use."""

    def __init__(self) -> None:
        transcoder = JSONTranscoder()
        for transcoding in (UUIDAsHex(), DatetimeAsISO(), DecimalAsStr()):
            transcoder.register(transcoding)
        self.mapper = MetadataMapper(transcoder=transcoder)
        self.recorder = POPOApplicationRecorder()

    def book(self, *, steps: int = 1, correlation_id: str | None = None) -> uuid.UUID:
        """A booking with ``steps`` events (Requested, SeatsHeld, PaymentAuthorized, Confirmed)."""
        booking = a_booking(uuid.uuid4(), customer="alice", sealed="pii1:eA==", price=100)
        if steps > 1:
            booking.mark_seats_held(dt.datetime(2026, 12, 1, tzinfo=dt.UTC))
        if steps > 2:
            booking.mark_payment_authorized(uuid.uuid4())
        if steps > 3:
            booking.confirm()
        with recording(actor="alice", correlation_id=correlation_id):
            for domain_event in booking.collect_events():  # one insert each: interleavable
                self.recorder.insert_events([self.mapper.to_stored_event(domain_event)])
        return booking.id

    def translate(self, notification: Notification) -> Envelope | None:
        return to_envelope("booking", notification, *self.mapper.decode(notification))


def a_log_of(bookings: int, *, steps: int = 1) -> Log:
    """A log of ``bookings`` bookings of ``steps`` events each, one booking after another."""
    log = Log()
    for _ in range(bookings):
        log.book(steps=steps)
    return log


def run_batch(
    log: Log,
    producer: FakeProducer,
    checkpoints: MemoryCheckpoints,
    *,
    translate: Callable[[Notification], Envelope | None] | None = None,
    limit: int = 500,
) -> BatchResult:
    (result,) = relay_round(
        sources=[LogSource("booking", log.recorder, translate or log.translate, TOPIC)],
        checkpoints=checkpoints,
        producer=producer,
        limit=limit,
        timeout=1.0,
    )
    return result


def test_every_public_event_is_published_in_log_order_keyed_by_its_aggregate() -> None:
    log = Log()
    first, second = log.book(steps=4, correlation_id="req-1"), log.book(steps=2)
    third = log.book(steps=3, correlation_id="req-1")
    producer, checkpoints = FakeProducer(), MemoryCheckpoints()

    result = run_batch(log, producer, checkpoints)

    envelopes = [decoder.decode(m.value) for m in producer.sent]
    assert [e.position for e in envelopes] == list(range(1, 10))
    assert [m.topic for m in producer.sent] == [TOPIC] * 9
    assert [m.key for m in producer.sent] == [str(e.aggregate_id).encode() for e in envelopes]
    assert [e.aggregate_id for e in envelopes] == [first] * 4 + [second] * 2 + [third] * 3
    assert [e.aggregate_version for e in envelopes if e.aggregate_id == first] == [1, 2, 3, 4]
    for message, envelope in zip(producer.sent, envelopes, strict=True):
        assert message.headers == {
            "event-id": envelope.event_id.encode(),
            "type": envelope.type.encode(),
            "position": str(envelope.position).encode(),
            "correlation-id": envelope.correlation_id.encode(),
            "contract-version": b"1",
        }
    assert result.count == result.published == 9
    assert (result.first_position, result.last_position) == (1, 9)
    assert result.correlation_ids == 2  # req-1 and the random one of the second booking
    assert checkpoints.position("booking") == 9


def test_the_checkpoint_moves_only_after_every_message_was_acknowledged() -> None:
    log = a_log_of(3, steps=2)
    checkpoints = MemoryCheckpoints()
    seen_at_flush: list[int] = []
    producer = FakeProducer(
        before_flush=lambda: seen_at_flush.append(checkpoints.position("booking"))
    )

    run_batch(log, producer, checkpoints)

    assert seen_at_flush == [0]  # acknowledgements were awaited with the checkpoint untouched
    assert checkpoints.position("booking") == 6


def test_a_failed_delivery_leaves_the_checkpoint_and_the_batch_is_published_again() -> None:
    log = a_log_of(4)
    checkpoints = MemoryCheckpoints({"booking": 1})
    failing = FakeProducer(failing={2})

    with pytest.raises(RelayDeliveryError, match="1 of 3 booking messages failed"):
        run_batch(log, failing, checkpoints)

    assert checkpoints.position("booking") == 1
    healthy = FakeProducer()
    run_batch(log, healthy, checkpoints)
    assert [decoder.decode(m.value).position for m in healthy.sent] == [2, 3, 4]
    assert checkpoints.position("booking") == 4


def test_messages_not_acknowledged_within_the_timeout_leave_the_checkpoint() -> None:
    log = Log()
    log.book(steps=3)

    with pytest.raises(RelayDeliveryError, match="3 of 3 booking messages not acknowledged"):
        run_batch(log, FakeProducer(stall=True), checkpoints := MemoryCheckpoints())

    assert checkpoints.position("booking") == 0


def test_private_events_advance_the_position_without_a_message() -> None:
    log = a_log_of(5)
    producer, checkpoints = FakeProducer(), MemoryCheckpoints()

    def even_positions_only(notification: Notification) -> Envelope | None:
        return log.translate(notification) if notification.id % 2 == 0 else None

    result = run_batch(log, producer, checkpoints, translate=even_positions_only)

    assert [decoder.decode(m.value).position for m in producer.sent] == [2, 4]
    assert (result.count, result.published) == (5, 2)
    assert checkpoints.position("booking") == 5


def test_a_batch_of_private_events_only_is_checkpointed_without_touching_the_broker() -> None:
    log = Log()
    log.book(steps=2)
    producer, checkpoints = FakeProducer(), MemoryCheckpoints()

    run_batch(log, producer, checkpoints, translate=lambda _n: None)

    assert (producer.sent, producer.flushes) == ([], 0)
    assert checkpoints.position("booking") == 2


def test_a_batch_reads_at_most_the_limit_and_the_next_one_goes_on_from_the_checkpoint() -> None:
    log = a_log_of(7)
    producer, checkpoints = FakeProducer(), MemoryCheckpoints()

    sizes = [run_batch(log, producer, checkpoints, limit=3).count for _ in range(4)]

    assert sizes == [3, 3, 1, 0]
    assert [decoder.decode(m.value).position for m in producer.sent] == list(range(1, 8))


def test_an_empty_log_publishes_nothing_and_logs_nothing() -> None:
    producer, checkpoints = FakeProducer(), MemoryCheckpoints()

    with capture_logs() as logs:
        result = run_batch(Log(), producer, checkpoints)

    assert (result.count, producer.flushes, logs) == (0, 0, [])
    assert checkpoints.positions() == {}


def test_a_full_local_queue_is_drained_and_the_message_produced_again() -> None:
    log = Log()
    log.book()
    producer = FakeProducer(buffer_full_once=True)

    run_batch(log, producer, checkpoints := MemoryCheckpoints())

    assert len(producer.sent) == 1
    assert checkpoints.position("booking") == 1


def test_each_batch_logs_one_canonical_line() -> None:
    log = Log()
    log.book(steps=2, correlation_id="req-9")

    with capture_logs() as logs:
        run_batch(log, FakeProducer(), MemoryCheckpoints())

    assert len(logs) == 1
    line = logs[0]
    assert line.pop("duration_ms") >= 0
    assert line == {
        "event": "relay.published",
        "log_level": "info",
        "context": "booking",
        "first_position": 1,
        "last_position": 2,
        "count": 2,
        "published": 2,
        "correlation_ids": 1,
    }


def test_memory_checkpoints_only_move_forward() -> None:
    checkpoints = MemoryCheckpoints()

    checkpoints.advance("booking", 5)
    checkpoints.advance("booking", 3)

    assert checkpoints.position("booking") == 5
    assert checkpoints.position("payment") == 0
