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
import time
from typing import TYPE_CHECKING

import msgspec
import structlog
from confluent_kafka import OFFSET_BEGINNING, KafkaError, KafkaException, TopicPartition
from prometheus_client import CollectorRegistry

from flightbook.contracts.envelope import KNOWN_TYPES, decoder
from flightbook.projections.deadletters import letter_for_envelope, letter_for_message
from flightbook.projections.engine import ApplyResult, is_transient, replay
from flightbook.projections.kafka import header
from flightbook.projections.metrics import WorkerMetrics
from flightbook.projections.versions import VersionCache
from flightbook.projections.watermarks import advance_low_watermark, context_status
from flightbook.runtime.loop import ProcessLoop

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from confluent_kafka import Consumer, Message

    from flightbook.contracts.envelope import Envelope
    from flightbook.projections.engine import Engine
    from flightbook.projections.history import EventStoreReader
    from flightbook.projections.ports import DeadLetter, ProgressStore

__all__ = ("ProjectionWorker",)

_log = structlog.get_logger()


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
        self._analytics_every = analytics_seconds
        self.versions = VersionCache(progress)
        self.registry = registry or CollectorRegistry()
        self._metrics = WorkerMetrics(self.registry, self.read_model, self.context)

        self.loop = ProcessLoop(f"projection-{self.read_model}", max_backoff=max_backoff_seconds)
        self._consumer: Consumer | None = None
        self._stored: dict[str, int] = {}
        self._uncommitted: dict[tuple[str, int], int] = {}
        self._batch: list[Message] | None = None
        self._rewind_until = 0.0
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
        self.loop.stop()

    def ready(self) -> bool:
        """The loop made progress (or waited for messages) within the last 30 s.

        A worker whose every attempt fails (MongoDB down, say) turns unready.
        """
        return self.loop.ready()

    def run(self) -> None:
        """Catch up, then consume until :meth:`stop`; failures are logged and retried."""
        self.loop.run(self._serve, on_failure=self._failed, close=self._close)

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
        log = _log.bind(read_model=self.read_model, context=self.context, reason=reason)
        log.info("projection.catch_up_started", after=start, head=head)
        started = time.perf_counter()

        def on_batch(position: int, result: ApplyResult) -> None:
            self._progress.raise_low_watermark(self.read_model, self.context, position)
            self._metrics.low_watermark.set(position)
            self._count(result, source="eventstore")
            self._refresh_analytics(force=False)
            self.loop.alive()

        reached = replay(
            self.engine,
            self._reader,
            after=start,
            upto=head,
            targets=lambda: self.versions.targets(self.kind),
            on_poison=self._poison_from_store,
            batch_size=self._catch_up_batch,
            stop=self.loop.stop_requested,
            on_batch=on_batch,
        )
        self._refresh_analytics(force=True)
        elapsed_ms = round((time.perf_counter() - started) * 1000, 1)
        log.info(
            "projection.caught_up", position=reached, events=reached - start, duration_ms=elapsed_ms
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
        while not self.loop.stop_requested():
            self._periodic(consumer)
            if self._batch is None:
                self._batch = self._usable(self._next_messages(consumer))
            idle = not self._batch
            if self._batch:
                self._process(consumer, self._batch)
            self._batch = None
            self._refresh_analytics(force=idle or self.loop.stop_requested())
            self.loop.backoff.reset()
            self.loop.alive()

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
            kind = header(message, "type")
            if kind is not None and kind not in KNOWN_TYPES:
                skipped += 1  # a newer producer's event: skipped (its gap is repaired later)
                continue
            value = message.value() or b""
            try:
                envelope = decoder.decode(value)
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                letters.append(letter_for_message(self.read_model, message, exc, now))
                continue
            envelopes.append(envelope)
            origin[id(envelope)] = message
        if rewound:
            self._broker_lost(consumer, "partition_rewound")

        def on_poison(envelope: Envelope, exc: Exception) -> None:
            letters.append(letter_for_message(self.read_model, origin[id(envelope)], exc, now))

        targets = self.versions.targets(self.kind)
        result = self.engine.apply_isolating(envelopes, targets, on_poison)
        for letter in letters:
            self._dead_letter(letter)
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
        now = dt.datetime.now(dt.UTC)
        self._dead_letter(letter_for_envelope(self.read_model, self.context, envelope, exc, now))

    def _dead_letter(self, letter: DeadLetter) -> None:
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

    def _failed(self, exc: Exception, delay: float) -> None:
        kind = "transient" if is_transient(exc) or isinstance(exc, KafkaException) else "other"
        self._metrics.errors.labels(self.read_model, kind).inc()
        _log.warning(
            "projection.failed",
            read_model=self.read_model,
            kind=kind,
            error=str(exc),
            error_type=type(exc).__name__,
            attempt=self.loop.backoff.failures,
            retry_in_s=round(delay, 2),
            exc_info=kind == "other",
        )

    def _close(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is None:
            return
        try:
            self._commit(consumer)
        finally:
            consumer.close()
