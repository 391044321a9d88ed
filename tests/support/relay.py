"""Reading back what the relay published and checkpointed."""

from __future__ import annotations

import collections
import time
import uuid
from dataclasses import dataclass

import psycopg
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from psycopg import sql

from flightbook.config.settings import Settings
from flightbook.contracts.envelope import Envelope, decoder
from flightbook.eventstore.contexts import CONTEXTS as SPECS
from flightbook.eventstore.contexts import topic_for


@dataclass(frozen=True)
class Record:
    """One message as the broker holds it."""

    topic: str
    partition: int
    offset: int
    key: bytes
    headers: dict[str, bytes]
    value: bytes

    @property
    def envelope(self) -> Envelope:
        return decoder.decode(self.value)


def read_topics(
    settings: Settings, topics: list[str], *, at_least: int, idle: float = 1.0
) -> list[Record]:
    """Everything on ``topics``, from the start: at least ``at_least`` records, then until
    nothing more comes for ``idle`` seconds.

    Not to the high watermarks: the local broker (Tansu 0.6) reports the base offset of
    the last record batch + 1 as the high watermark, short of the real end.
    """
    assert settings.kafka_bootstrap is not None
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "group.id": f"test-{uuid.uuid4().hex}",
            "session.timeout.ms": settings.kafka_session_timeout_ms,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    try:
        metadata = consumer.list_topics(timeout=10)
        consumer.assign(
            [
                TopicPartition(topic, partition, OFFSET_BEGINNING)
                for topic in topics
                for partition in metadata.topics[topic].partitions
            ]
        )
        records: list[Record] = []
        deadline = time.monotonic() + 60
        last_seen = time.monotonic()
        while len(records) < at_least or time.monotonic() - last_seen < idle:
            assert time.monotonic() < deadline, f"read {len(records)} of {at_least} records"
            for message in consumer.consume(num_messages=2000, timeout=0.2):
                assert message.error() is None, message.error()
                topic, partition, offset = message.topic(), message.partition(), message.offset()
                key, value = message.key(), message.value()
                assert topic is not None
                assert partition is not None
                assert offset is not None
                assert isinstance(key, bytes)
                assert isinstance(value, bytes)
                raw = message.headers() or []
                pairs = raw.items() if isinstance(raw, dict) else raw
                headers = {k: v for k, v in pairs if isinstance(v, bytes)}
                records.append(Record(topic, partition, offset, key, headers, value))
                last_seen = time.monotonic()
        return records
    finally:
        consumer.close()


def stored_positions(settings: Settings) -> dict[str, list[int]]:
    """Every notification id of each context's log, ascending."""
    assert settings.postgres_url is not None
    with psycopg.connect(settings.postgres_url) as conn:
        return {
            spec.name: [
                row[0]
                for row in conn.execute(
                    sql.SQL("SELECT notification_id FROM {} ORDER BY 1").format(spec.events)
                )
            ]
            for spec in SPECS
        }


def checkpoints_of(settings: Settings) -> dict[str, int]:
    assert settings.postgres_url is not None
    with psycopg.connect(settings.postgres_url) as conn:
        rows = conn.execute("SELECT context, position FROM relay.checkpoints").fetchall()
    return {str(context): int(position) for context, position in rows}


def wait_until_relayed(settings: Settings, timeout: float = 60.0) -> None:
    """Until every context's checkpoint is at the head of its log."""
    deadline = time.monotonic() + timeout
    while True:
        heads = {c: (p[-1] if p else 0) for c, p in stored_positions(settings).items()}
        done = checkpoints_of(settings)
        if all(done.get(c, 0) >= head for c, head in heads.items()):
            return
        assert time.monotonic() < deadline, f"relay behind: heads {heads}, checkpoints {done}"
        time.sleep(0.1)


def envelopes_by_context(records: list[Record], prefix: str) -> dict[str, list[Envelope]]:
    found: dict[str, list[Envelope]] = collections.defaultdict(list)
    for record in records:
        envelope = decoder.decode(record.value)
        assert record.topic == topic_for(prefix, envelope.context)
        found[envelope.context].append(envelope)
    return found


def partition_count(settings: Settings, topic: str) -> int:
    assert settings.kafka_bootstrap is not None
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": "meta"})
    try:
        return len(consumer.list_topics(timeout=10).topics[topic].partitions)
    finally:
        consumer.close()
