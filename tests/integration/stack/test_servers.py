"""Each of the four servers is reached over a real connection with the real client library."""

from __future__ import annotations

import time
import uuid

import psycopg
import pymongo
import pymongo.collection
import pytest
import redis
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from flightbook.config.settings import Settings

pytestmark = pytest.mark.integration


def test_postgresql_answers_through_psycopg_and_has_the_event_store(settings: Settings) -> None:
    assert settings.postgres_url is not None

    with psycopg.connect(settings.postgres_url) as conn:
        tables = {
            row[0]
            for row in conn.execute(
                "SELECT table_schema || '.' || table_name FROM information_schema.tables"
            )
        }

    assert {
        "booking.bookings_events",
        "inventory.inventory_events",
        "payment.payments_events",
    } <= tables


def test_redis_answers_through_redis_py(settings: Settings) -> None:
    assert settings.redis_url is not None
    key = f"{settings.redis_prefix}probe"
    client: redis.Redis = redis.Redis.from_url(settings.redis_url)

    with client:
        client.set(key, "42")
        value = client.get(key)
        client.delete(key)

    assert value == b"42"


def test_mongodb_answers_through_pymongo(settings: Settings) -> None:
    assert settings.mongo_url is not None
    client: pymongo.MongoClient[dict[str, object]]

    with pymongo.MongoClient(settings.mongo_url) as client:
        collection: pymongo.collection.Collection[dict[str, object]]
        collection = client[settings.mongo_database]["probe"]
        collection.insert_one({"_id": "a", "n": 1})  # type: ignore[arg-type]
        collection.update_one({"_id": "a", "n": {"$lt": 2}}, {"$set": {"n": 2}}, upsert=True)
        found = collection.find_one({"_id": "a"})

    assert found == {"_id": "a", "n": 2}


def test_the_broker_answers_through_confluent_kafka(settings: Settings) -> None:
    assert settings.kafka_bootstrap is not None
    topic = f"{settings.topic_prefix}.probe"
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])[topic].result(10)
    producer = Producer(
        {"bootstrap.servers": settings.kafka_bootstrap, "enable.idempotence": True, "acks": "all"}
    )
    sent = {str(uuid.uuid4()).encode() for _ in range(5)}
    for value in sent:
        producer.produce(topic, key=b"k", value=value)
    assert producer.flush(10) == 0
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "group.id": f"{settings.topic_prefix}.probe",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "session.timeout.ms": settings.kafka_session_timeout_ms,
        }
    )
    consumer.subscribe([topic])
    received: set[bytes] = set()
    deadline = time.monotonic() + 30

    while received != sent and time.monotonic() < deadline:
        message = consumer.poll(0.5)
        if message is not None and message.error() is None:
            payload = message.value()
            assert payload is not None
            received.add(payload)
    consumer.close()

    assert received == sent
