"""The projection worker: Kafka -> engine -> MongoDB/Redis, with catch-up from the event store.

One loop per process (``projections/bookings.py``, ``projections/flights.py``):

- on start, catch up from the event store (low watermark + 1 to the head), so a worker that
  was down longer than Kafka's retention, or whose broker lost everything, starts complete;
- then poll a batch, decode it, apply it (:class:`~flightbook.projections.engine.Engine`),
  store dead letters, and only then commit the offsets synchronously;
- every few seconds: look for signs that the broker lost data (topic missing, committed
  offsets gone, a partition behind what we stored, retention past our offset) and then
  catch up from the event store and read the topics from their beginning again; raise the
  low watermark from the applied markers; refresh the lag gauges; and if the low watermark
  has not moved for ``stall_seconds`` while the log has more, catch up from the event store
  (the safety net for whatever Kafka lost that nobody noticed);
- at most every ``analytics_seconds``, and whenever there is nothing to consume,
  recompute the analytics that the applied batches marked stale (ADR 0014): one re-read
  of a day's bookings serves every batch of that interval.

SIGTERM finishes the batch in hand, commits and returns; SIGKILL resumes from the
committed offsets, and what is delivered again is skipped by the version guards.
"""

from __future__ import annotations

import datetime as dt
import random
import threading
import time
from typing import TYPE_CHECKING

import msgspec
import structlog
from confluent_kafka import OFFSET_BEGINNING, KafkaError, KafkaException, TopicPartition
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from flightbook.contracts import KNOWN_TYPES, decoder, encoder
from flightbook.projections.engine import ApplyResult, Targets, is_transient, replay
from flightbook.projections.progress import DeadLetter, VersionInfo
from flightbook.projections.status import advance_low_watermark, context_status

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from confluent_kafka import Consumer, Message

    from flightbook.contracts import Envelope
    from flightbook.projections.engine import Engine, Kind
    from flightbook.projections.eventstore import EventStoreReader
    from flightbook.projections.progress import ProgressStore

__all__ = ("ProjectionWorker", "VersionCache", "consumer_config", "letter_for_envelope")

_log = structlog.get_logger()


def consumer_config(
    bootstrap: str, *, group: str, session_timeout_ms: int, client_id: str
) -> dict[str, str | int | bool]:
    """A consumer that commits only what was applied, from the earliest offset of a new group.

    The heartbeat must be well inside the session timeout (librdkafka's default heartbeat
    of 3 s is longer than a 2 s test session and makes the group rebalance forever).
    Topics are never created by the consumer: a topic that vanished must look missing.
    """
    return {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "client.id": client_id,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": session_timeout_ms,
        "heartbeat.interval.ms": max(100, session_timeout_ms // 3),
        "allow.auto.create.topics": False,
        "topic.metadata.refresh.interval.ms": 5000,
        "socket.timeout.ms": 10_000,
    }


class VersionCache:
    """``read_model_versions``, re-read at most every ``ttl`` seconds."""

    def __init__(
        self,
        progress: ProgressStore,
        *,
        ttl: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._progress = progress
        self._ttl = ttl
        self._clock = clock
        self._read_at: float | None = None
        self._versions: dict[str, VersionInfo] = {}

    def get(self) -> dict[str, VersionInfo]:
        now = self._clock()
        if self._read_at is None or now - self._read_at >= self._ttl:
            self._versions = self._progress.versions()
            self._read_at = now
        return self._versions

    def info(self, read_model: str) -> VersionInfo:
        return self.get().get(read_model, VersionInfo())

    def targets(self, kind: Kind) -> Targets:
        """The live worker's targets: every active version, and every version being built."""

        def live(read_model: str) -> tuple[int, ...]:
            info = self.info(read_model)
            if info.building is not None and info.building != info.active:
                return (info.active, info.building)
            return (info.active,)

        return Targets(
            documents=live(kind.read_model), redis=live("redis"), analytics=live("analytics")
        )


def _error_text(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= 2000 else text[:1997] + "..."


def letter_for_envelope(
    read_model: str, context: str, envelope: Envelope, exc: BaseException, at: dt.datetime
) -> DeadLetter:
    """A dead letter for an event read from the event store (catch-up, rebuild, replay)."""
    return DeadLetter(
        id=f"{read_model}:eventstore:{context}:{envelope.position}",
        read_model=read_model,
        topic=f"eventstore:{context}",
        partition=0,
        offset=envelope.position,
        key=str(envelope.aggregate_id),
        raw=encoder.encode(envelope).decode(),
        error=_error_text(exc),
        failed_at=at,
    )


class _Metrics:
    def __init__(self, registry: CollectorRegistry, read_model: str, context: str) -> None:
        rm = {"read_model": read_model}
        self.applied = Counter(
            "flightbook_projection_events_applied_total",
            "Aggregate versions applied to the read model",
            ["read_model"],
            registry=registry,
        ).labels(**rm)
        self.duplicates = Counter(
            "flightbook_projection_duplicates_total",
            "Messages skipped because their aggregate version was already applied",
            ["read_model"],
            registry=registry,
        ).labels(**rm)
        self.repaired = Counter(
            "flightbook_projection_repaired_total",
            "Aggregate versions read from the event store to fill a gap",
            ["read_model"],
            registry=registry,
        ).labels(**rm)
        self.dead_letters = Counter(
            "flightbook_projection_dead_letters_total",
            "Messages that could not be decoded or applied (stored as dead letters)",
            ["read_model"],
            registry=registry,
        ).labels(**rm)
        self.batches = Counter(
            "flightbook_projection_batches_total",
            "Batches applied, by source (kafka or eventstore)",
            ["read_model", "source"],
            registry=registry,
        )
        self.catch_ups = Counter(
            "flightbook_projection_catch_ups_total",
            "Catch-ups from the event store, by reason",
            ["read_model", "reason"],
            registry=registry,
        )
        self.errors = Counter(
            "flightbook_projection_errors_total",
            "Failed attempts (retried), by kind",
            ["read_model", "kind"],
            registry=registry,
        )
        self.analytics_keys = Counter(
            "flightbook_projection_analytics_keys_recomputed_total",
            "Stale analytics keys (days) recomputed from the documents",
            ["read_model"],
            registry=registry,
        ).labels(**rm)
        self.analytics_duration = Histogram(
            "flightbook_projection_analytics_refresh_seconds",
            "Time to recompute the stale analytics keys once",
            ["read_model"],
            registry=registry,
        ).labels(**rm)
        self.duration = Histogram(
            "flightbook_projection_batch_duration_seconds",
            "Time to decode, apply and commit one batch",
            ["read_model"],
            registry=registry,
        ).labels(**rm)
        gauge_labels = ["read_model", "context"]
        self.low_watermark = Gauge(
            "flightbook_projection_low_watermark",
            "Every event at or below this position is applied",
            gauge_labels,
            registry=registry,
        ).labels(read_model, context)
        self.max_applied = Gauge(
            "flightbook_projection_max_applied_position",
            "Highest position applied",
            gauge_labels,
            registry=registry,
        ).labels(read_model, context)
        self.head = Gauge(
            "flightbook_projection_head_position",
            "Highest position of the context's event log",
            gauge_labels,
            registry=registry,
        ).labels(read_model, context)
        self.lag_positions = Gauge(
            "flightbook_projection_lag_positions",
            "Event-log head minus low watermark",
            gauge_labels,
            registry=registry,
        ).labels(read_model, context)
        self.lag_seconds = Gauge(
            "flightbook_projection_lag_seconds",
            "Age of the oldest event not known to be applied (0 when caught up)",
            gauge_labels,
            registry=registry,
        ).labels(read_model, context)
        self.active = Gauge(
            "flightbook_projection_active_version",
            "Active version of the read model",
            ["read_model"],
            registry=registry,
        )
        self.building = Gauge(
            "flightbook_projection_building_version",
            "Version being rebuilt (0: none)",
            ["read_model"],
            registry=registry,
        )
        self.pending_letters = Gauge(
            "flightbook_projection_dead_letters_pending",
            "Dead letters not replayed yet",
            ["read_model"],
            registry=registry,
        ).labels(**rm)
        for source in ("kafka", "eventstore"):
            self.batches.labels(read_model, source)
        for kind in ("transient", "other"):
            self.errors.labels(read_model, kind)


class ProjectionWorker:
    """One projection worker (built by ``flightbook.bootstrap.build_projection_worker``).

    Args:
        engine: Applies envelopes to the read models of this worker's kind.
        progress: Versions, checkpoints, markers, dead letters.
        reader: The event store (catch-up, lag).
        consumer_factory: A new Kafka consumer (its configuration: :func:`consumer_config`).
        topic: The topic of the worker's context.
        registry: Where the metrics go.
        batch_size: Messages per poll.
        poll_seconds: Longest wait for messages.
        stall_seconds: Catch up from the event store when the low watermark has not moved
            for this long while the log has more.
        analytics_seconds: Longest time between recomputes of the stale analytics while
            batches keep coming (an idle worker recomputes at once).
    """

    def __init__(
        self,
        *,
        engine: Engine,
        progress: ProgressStore,
        reader: EventStoreReader,
        consumer_factory: Callable[[], Consumer],
        topic: str,
        registry: CollectorRegistry | None = None,
        batch_size: int = 500,
        poll_seconds: float = 0.5,
        catch_up_batch: int = 1000,
        broker_check_seconds: float = 5.0,
        watermark_seconds: float = 2.0,
        purge_seconds: float = 300.0,
        marker_ttl_seconds: float = 3600.0,
        stall_seconds: float = 30.0,
        max_backoff_seconds: float = 5.0,
        analytics_seconds: float = 1.0,
    ) -> None:
        self.engine = engine
        self.kind = engine.kind
        self.read_model = engine.kind.read_model
        self.context = engine.kind.context
        self._progress = progress
        self._reader = reader
        self._consumer_factory = consumer_factory
        self._topic = topic
        self._batch_size = batch_size
        self._poll = poll_seconds
        self._catch_up_batch = catch_up_batch
        self._broker_check = broker_check_seconds
        self._watermark_every = watermark_seconds
        self._purge_every = purge_seconds
        self._marker_ttl = marker_ttl_seconds
        self._stall = stall_seconds
        self._max_backoff = max_backoff_seconds
        self._analytics_every = analytics_seconds
        self.versions = VersionCache(progress)
        self.registry = registry or CollectorRegistry()
        self._metrics = _Metrics(self.registry, self.read_model, self.context)

        self._stop = threading.Event()
        self._consumer: Consumer | None = None
        self._stored: dict[str, int] = {}
        self._uncommitted: dict[tuple[str, int], int] = {}
        self._batch: list[Message] | None = None
        self._rewind_until = 0.0
        self._failures = 0
        self._alive_at: float | None = None
        self._checked_at = 0.0
        self._watermark_at = 0.0
        self._purged_at = time.monotonic()
        self._low_seen = -1
        self._low_moved_at = time.monotonic()
        self._missing_logged = False
        self._started = False
        self._error_logged_at = 0.0
        self._analytics_at = 0.0
        self._maybe_stale = True  # stale keys may be left from before a restart

    # -- control ----------------------------------------------------------------------------

    def stop(self) -> None:
        """Finish the batch in hand, commit it, and return from :meth:`run`."""
        self._stop.set()

    def ready(self) -> bool:
        """The loop made progress (or waited for messages) within the last 30 s.

        A worker whose every attempt fails (MongoDB down, say) turns unready.
        """
        alive = self._alive_at
        return alive is not None and time.monotonic() - alive < 30.0

    def run(self) -> None:
        """Catch up, then consume until :meth:`stop`; failures are logged and retried."""
        self._alive_at = time.monotonic()
        try:
            while not self._stop.is_set():
                try:
                    self._serve()
                except Exception as exc:
                    self._failed(exc)
        finally:
            self._close()

    def catch_up(self, reason: str) -> int:
        """Apply the log from the low watermark to the head from the event store.

        Returns:
            The position reached.
        """
        checkpoint = self._progress.checkpoint(self.read_model, self.context)
        start = checkpoint.low_watermark
        head = self._reader.head(self.context)
        if head <= start:
            return start
        self._metrics.catch_ups.labels(self.read_model, reason).inc()
        _log.info(
            "projection.catch_up_started",
            read_model=self.read_model,
            context=self.context,
            reason=reason,
            after=start,
            head=head,
        )
        started = time.perf_counter()

        def on_batch(position: int, result: ApplyResult) -> None:
            self._progress.raise_low_watermark(self.read_model, self.context, position)
            self._metrics.low_watermark.set(position)
            self._count(result, source="eventstore")
            self._refresh_analytics(force=False)
            self._alive_at = time.monotonic()

        reached = replay(
            self.engine,
            self._reader,
            after=start,
            upto=head,
            targets=lambda: self.versions.targets(self.kind),
            on_poison=self._poison_from_store,
            batch_size=self._catch_up_batch,
            stop=self._stop.is_set,
            on_batch=on_batch,
        )
        self._refresh_analytics(force=True)
        _log.info(
            "projection.caught_up",
            read_model=self.read_model,
            context=self.context,
            reason=reason,
            position=reached,
            events=reached - start,
            duration_ms=round((time.perf_counter() - started) * 1000, 1),
        )
        self._low_moved_at = time.monotonic()
        return reached

    # -- the loop ---------------------------------------------------------------------------

    def _serve(self) -> None:
        if not self._started:
            self.catch_up("start")
            self._started = True
        consumer = self._connect()
        self._stored = dict(self._progress.checkpoint(self.read_model, self.context).partitions)
        while not self._stop.is_set():
            self._periodic(consumer)
            if self._batch is None:
                self._batch = self._usable(self._next_messages(consumer))
            idle = not self._batch
            if self._batch:
                self._process(consumer, self._batch)
            self._batch = None
            self._refresh_analytics(force=idle or self._stop.is_set())
            self._failures = 0
            self._alive_at = time.monotonic()

    def _refresh_analytics(self, *, force: bool) -> None:
        """Recompute the stale analytics when due, or now when idle or stopping."""
        now = time.monotonic()
        due = force or now - self._analytics_at >= self._analytics_every
        if not (self._maybe_stale and due):
            return
        started = time.perf_counter()
        keys = self.engine.refresh_analytics(self.versions.targets(self.kind))
        self._analytics_at = now
        self._maybe_stale = False
        if keys:
            elapsed = time.perf_counter() - started
            self._metrics.analytics_keys.inc(keys)
            self._metrics.analytics_duration.observe(elapsed)
            _log.info(
                "projection.analytics_refreshed",
                read_model=self.read_model,
                keys=keys,
                duration_ms=round(elapsed * 1000, 1),
            )

    def _next_messages(self, consumer: Consumer) -> list[Message]:
        """Wait for one message, then take what has already arrived, up to a batch.

        ``consume(n, timeout)`` waits until ``n`` messages or the timeout, so under light
        load every batch waited the whole poll interval (measured: projection lag p50
        470 ms). Waiting for the first message only keeps batching under load and adds
        no delay when idle-then-busy.
        """
        first = consumer.poll(self._poll)
        if first is None:
            return []
        return [first, *consumer.consume(num_messages=self._batch_size - 1, timeout=0)]

    def _connect(self) -> Consumer:
        if self._consumer is None:
            consumer = self._consumer_factory()
            consumer.subscribe([self._topic], on_assign=self._on_assign, on_revoke=self._on_revoke)
            self._consumer = consumer
        return self._consumer

    def _usable(self, messages: Sequence[Message]) -> list[Message]:
        usable = []
        for message in messages:
            error = message.error()
            if error is None:
                usable.append(message)
                continue
            if error.code() == KafkaError._PARTITION_EOF:
                continue
            if error.code() in (KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_TOPIC):
                if not self._missing_logged:
                    _log.warning("projection.topic_missing", topic=self._topic)
                    self._missing_logged = True
                continue
            if time.monotonic() - self._error_logged_at >= 10.0:  # at most one line per 10 s
                self._error_logged_at = time.monotonic()
                _log.warning(
                    "projection.consumer_error", read_model=self.read_model, error=str(error)
                )
        return usable

    def _process(self, consumer: Consumer, messages: list[Message]) -> None:
        started = time.perf_counter()
        now = dt.datetime.now(dt.UTC)
        letters: list[DeadLetter] = []
        envelopes: list[Envelope] = []
        origin: dict[int, Message] = {}
        offsets: dict[tuple[str, int], int] = {}
        skipped = 0
        rewound = False
        for message in messages:
            topic, partition, offset = message.topic(), message.partition(), message.offset()
            if topic is None or partition is None or offset is None:
                continue
            offsets[(topic, partition)] = max(offsets.get((topic, partition), -1), offset + 1)
            if offset < self._stored.get(f"{topic}:{partition}", 0):
                rewound = True
            kind = _header(message, "type")
            if kind is not None and kind not in KNOWN_TYPES:
                skipped += 1  # a newer producer's event: skipped (its gap is repaired later)
                continue
            value = message.value() or b""
            try:
                envelope = decoder.decode(value)
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                letters.append(self._letter(message, exc, now))
                continue
            envelopes.append(envelope)
            origin[id(envelope)] = message
        if rewound:
            self._broker_lost(consumer, "partition_rewound")

        def on_poison(envelope: Envelope, exc: Exception) -> None:
            letters.append(self._letter(origin[id(envelope)], exc, now))

        targets = self.versions.targets(self.kind)
        result = self.engine.apply_isolating(envelopes, targets, on_poison)
        for letter in letters:
            self._progress.add_dead_letter(letter)
            self._metrics.dead_letters.inc()
            _log.warning(
                "projection.dead_letter",
                read_model=self.read_model,
                topic=letter.topic,
                partition=letter.partition,
                offset=letter.offset,
                error=letter.error,
            )
        self._uncommitted.update(offsets)
        self._commit(consumer)
        self._count(result, source="kafka")
        self._metrics.duration.observe(time.perf_counter() - started)
        _log.info(
            "projection.applied",
            read_model=self.read_model,
            count=len(messages),
            applied=result.applied,
            duplicates=result.duplicates,
            repaired=result.repaired,
            dead_letters=len(letters),
            skipped=skipped,
            first_position=result.first_position,
            last_position=result.last_position,
            correlation_ids=len(result.correlation_ids),
            versions=list(targets.documents),
            duration_ms=round((time.perf_counter() - started) * 1000, 1),
        )

    def _commit(self, consumer: Consumer) -> None:
        if not self._uncommitted:
            return
        pending = dict(self._uncommitted)
        partitions = [TopicPartition(t, p, o) for (t, p), o in pending.items()]
        try:
            committed = consumer.commit(offsets=partitions, asynchronous=False)
        except KafkaException as exc:
            # The group moved on (rebalance) or the broker is away: what was applied is
            # delivered again later and skipped by the version guards.
            _log.warning("projection.commit_failed", read_model=self.read_model, error=str(exc))
            self._uncommitted.clear()
            return
        self._uncommitted.clear()
        done = {
            f"{tp.topic}:{tp.partition}": tp.offset
            for tp in committed or partitions
            if tp.error is None and tp.offset >= 0
        }
        if done:
            self._progress.merge_partitions(self.read_model, self.context, done)
            for key, offset in done.items():
                self._stored[key] = max(self._stored.get(key, 0), offset)

    def _count(self, result: ApplyResult, *, source: str) -> None:
        if result.count:
            self._maybe_stale = True
        self._metrics.applied.inc(result.applied)
        self._metrics.duplicates.inc(result.duplicates)
        self._metrics.repaired.inc(result.repaired)
        self._metrics.batches.labels(self.read_model, source).inc()

    # -- rebalances -------------------------------------------------------------------------

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if time.monotonic() < self._rewind_until:
            for tp in partitions:
                tp.offset = OFFSET_BEGINNING
            consumer.assign(partitions)
        _log.info(
            "projection.assigned",
            read_model=self.read_model,
            partitions=sorted(tp.partition for tp in partitions),
        )

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Everything applied is committed right after its batch; this only matters when
        # a commit is still due (e.g. a failed one retried).
        self._commit(consumer)
        _log.info(
            "projection.revoked",
            read_model=self.read_model,
            partitions=sorted(tp.partition for tp in partitions),
        )

    # -- periodic duties --------------------------------------------------------------------

    def _periodic(self, consumer: Consumer) -> None:
        now = time.monotonic()
        if now - self._checked_at >= self._broker_check:
            self._checked_at = now
            self._check_broker(consumer)
        if now - self._watermark_at >= self._watermark_every:
            self._watermark_at = now
            self._watermarks()
        if now - self._purged_at >= self._purge_every:
            self._purged_at = now
            before = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=self._marker_ttl)
            purged = self._progress.purge_markers(before)
            if purged:
                _log.info("projection.markers_purged", read_model=self.read_model, count=purged)

    def _check_broker(self, consumer: Consumer) -> None:
        """Look for signs that the broker lost what this group needs."""
        try:
            metadata = consumer.list_topics(self._topic, timeout=5)
        except KafkaException as exc:
            _log.warning("projection.broker_unreachable", error=str(exc))
            return
        found = metadata.topics.get(self._topic)
        if found is None or found.error is not None or not found.partitions:
            if self._stored:
                self._broker_lost(consumer, "topic_missing")
            return
        self._missing_logged = False
        wanted = [TopicPartition(self._topic, p) for p in sorted(found.partitions)]
        try:
            committed = consumer.committed(wanted, timeout=5)
        except KafkaException as exc:
            _log.warning("projection.broker_unreachable", error=str(exc))
            return
        try:
            reason = self._loss_in(consumer, committed)
        except KafkaException as exc:
            _log.warning("projection.broker_unreachable", error=str(exc))
            return
        if reason is not None:
            self._broker_lost(consumer, reason)

    def _loss_in(self, consumer: Consumer, committed: list[TopicPartition]) -> str | None:
        for tp in committed:
            stored = self._stored.get(f"{tp.topic}:{tp.partition}", 0)
            if stored > 0 and tp.offset < 0:
                return "committed_offsets_gone"
            low, _high = consumer.get_watermark_offsets(
                TopicPartition(tp.topic, tp.partition), timeout=5, cached=False
            )
            if tp.offset >= 0 and low > tp.offset:
                return "retention_passed"
            # Tansu's ListOffsets answers a high watermark short of the end of the last
            # record batch (``_high``, unused); the one a fetch reports (cached) is right,
            # and known for the partitions this consumer fetches.
            _, fetched_high = consumer.get_watermark_offsets(
                TopicPartition(tp.topic, tp.partition), cached=True
            )
            if stored > 0 and 0 <= fetched_high < stored:
                return "partition_truncated"
        return None

    def _broker_lost(self, consumer: Consumer, reason: str) -> None:
        _log.warning(
            "projection.broker_reset",
            read_model=self.read_model,
            topic=self._topic,
            reason=reason,
            detail="catching up from the event store, then reading the topic from its start",
        )
        self.catch_up(reason)
        self._progress.reset_partitions(self.read_model, self.context)
        self._stored = {}
        self._uncommitted.clear()
        self._rewind_until = time.monotonic() + 60.0
        try:
            for tp in consumer.assignment():
                consumer.seek(TopicPartition(tp.topic, tp.partition, OFFSET_BEGINNING))
        except KafkaException as exc:
            _log.info("projection.rewind_deferred", error=str(exc))

    def _watermarks(self) -> None:
        low = advance_low_watermark(self._progress, self._reader, self.read_model, self.context)
        status = context_status(self._progress, self._reader, self.read_model, self.context)
        m = self._metrics
        m.low_watermark.set(status.low_watermark)
        m.max_applied.set(status.max_applied)
        m.head.set(status.head)
        m.lag_positions.set(status.lag_positions)
        m.lag_seconds.set(status.lag_seconds)
        for read_model, info in self.versions.get().items():
            m.active.labels(read_model).set(info.active)
            m.building.labels(read_model).set(info.building or 0)
        m.pending_letters.set(self._progress.count_dead_letters(self.read_model))
        now = time.monotonic()
        if low >= status.head or low != self._low_seen:
            self._low_seen = low
            self._low_moved_at = now
        elif now - self._low_moved_at >= self._stall:
            self.catch_up("stalled")

    # -- failures and shutdown --------------------------------------------------------------

    def _poison_from_store(self, envelope: Envelope, exc: Exception) -> None:
        letter = letter_for_envelope(
            self.read_model, self.context, envelope, exc, dt.datetime.now(dt.UTC)
        )
        self._progress.add_dead_letter(letter)
        self._metrics.dead_letters.inc()
        _log.warning(
            "projection.dead_letter",
            read_model=self.read_model,
            topic=letter.topic,
            offset=letter.offset,
            error=letter.error,
        )

    def _letter(self, message: Message, exc: BaseException, at: dt.datetime) -> DeadLetter:
        topic, partition, offset = message.topic(), message.partition(), message.offset()
        key = message.key()
        value = message.value() or b""
        return DeadLetter(
            id=f"{self.read_model}:{topic}:{partition}:{offset}",
            read_model=self.read_model,
            topic=str(topic),
            partition=int(partition or 0),
            offset=int(offset or 0),
            key=key.decode("utf-8", "backslashreplace") if isinstance(key, bytes) else key,
            raw=value.decode("utf-8", "backslashreplace") if isinstance(value, bytes) else value,
            error=_error_text(exc),
            failed_at=at,
        )

    def _failed(self, exc: Exception) -> None:
        kind = "transient" if is_transient(exc) or isinstance(exc, KafkaException) else "other"
        self._metrics.errors.labels(self.read_model, kind).inc()
        self._failures += 1
        delay = min(self._max_backoff, 0.2 * 2 ** (self._failures - 1))
        delay *= random.uniform(0.5, 1.0)  # noqa: S311 - jitter, not cryptography
        _log.warning(
            "projection.failed",
            read_model=self.read_model,
            kind=kind,
            error=str(exc),
            error_type=type(exc).__name__,
            attempt=self._failures,
            retry_in_s=round(delay, 2),
            exc_info=kind == "other",
        )
        self._stop.wait(delay)

    def _close(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is None:
            return
        try:
            self._commit(consumer)
        finally:
            consumer.close()


def _header(message: Message, name: str) -> str | None:
    headers = message.headers() or []
    pairs = headers.items() if isinstance(headers, dict) else headers
    for key, value in pairs:
        if key == name and isinstance(value, bytes):
            return value.decode("utf-8", "replace")
    return None
