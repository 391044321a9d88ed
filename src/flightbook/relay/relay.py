"""One relay round: the next page of each log that asked, published, acknowledged, checkpointed.

At-least-once by construction: the checkpoint moves only after the broker acknowledged
every message of the batch, so a crash anywhere before that publishes the batch again
(duplicates, never losses). Ordered per aggregate: notifications are read in position
order, each aggregate's events go to one partition (key = aggregate id), and the
producer is idempotent, so retries inside one batch cannot reorder them.

Gap safety comes from the writer side (DESIGN.md, "Event store"): the library's insert
path takes ``LOCK TABLE ... IN EXCLUSIVE MODE`` before it draws notification ids and
holds it until commit, so positions become visible in commit order and a reader that
has seen position N will never later find a new row below N.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import structlog

from flightbook.contracts.envelope import CONTRACT_VERSION, encoder
from flightbook.eventstore.pools import autocommit

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence

    from confluent_kafka import KafkaError
    from eventsourcing.persistence import Notification
    from psycopg_pool import ConnectionPool

    from flightbook.contracts.envelope import Envelope

__all__ = (
    "BatchResult",
    "Checkpoints",
    "HeldCheckpoints",
    "LogSource",
    "MemoryCheckpoints",
    "NotificationLog",
    "PostgresCheckpoints",
    "Producer",
    "RelayDeliveryError",
    "headers_for",
    "plan_round",
    "relay_round",
)

_log = structlog.get_logger()


class NotificationLog(Protocol):
    """The slice of an eventsourcing ``ApplicationRecorder`` the relay reads."""

    def select_notifications(
        self,
        start: int | None,
        limit: int,
        stop: int | None = None,
        topics: Sequence[str] = (),
        *,
        inclusive_of_start: bool = True,
    ) -> Sequence[Notification]: ...


class Producer(Protocol):
    """The slice of ``confluent_kafka.Producer`` the relay needs."""

    def produce(
        self,
        topic: str,
        value: bytes,
        key: bytes,
        *,
        headers: list[tuple[str, str | bytes | None]],
        on_delivery: Callable[[KafkaError | None, object], None],
    ) -> None: ...

    def poll(self, timeout: float) -> int: ...

    def flush(self, timeout: float) -> int: ...


class Checkpoints(Protocol):
    """Where the relay remembers, per context, the last position it has relayed."""

    def position(self, context: str) -> int:
        """The last relayed position of ``context`` (0 before the first)."""
        ...

    def advance(self, context: str, position: int) -> None:
        """Record ``position`` as relayed; a position at or below the current one is ignored."""
        ...


class RelayDeliveryError(RuntimeError):
    """The broker did not acknowledge every message of a batch; the checkpoint stayed put."""


@dataclass(frozen=True)
class BatchResult:
    """What one round (:func:`relay_round`) did with one context's log."""

    context: str
    count: int = 0
    """Notifications read (public and private); equal to the limit means there may be more."""
    published: int = 0
    """Messages produced and acknowledged."""
    first_position: int | None = None
    last_position: int | None = None
    correlation_ids: int = 0
    """Distinct non-empty correlation ids in the batch."""
    duration_ms: float = 0.0


@dataclass
class _Acks:
    """Delivery reports of one batch (confluent calls back from poll()/flush())."""

    acknowledged: int = 0
    errors: list[KafkaError] = field(default_factory=list)

    def __call__(self, error: KafkaError | None, _message: object) -> None:
        if error is None:
            self.acknowledged += 1
        else:
            self.errors.append(error)


def headers_for(envelope: Envelope) -> list[tuple[str, str | bytes | None]]:
    """The Kafka headers of a message: enough to route or de-duplicate without decoding."""
    return [
        ("event-id", envelope.event_id.encode()),
        ("type", envelope.type.encode()),
        ("position", str(envelope.position).encode()),
        ("correlation-id", envelope.correlation_id.encode()),
        ("contract-version", str(CONTRACT_VERSION).encode()),
    ]


@dataclass(frozen=True)
class LogSource:
    """One context's log as a round reads it: where it is, how it translates, where it goes."""

    context: str
    log: NotificationLog
    translate: Callable[[Notification], Envelope | None]
    topic: str


def plan_round(
    *, notified: Iterable[str], full: Iterable[str], every: Iterable[str], quiet: bool
) -> frozenset[str]:
    """The logs the next round reads.

    Those whose channel notified, and those whose last page was full (more is waiting
    there); after a wait that ended without any notification (``quiet``), every log, so a
    lost NOTIFY delays an event by one poll interval at most. Names that are not one of
    ``every`` (a channel the relay does not know) are dropped.
    """
    known = frozenset(every)
    if quiet:
        return known
    return (frozenset(notified) | frozenset(full)) & known


def relay_round(
    *,
    sources: Sequence[LogSource],
    checkpoints: Checkpoints,
    producer: Producer,
    limit: int = 500,
    timeout: float = 30.0,
) -> list[BatchResult]:
    """Publish the next page of each of ``sources`` after its checkpoint; what each did.

    Every public event becomes one message on its source's topic with key = the aggregate
    id (UUID text, UTF-8). The pages of every source are produced first and then the
    producer is flushed once: the round counts as published only when the broker has
    acknowledged every message of it; then each source's checkpoint advances to its
    page's last position (the caller writes them, one statement per round). Private
    events (``translate`` returns None) advance it without a message.

    Args:
        sources: The logs to read (each context at most once).
        checkpoints: Where the last relayed positions are kept.
        producer: An idempotent Kafka producer.
        limit: Notifications read at most per log.
        timeout: Seconds to wait for the acknowledgements.

    Raises:
        RelayDeliveryError: A message failed or was not acknowledged within ``timeout``;
            no checkpoint moved, and the next round publishes the pages again.
    """
    started = time.perf_counter()
    acks = _Acks()
    deadline = time.monotonic() + timeout
    pages: list[tuple[LogSource, Sequence[Notification], int, int]] = []
    published = 0
    for source in sources:
        after = checkpoints.position(source.context)
        batch = source.log.select_notifications(start=after + 1, limit=limit)
        if not batch:
            pages.append((source, batch, 0, 0))
            continue
        produced, correlation_ids = _produce_page(producer, source, batch, acks, deadline)
        published += produced
        pages.append((source, batch, produced, correlation_ids))
    if published:
        remaining = producer.flush(max(0.0, deadline - time.monotonic()))
        contexts = "+".join(source.context for source, _, produced, _ in pages if produced)
        if acks.errors:
            raise RelayDeliveryError(
                f"{len(acks.errors)} of {published} {contexts} messages failed: {acks.errors[0]}"
            )
        if remaining or acks.acknowledged != published:
            raise RelayDeliveryError(
                f"{published - acks.acknowledged} of {published} {contexts} messages "
                f"not acknowledged within {timeout:.0f}s"
            )
    duration_ms = round((time.perf_counter() - started) * 1000, 2)
    results: list[BatchResult] = []
    for source, batch, produced, correlation_ids in pages:
        if not batch:
            results.append(BatchResult(context=source.context))
            continue
        checkpoints.advance(source.context, batch[-1].id)
        result = BatchResult(
            context=source.context,
            count=len(batch),
            published=produced,
            first_position=batch[0].id,
            last_position=batch[-1].id,
            correlation_ids=correlation_ids,
            duration_ms=duration_ms,
        )
        _log.info(
            "relay.published",
            context=result.context,
            first_position=result.first_position,
            last_position=result.last_position,
            count=result.count,
            published=result.published,
            correlation_ids=result.correlation_ids,
            duration_ms=result.duration_ms,
        )
        results.append(result)
    return results


def _produce_page(
    producer: Producer,
    source: LogSource,
    batch: Sequence[Notification],
    acks: _Acks,
    deadline: float,
) -> tuple[int, int]:
    """Produce the public events of ``batch``; (messages produced, distinct correlation ids)."""
    published = 0
    correlation_ids: set[str] = set()
    translate, topic = source.translate, source.topic
    for notification in batch:
        envelope = translate(notification)
        if envelope is None:
            continue  # private: nothing to publish, but the position still advances
        _produce(
            producer,
            topic,
            value=encoder.encode(envelope),
            key=str(envelope.aggregate_id).encode(),
            headers=headers_for(envelope),
            on_delivery=acks,
            deadline=deadline,
        )
        published += 1
        if envelope.correlation_id:
            correlation_ids.add(envelope.correlation_id)
    return published, len(correlation_ids)


def _produce(
    producer: Producer,
    topic: str,
    *,
    value: bytes,
    key: bytes,
    headers: list[tuple[str, str | bytes | None]],
    on_delivery: Callable[[KafkaError | None, object], None],
    deadline: float,
) -> None:
    while True:
        try:
            producer.produce(topic, value, key, headers=headers, on_delivery=on_delivery)
        except BufferError:  # the local queue is full: let deliveries drain it, then retry
            if time.monotonic() >= deadline:
                raise RelayDeliveryError("the producer's queue stayed full") from None
            producer.poll(0.1)
        else:
            return


class PostgresCheckpoints:
    """Checkpoints in ``relay.checkpoints`` (``migrations/postgres/0004_relay_checkpoints.sql``).

    Args:
        pool: Connections to the event store's database. Owned by the caller.
    """

    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool

    def position(self, context: str) -> int:
        with self._pool.connection() as conn:
            row = conn.execute(
                "SELECT position FROM relay.checkpoints WHERE context = %s", (context,)
            ).fetchone()
        return int(row[0]) if row else 0

    def advance(self, context: str, position: int) -> None:
        self.advance_many({context: position})

    def advance_many(self, positions: dict[str, int]) -> None:
        """Move several contexts' checkpoints forward in one statement."""
        if not positions:
            return
        with autocommit(self._pool) as conn:
            conn.execute(
                "INSERT INTO relay.checkpoints AS c (context, position, updated_at) "
                "SELECT context, position, now() FROM unnest(%s::text[], %s::bigint[]) "
                "AS p(context, position) "
                "ON CONFLICT (context) DO UPDATE "
                "SET position = EXCLUDED.position, updated_at = EXCLUDED.updated_at "
                "WHERE c.position < EXCLUDED.position",
                (list(positions), list(positions.values())),
            )

    def positions(self) -> dict[str, int]:
        """Every context's checkpoint."""
        with self._pool.connection() as conn:
            rows = conn.execute("SELECT context, position FROM relay.checkpoints").fetchall()
        return {str(context): int(position) for context, position in rows}

    def ping(self) -> bool:
        """True if PostgreSQL answers within a couple of seconds."""
        with self._pool.connection(timeout=2.0) as conn:
            conn.execute("SELECT 1")
        return True


class HeldCheckpoints:
    """The checkpoints of a relay that holds the advisory lock: read once, then kept.

    While the lock is held no other relay moves them, so each context's position is read
    from ``stored`` on first use and afterwards known. :meth:`advance` (after a batch was
    acknowledged) moves it in memory; :meth:`flush` writes every moved one in one
    statement, once per round (ADR 0026). A crash between the broker's acknowledgement
    and that write publishes the round again, which the consumers pass over (ADR 0013).
    Make a new one each time the lock is taken again.
    """

    def __init__(self, stored: PostgresCheckpoints | MemoryCheckpoints) -> None:
        self._stored = stored
        self._known: dict[str, int] = {}
        self._moved: dict[str, int] = {}

    def position(self, context: str) -> int:
        if context not in self._known:
            self._known[context] = self._stored.position(context)
        return self._known[context]

    def advance(self, context: str, position: int) -> None:
        self._known[context] = max(position, self._known.get(context, 0))
        self._moved[context] = self._known[context]

    def flush(self) -> None:
        """Write the moved checkpoints in one statement (none moved: no statement)."""
        if not self._moved:
            return
        self._stored.advance_many(self._moved)
        self._moved = {}


class MemoryCheckpoints:
    """Checkpoints in a dict: for tests and for one-off runs."""

    def __init__(self, positions: dict[str, int] | None = None) -> None:
        self._positions = dict(positions or {})

    def position(self, context: str) -> int:
        return self._positions.get(context, 0)

    def advance(self, context: str, position: int) -> None:
        self._positions[context] = max(position, self._positions.get(context, 0))

    def advance_many(self, positions: dict[str, int]) -> None:
        for context, position in positions.items():
            self.advance(context, position)

    def positions(self) -> dict[str, int]:
        return dict(self._positions)
