"""Both workers in threads against the session's Kafka: the Kafka path, commits, a clean stop."""

from __future__ import annotations

import threading
import time

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from flightbook.bootstrap import build_projection_worker
from flightbook.config.settings import Settings
from flightbook.contracts.envelope import encoder
from flightbook.eventstore.contexts import topic_for
from flightbook.projections.engine import Targets
from flightbook.projections.services import ProjectionServices
from flightbook.projections.tools.verify import compare_read_models, replay_read_models
from tests.support.erasure import book_sealed, record_erasure
from tests.support.history import History
from tests.support.saga import SagaHarness

pytestmark = pytest.mark.integration


def publish(settings: Settings, services: ProjectionServices) -> int:
    """What the relay would publish (the relay itself is tested by its own suite)."""
    assert settings.kafka_bootstrap is not None
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
    topics = {c: topic_for(settings.topic_prefix, c) for c in ("booking", "inventory")}
    created = admin.create_topics(
        [NewTopic(t, num_partitions=settings.kafka_partitions) for t in topics.values()]
    )
    for future in created.values():
        future.result(timeout=10)
    producer = Producer(
        {"bootstrap.servers": settings.kafka_bootstrap, "partitioner": "murmur2_random"}
    )
    count = 0
    for context, topic in topics.items():
        for item in services.reader.read(context, after=0, limit=100_000):
            if item.envelope is None:
                continue  # a private event: the relay publishes nothing for it
            producer.produce(
                topic,
                value=encoder.encode(item.envelope),
                key=str(item.aggregate_id).encode(),
                headers=[("type", item.envelope.type.encode())],
            )
            count += 1
    assert producer.flush(10) == 0
    return count


def committed_total(settings: Settings, worker: str, context: str) -> int:
    assert settings.kafka_bootstrap is not None
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "group.id": f"{settings.topic_prefix}.projection.{worker}",
        }
    )
    try:
        topic = topic_for(settings.topic_prefix, context)
        wanted = [TopicPartition(topic, p) for p in range(settings.kafka_partitions)]
        return sum(max(tp.offset, 0) for tp in consumer.committed(wanted, timeout=10))
    finally:
        consumer.close()


@pytest.mark.timeout(120)
def test_workers_apply_what_kafka_brings_commit_it_and_stop_when_asked(
    settings: Settings, services: ProjectionServices, history: History
) -> None:
    """The event store is "already applied" up to the head as far as the start catch-up is
    concerned, so everything reaches the read models through Kafka; stop() ends the loop
    with the offsets of everything applied committed."""
    published = publish(settings, services)
    messages = {c: services.reader.head(c) for c in ("booking", "inventory")}
    for read_model, context in (("bookings", "booking"), ("flights", "inventory")):
        # pretend the start catch-up has nothing to do: Kafka must bring every event
        services.progress.raise_low_watermark(read_model, context, messages[context])
    workers = [build_projection_worker(settings, name) for name in ("flights", "bookings")]
    threads = [threading.Thread(target=w.run, name=w.read_model) for w, _ in workers]
    for thread in threads:
        thread.start()
    try:
        deadline = time.monotonic() + 60
        while compare_read_models(replay_read_models(settings), services.database, services.redis):
            assert time.monotonic() < deadline, "the read models did not fill from Kafka"
            time.sleep(0.5)
        assert all(w.ready() for w, _ in workers)
    finally:
        for running, _ in workers:
            running.stop()
        for thread in threads:
            thread.join(30)
        for _, close in workers:
            close()

    assert published == sum(messages.values())
    assert not any(thread.is_alive() for thread in threads)
    assert committed_total(settings, "bookings", "booking") == messages["booking"]
    assert committed_total(settings, "flights", "inventory") == messages["inventory"]
    checkpoint = services.progress.checkpoint("bookings", "booking")
    assert checkpoint.events_applied == messages["booking"]
    assert sum(checkpoint.partitions.values()) == messages["booking"]


@pytest.mark.timeout(120)
def test_stale_days_left_by_a_killed_worker_are_recomputed_by_the_next_one(
    settings: Settings, services: ProjectionServices, history: History
) -> None:
    """A worker killed after a batch marked its days stale, before it recomputed them: the
    documents and checkpoint are there, the day's analytics are not. The next worker, with
    nothing to consume, recomputes them."""
    live = Targets(documents=(1,), redis=(1,), analytics=(1,))
    for read_model, context in (("flights", "inventory"), ("bookings", "booking")):
        items = services.reader.read(context, after=0, limit=100_000)
        services.engine(read_model).apply([i.envelope for i in items if i.envelope], live)
        services.progress.raise_low_watermark(read_model, context, services.reader.head(context))
    stale = services.progress.stale("bookings")
    missing = compare_read_models(replay_read_models(settings), services.database, services.redis)
    worker, close = build_projection_worker(settings, "bookings")
    thread = threading.Thread(target=worker.run, name="bookings")
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while services.progress.stale("bookings"):
            assert time.monotonic() < deadline, "the stale days were never recomputed"
            time.sleep(0.2)
    finally:
        worker.stop()
        thread.join(30)
        close()

    assert stale
    assert {d.where for d in missing} == {"sales_daily_v1", "funnel_daily_v1"}
    assert (
        compare_read_models(replay_read_models(settings), services.database, services.redis) == []
    )


@pytest.mark.timeout(120)
def test_an_erasure_that_comes_through_kafka_redacts_the_documents(
    settings: Settings, services: ProjectionServices, harness: SagaHarness, history: History
) -> None:
    passengers = [{"name": "Grace Kafka-Erasable", "email": "grace.kafka@example.org"}]
    grace = [
        book_sealed(harness, services.vault, history.flights["big"], "grace", passengers=passengers)
        for _ in range(2)
    ]
    harness.settle()
    record_erasure(harness, services.vault, "grace")
    publish(settings, services)
    for read_model, context in (("bookings", "booking"), ("flights", "inventory")):
        services.progress.raise_low_watermark(read_model, context, services.reader.head(context))
    worker, close = build_projection_worker(settings, "bookings")
    thread = threading.Thread(target=worker.run, name="bookings")
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while services.database["bookings_v1"].count_documents({"personal_data_erased": True}) < 2:
            assert time.monotonic() < deadline, "the erasure did not arrive through Kafka"
            time.sleep(0.2)
    finally:
        worker.stop()
        thread.join(30)
        close()

    for booking_id in grace:
        doc = services.database["bookings_v1"].find_one({"_id": str(booking_id)})
        assert doc is not None
        assert doc["passengers"] == [{"name": "[erased]", "email": "[erased]"}]
    assert services.progress.count_dead_letters("bookings") == 0
    checkpoint = services.progress.checkpoint("bookings", "booking")
    assert checkpoint.max_applied == services.reader.head("booking")  # the subject's too
