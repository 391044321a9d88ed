"""The relay process: one loop over the three contexts' logs, publishing to Kafka until stopped.

Woken by LISTEN/NOTIFY on the logs' channels, it reads only the logs that notified, in
rounds with one flush and one checkpoint write each (ADR 0026); after a quiet poll it
reads all of them, so a lost notification never stalls it. The write side never waits
for it: when the broker (or PostgreSQL) is down, every attempt fails, the loop backs off
exponentially and tries again, and it catches up from its checkpoint when the server is
back. SIGTERM finishes the round in hand (flush and checkpoint) and exits; SIGKILL at any
moment loses nothing, because the checkpoint moves only after the broker acknowledged.

A broker that comes back empty (the local one keeps nothing across a restart) gets its
topics created again. The relay does not publish history again: its checkpoint says
those events were acknowledged, and consumers that lost them catch up from the event
store (DESIGN.md, "Projections"). Only events after the checkpoint are published.

Only one relay publishes per database: the loop holds a PostgreSQL advisory lock on its
LISTEN connection; a second relay waits as a standby until the first one's connection
is gone.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import psycopg
import structlog
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka import Producer as KafkaProducer
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic  # where confluent_kafka.admin gets it (typed)
from eventsourcing.persistence import PersistenceError
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from psycopg import sql

from flightbook.relay.relay import (
    HeldCheckpoints,
    LogSource,
    RelayDeliveryError,
    plan_round,
    relay_round,
)
from flightbook.relay.translate import to_envelope
from flightbook.runtime.loop import ProcessLoop

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from eventsourcing.persistence import Notification

    from flightbook.contracts.envelope import Envelope
    from flightbook.eventstore.applications import ContextApplication, EventStore
    from flightbook.eventstore.contexts import Context
    from flightbook.relay.relay import BatchResult, PostgresCheckpoints

__all__ = ("BrokerError", "KafkaBroker", "RelayProcess", "producer_config")

_log = structlog.get_logger()

_KAFKA_LOGGER = logging.getLogger("flightbook.relay.librdkafka")
_LOCK_KEY = 0x_F11_9B_4E1A  # pg_try_advisory_lock key: one publishing relay per database


class BrokerError(RuntimeError):
    """The broker could not be reached, or refused an administrative request."""


def producer_config(bootstrap: str, *, delivery_timeout: float) -> dict[str, str | int | bool]:
    """The relay's producer: idempotent, every replica acknowledges, nothing auto-created.

    ``allow.auto.create.topics`` is off so that a broker that lost its topics cannot
    re-create them behind our back with its default partition count: producing fails
    instead, and the relay creates them with ``kafka_partitions`` first. ``murmur2_random``
    is the Java client's partitioner, so every producer agrees on key -> partition.
    lz4 was checked against the local broker (Tansu) and Kafka supports it natively.
    """
    return {
        "bootstrap.servers": bootstrap,
        "client.id": "flightbook-relay",
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        "compression.type": "lz4",
        "partitioner": "murmur2_random",
        "allow.auto.create.topics": False,
        "message.timeout.ms": int(delivery_timeout * 1000),
        "socket.timeout.ms": 10_000,
    }


class KafkaBroker:
    """The relay's side of Kafka: its topics, a producer, and a health check.

    Args:
        bootstrap: ``host:port[,host:port...]`` of the brokers.
        topics: The topics the relay publishes to.
        partitions: Partitions of a topic it creates (existing topics are left alone).
        delivery_timeout: Seconds a message may wait for its acknowledgement.
    """

    def __init__(
        self,
        bootstrap: str,
        *,
        topics: Sequence[str],
        partitions: int,
        delivery_timeout: float = 10.0,
        request_timeout: float = 5.0,
    ) -> None:
        self.bootstrap = bootstrap
        self.topics = tuple(topics)
        self.partitions = partitions
        self.delivery_timeout = delivery_timeout
        self._request_timeout = request_timeout

    def ensure_topics(self) -> list[str]:
        """Create the topics that do not exist ("already exists" is fine); return those created.

        Raises:
            BrokerError: The broker did not answer or refused.
        """
        admin = AdminClient(
            {
                "bootstrap.servers": self.bootstrap,
                "socket.timeout.ms": int(self._request_timeout * 1000),
            }
        )
        new = [NewTopic(t, num_partitions=self.partitions) for t in self.topics]
        created: list[str] = []
        try:
            futures = admin.create_topics(
                new, request_timeout=self._request_timeout, operation_timeout=self._request_timeout
            )
            for topic, future in futures.items():
                try:
                    future.result(timeout=self._request_timeout * 2)
                    created.append(topic)
                except KafkaException as exc:
                    if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                        raise
            metadata = admin.list_topics(timeout=self._request_timeout)
        except (KafkaException, TimeoutError) as exc:
            raise BrokerError(f"cannot create the relay's topics: {exc}") from exc
        for topic in self.topics:
            found = metadata.topics.get(topic)
            if found is not None and len(found.partitions) != self.partitions:
                _log.warning(
                    "relay.topic_partitions_differ",
                    topic=topic,
                    partitions=len(found.partitions),
                    configured=self.partitions,
                )
        if created:
            _log.info("relay.topics_created", topics=created, partitions=self.partitions)
        return created

    def producer(self) -> KafkaProducer:
        """A new idempotent producer, after making sure the topics exist."""
        self.ensure_topics()
        config = producer_config(self.bootstrap, delivery_timeout=self.delivery_timeout)
        return KafkaProducer({**config, "logger": _KAFKA_LOGGER})  # its logs as our JSON lines

    def topics_missing(self, producer: KafkaProducer) -> list[str]:
        """The relay's topics the broker does not have (it lost them: restarted empty).

        Raises:
            BrokerError: The broker did not answer.
        """
        try:
            metadata = producer.list_topics(timeout=self._request_timeout)
        except KafkaException as exc:
            raise BrokerError(f"the broker does not answer: {exc}") from exc
        return [t for t in self.topics if t not in metadata.topics]

    @staticmethod
    def discard(producer: KafkaProducer) -> None:
        """Drop what the producer still holds (unacknowledged messages are published again)."""
        producer.purge()
        producer.flush(0)


class RelayProcess:
    """Publishes every context's log to Kafka (built by ``flightbook.bootstrap.build_relay``).

    Args:
        store: The application of each context (its recorder and mapper are used).
        checkpoints: The relay's positions in PostgreSQL.
        broker: Kafka.
        postgres_url: For LISTEN/NOTIFY and the advisory lock.
        topic_prefix: Topics are ``<topic_prefix>.<context>.events``.
        batch_size: Notifications read per batch.
        poll_seconds: Longest wait for a notification before looking anyway.
        registry: Where the metrics go.
    """

    def __init__(
        self,
        *,
        store: EventStore,
        checkpoints: PostgresCheckpoints,
        broker: KafkaBroker,
        postgres_url: str,
        topic_prefix: str,
        batch_size: int = 5000,
        poll_seconds: float = 0.5,
        registry: CollectorRegistry | None = None,
        broker_check_seconds: float = 5.0,
        ready_window_seconds: float = 20.0,
        max_backoff_seconds: float = 5.0,
    ) -> None:
        self._sources = {app.spec.name: app for app in store}
        self._checkpoints = checkpoints
        self._broker = broker
        self._url = postgres_url
        self._topics = {app.spec.name: app.spec.topic(topic_prefix) for app in store}
        self._log_sources = {
            context: LogSource(
                context, app.recorder, self._translator(context, app), self._topics[context]
            )
            for context, app in self._sources.items()
        }
        self._batch_size = batch_size
        self._poll = poll_seconds
        self._broker_check = broker_check_seconds
        self._ready_window = ready_window_seconds
        self.loop = ProcessLoop("relay", max_backoff=max_backoff_seconds)
        self._producer: KafkaProducer | None = None
        self._broker_ok_at: float | None = None
        self._broker_checked_at = 0.0
        self._observed_at = 0.0
        self._standby_logged = False

        self.registry = registry or CollectorRegistry()
        self._published = Counter(
            "flightbook_relay_events_published_total",
            "Events published and acknowledged by the broker",
            ["context"],
            registry=self.registry,
        )
        self._batches = Counter(
            "flightbook_relay_batches_total",
            "Batches relayed (read, published, acknowledged, checkpointed)",
            ["context"],
            registry=self.registry,
        )
        self._errors = Counter(
            "flightbook_relay_errors_total",
            "Failed attempts, by kind (delivery, broker, postgres, other)",
            ["kind"],
            registry=self.registry,
        )
        self._lag = Gauge(
            "flightbook_relay_lag_positions",
            "Positions of the context's log after the relay's checkpoint",
            ["context"],
            registry=self.registry,
        )
        self._last_publish = Gauge(
            "flightbook_relay_last_publish_timestamp_seconds",
            "Unix time of the last acknowledged batch",
            registry=self.registry,
        )
        self._duration = Histogram(
            "flightbook_relay_batch_duration_seconds",
            "Time to read, publish, acknowledge and checkpoint one batch",
            ["context"],
            registry=self.registry,
        )
        for context in self._sources:
            self._published.labels(context)
            self._batches.labels(context)
            self._lag.labels(context)
        for kind in ("delivery", "broker", "postgres", "other"):
            self._errors.labels(kind)

    # -- control ----------------------------------------------------------------------------

    def stop(self) -> None:
        """Finish the batch in hand, checkpoint it, and return from :meth:`run`."""
        self.loop.stop()

    def ready(self) -> bool:
        """PostgreSQL answers and the broker answered recently."""
        if not self._checkpoints.ping():
            return False
        ok_at = self._broker_ok_at
        return ok_at is not None and time.monotonic() - ok_at < self._ready_window

    def connect(self) -> bool:
        """Try once to reach the broker (create the topics, open the producer); never raises."""
        try:
            self._connected()
        except Exception as exc:
            self._failed(exc, None)
            return False
        return True

    def run(self) -> None:
        """Relay until :meth:`stop`; every failure is logged, counted and retried."""
        self.loop.run(self._serve, on_failure=self._failed, close=self._close_producer)

    # -- the loop ---------------------------------------------------------------------------

    def _serve(self) -> None:
        with psycopg.connect(self._url, autocommit=True, connect_timeout=5) as conn:
            if not self._lock(conn):
                return
            by_channel: dict[str, str] = {}
            for context, app in self._sources.items():
                channel = app.recorder.channel_name  # type: ignore[attr-defined]
                by_channel[channel] = context
                conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
            # the lock is ours: the checkpoints are read once and then kept (and written)
            checkpoints = HeldCheckpoints(self._checkpoints)
            contexts: frozenset[str] = frozenset(self._sources)  # after (re)connecting: all
            while not self.loop.stop_requested():
                producer = self._connected()
                self._catch_up(producer, checkpoints, contexts, conn, by_channel)
                self.loop.backoff.reset()
                self._observe()
                self._check_broker(producer)
                # Woken by the first NOTIFY (no polling sleep on the way of an event); only
                # the logs that notified are read next; after a quiet wait, all of them.
                notified = [
                    by_channel.get(n.channel, "")
                    for n in conn.notifies(timeout=self._poll, stop_after=1)
                ]
                notified += [by_channel.get(n.channel, "") for n in _pending(conn)]
                contexts = plan_round(
                    notified=notified, full=(), every=self._sources, quiet=not notified
                )
            checkpoints.flush()  # stopping: what was acknowledged is not published again

    def _lock(self, conn: psycopg.Connection[tuple[object, ...]]) -> bool:
        """Hold the relay's advisory lock on ``conn``; False if stopped while waiting for it."""
        while not self.loop.stop_requested():
            row = conn.execute("SELECT pg_try_advisory_lock(%s)", (_LOCK_KEY,)).fetchone()
            if row is not None and row[0] is True:
                if self._standby_logged:
                    _log.info("relay.active")
                    self._standby_logged = False
                return True
            if not self._standby_logged:
                _log.info("relay.standby", reason="another relay holds the lock")
                self._standby_logged = True
            self.loop.wait(max(self._poll, 0.5))
        return False

    def _connected(self) -> KafkaProducer:
        if self._producer is None:
            self._producer = self._broker.producer()
            self._broker_ok_at = time.monotonic()
        return self._producer

    def _catch_up(
        self,
        producer: KafkaProducer,
        checkpoints: HeldCheckpoints,
        contexts: frozenset[str],
        conn: psycopg.Connection[tuple[object, ...]],
        by_channel: dict[str, str],
    ) -> int:
        """Rounds until no log read has more waiting: one flush and one checkpoint write each.

        A round reads the logs planned for it; the next one those whose page was full and
        those that notified meanwhile (a booking is not kept waiting behind a backlog of
        another context, and an empty log is not read again and again).
        """
        total = 0
        while contexts and not self.loop.stop_requested():
            results = relay_round(
                sources=[self._log_sources[c] for c in self._sources if c in contexts],
                checkpoints=checkpoints,
                producer=producer,
                limit=self._batch_size,
                timeout=self._broker.delivery_timeout + 5.0,
            )
            checkpoints.flush()  # after the broker acknowledged the round: one statement
            for result in results:
                if result.count:
                    self._record(result)
                    total += result.count
            contexts = plan_round(
                notified=[by_channel.get(n.channel, "") for n in _pending(conn)],
                full=[r.context for r in results if r.count >= self._batch_size],
                every=self._sources,
                quiet=False,
            )
        return total

    def _record(self, result: BatchResult) -> None:
        self._batches.labels(result.context).inc()
        self._duration.labels(result.context).observe(result.duration_ms / 1000)
        if result.published:
            self._published.labels(result.context).inc(result.published)
            self._last_publish.set_to_current_time()
            self._broker_ok_at = time.monotonic()

    def _check_broker(self, producer: KafkaProducer) -> None:
        now = time.monotonic()
        if now - self._broker_checked_at < self._broker_check:
            return
        self._broker_checked_at = now
        missing = self._broker.topics_missing(producer)
        self._broker_ok_at = time.monotonic()
        if missing:
            _log.warning(
                "relay.broker_reset",
                missing_topics=missing,
                detail="topics are created again; events up to the checkpoint are not "
                "published again (consumers catch up from the event store)",
            )
            self._discard_producer()

    def _observe(self) -> None:
        now = time.monotonic()
        if now - self._observed_at < 1.0:
            return
        self._observed_at = now
        done = self._checkpoints.positions()
        for context, app in self._sources.items():
            head = app.recorder.max_notification_id() or 0
            self._lag.labels(context).set(max(0, head - done.get(context, 0)))

    def _failed(self, exc: Exception, delay: float | None) -> None:
        kind = _error_kind(exc)
        self._errors.labels(kind).inc()
        _log.warning(
            "relay.failed",
            kind=kind,
            error=str(exc),
            error_type=type(exc).__name__,
            attempt=self.loop.backoff.failures,
            retry_in_s=round(delay, 2) if delay is not None else None,
            exc_info=kind == "other",
        )
        self._discard_producer()

    def _discard_producer(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            self._broker.discard(producer)

    def _close_producer(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            left = producer.flush(self._broker.delivery_timeout)
            if left:
                _log.warning("relay.unflushed", messages=left)

    @staticmethod
    def _translator(
        context: Context, app: ContextApplication
    ) -> Callable[[Notification], Envelope | None]:
        mapper = app.metadata_mapper

        def translate(notification: Notification) -> Envelope | None:
            return to_envelope(context, notification, *mapper.decode(notification))

        return translate


def _error_kind(exc: Exception) -> str:
    if isinstance(exc, RelayDeliveryError):
        return "delivery"
    if isinstance(exc, (BrokerError, KafkaException)):
        return "broker"
    if isinstance(exc, (psycopg.Error, PersistenceError)):
        return "postgres"
    return "other"


def _pending(conn: psycopg.Connection[tuple[object, ...]]) -> list[psycopg.Notify]:
    """Notifications already received on ``conn``, without waiting."""
    return list(conn.notifies(timeout=0))
