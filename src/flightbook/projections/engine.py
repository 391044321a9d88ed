"""The projection engine: apply a batch of envelopes to the read models, idempotently and in order.

For one worker kind (bookings or flights) and one batch:

1. Let the kind absorb the envelopes that belong to no document (a data subject's
   erasure: the bookings kind drops the customer's cached keys; counted as applied and
   marked like any other), then group the rest by aggregate, in version order.
2. For every version of the document read model being written (the active one, and the
   one a rebuild is building), read the current documents, fold each aggregate's
   envelopes into its document with the pure projector, and write it back guarded by
   the ``_v`` it was read at. The guard makes every apply idempotent and ordered:
   ``aggregate_version <= _v`` is a duplicate (skipped, counted), ``== _v + 1`` is applied,
   ``> _v + 1`` is a gap (a lost or reordered message) that is *repaired* by reading the
   aggregate's missing events from the event store. A guard that no longer holds (another
   worker wrote first) makes the aggregate be read and folded again.
3. Derive from the documents what the other read models hold: the Redis hashes (written
   by a Lua guard), search-cache invalidations, and the analytics, recomputed from the
   documents (never incremented), so that redelivery cannot count twice. Analytics that
   depend on one document only (``load_factor``) are written at once; those that add up
   many documents (a day's ``sales_daily`` and ``funnel_daily``) only have their keys
   marked stale here, and :meth:`Engine.refresh_analytics` recomputes the stale keys
   later, once for many batches (ADR 0014).
4. Write the ``applied_events`` markers and the checkpoint, after everything above: a
   stale mark is stored before the events that caused it count as applied, so a kill
   cannot lose it.

The same code serves the Kafka loop, the catch-up from the event store and the rebuild
(:func:`replay`); they differ only in :class:`Targets`.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import psycopg
import psycopg_pool
import pymongo.errors
import redis.exceptions

from flightbook.contracts.readmodels import (
    ANALYTICS_KEYS,
    INDEXES,
    collection,
    redis_version_prefix,
)
from flightbook.projections.ports import BatchProgress, GuardedWrite, HashWrite
from flightbook.projections.projectors import (
    ANALYTICS_BOOKING_FIELDS,
    ProjectionError,
    funnel_daily_documents,
    load_factor_documents,
    sales_daily_documents,
    skip_private,
)

if TYPE_CHECKING:
    import uuid
    from collections.abc import Callable, Sequence

    from flightbook.contracts.envelope import Envelope
    from flightbook.projections.history import EventStoreReader, HistorySource, StoredItem
    from flightbook.projections.kinds import Kind
    from flightbook.projections.ports import DocumentStore, HashStore, ProgressStore
    from flightbook.projections.projectors import Document

__all__ = (
    "ApplyResult",
    "ConflictError",
    "Engine",
    "RepairError",
    "Targets",
    "is_transient",
    "recompute_analytics",
    "replay",
)

_FOLD_ATTEMPTS = 10


class RepairError(ProjectionError):
    """The event store does not have the events a gap needs (the message is not from it)."""


class ConflictError(RuntimeError):
    """Other writers kept changing the same documents; the batch is tried again."""


def is_transient(exc: BaseException) -> bool:
    """A failure to wait out and retry (a server unreachable), not a poison message."""
    return isinstance(
        exc,
        (
            pymongo.errors.ConnectionFailure,
            redis.exceptions.ConnectionError,
            redis.exceptions.TimeoutError,
            psycopg.OperationalError,
            psycopg_pool.PoolTimeout,
            ConflictError,
        ),
    )


@dataclass(frozen=True)
class Targets:
    """Which versions one apply writes.

    ``documents[0]`` is the version the derived read models (Redis, analytics) are
    computed from. ``markers`` is False for a rebuild, whose progress is not the live one.
    """

    documents: tuple[int, ...]
    redis: tuple[int, ...] = ()
    analytics: tuple[int, ...] = ()
    markers: bool = True


@dataclass
class ApplyResult:
    """What one apply did (counted on ``documents[0]``)."""

    count: int = 0
    """Envelopes given."""
    applied: int = 0
    """Aggregate versions applied (from the messages and from the event store)."""
    duplicates: int = 0
    """Envelopes skipped because their version was already applied."""
    repaired: int = 0
    """Aggregate versions read from the event store to fill gaps."""
    first_position: int | None = None
    last_position: int | None = None
    correlation_ids: set[str] = field(default_factory=set)
    positions: set[int] = field(default_factory=set)

    def add(self, other: ApplyResult) -> None:
        self.count += other.count
        self.applied += other.applied
        self.duplicates += other.duplicates
        self.repaired += other.repaired
        for position in (other.first_position, other.last_position):
            if position is not None:
                self._see(position)
        self.correlation_ids |= other.correlation_ids
        self.positions |= other.positions

    def _see(self, position: int) -> None:
        if self.first_position is None or position < self.first_position:
            self.first_position = position
        if self.last_position is None or position > self.last_position:
            self.last_position = position


@dataclass
class _Folded:
    before: Document | None
    after: Document | None
    applied: int = 0
    duplicates: int = 0
    repaired: int = 0
    positions: list[int] = field(default_factory=list)
    gap_at: int | None = None


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Engine:
    """Applies envelopes of one context to the read models of one worker kind.

    Args:
        kind: The worker kind (bookings or flights).
        documents: MongoDB (or the in-memory fake).
        hashes: Redis (or the fake).
        history: The event store, to repair gaps.
        progress: Markers and checkpoints (None: not written, as in ``verify``).
        redis_prefix: The deployment's Redis key prefix.
    """

    def __init__(
        self,
        kind: Kind,
        *,
        documents: DocumentStore,
        hashes: HashStore,
        history: HistorySource,
        progress: ProgressStore | None,
        redis_prefix: str,
        clock: Callable[[], dt.datetime] = _now,
    ) -> None:
        self.kind = kind
        self._documents = documents
        self._hashes = hashes
        self._history = history
        self._progress = progress
        self._redis_prefix = redis_prefix
        self._clock = clock

    # -- applying ---------------------------------------------------------------------------

    def apply(self, envelopes: Sequence[Envelope], targets: Targets) -> ApplyResult:
        """Apply a batch; raises on a poison envelope (see :meth:`apply_isolating`)."""
        result = ApplyResult(count=len(envelopes))
        for envelope in envelopes:
            if envelope.context != self.kind.context:
                raise ProjectionError(
                    f"a {envelope.context} event cannot go to the {self.kind.read_model} read model"
                )
            result._see(envelope.position)
            result.positions.add(envelope.position)
            if envelope.correlation_id:
                result.correlation_ids.add(envelope.correlation_id)
        if not targets.documents:
            return result
        kept: list[Envelope] = []
        for envelope in sorted(envelopes, key=lambda e: e.position):
            if self.kind.absorb(envelope):
                result.applied += 1  # applied without a document (its marker follows)
            else:
                kept.append(envelope)
        groups: dict[str, list[Envelope]] = defaultdict(list)
        for envelope in sorted(kept, key=lambda e: (e.aggregate_version, e.position)):
            groups[str(envelope.aggregate_id)].append(envelope)

        source: dict[str, Document] = {}
        for index, version in enumerate(targets.documents if groups else ()):
            name = collection(self.kind.collection, version)
            self._documents.ensure_indexes(name, INDEXES[self.kind.collection])
            folded = self._fold(name, groups)
            finals = {i: f.after for i, f in folded.items() if f.after is not None}
            if index == 0:
                source = finals
                for item in folded.values():
                    result.applied += item.applied
                    result.duplicates += item.duplicates
                    result.repaired += item.repaired
                    result.positions.update(item.positions)
        docs = list(source.values())
        self._derive(docs, targets)
        if targets.markers and self._progress is not None and result.positions:
            at = self._clock()
            read_model, context = self.kind.read_model, self.kind.context
            self._progress.mark_applied(read_model, context, result.positions, at)
            self._progress.record_batch(
                read_model,
                context,
                BatchProgress(max(result.positions), result.applied, result.duplicates, at),
            )
        return result

    def apply_isolating(
        self,
        envelopes: Sequence[Envelope],
        targets: Targets,
        on_poison: Callable[[Envelope, Exception], None],
    ) -> ApplyResult:
        """Apply a batch, isolating poison envelopes.

        If the batch fails for a reason other than a server, the envelopes are applied one
        by one and each one that still fails goes to ``on_poison`` (the dead letters).
        """
        try:
            return self.apply(envelopes, targets)
        except Exception as exc:
            if is_transient(exc):
                raise
            if len(envelopes) == 1:
                on_poison(envelopes[0], exc)
                return ApplyResult(count=1)
        total = ApplyResult()
        for envelope in sorted(envelopes, key=lambda e: e.position):
            try:
                total.add(self.apply([envelope], targets))
            except Exception as exc:
                if is_transient(exc):
                    raise
                on_poison(envelope, exc)
                total.count += 1
        return total

    # -- internals --------------------------------------------------------------------------

    def _fold(self, name: str, groups: dict[str, list[Envelope]]) -> dict[str, _Folded]:
        pending = set(groups)
        done: dict[str, _Folded] = {}
        for _ in range(_FOLD_ATTEMPTS):
            current = self._documents.get_many(name, pending)
            planned = {i: self._fold_one(current.get(i), groups[i]) for i in sorted(pending)}
            gaps = {
                groups[i][0].aggregate_id: (
                    f.after["_v"] if f.after else 0,
                    groups[i][-1].aggregate_version,
                )
                for i, f in planned.items()
                if f.gap_at is not None
            }
            if gaps:
                self._repair(planned, gaps)
            writes = [
                GuardedWrite(i, f.before["_v"] if f.before else None, f.after)
                for i, f in planned.items()
                if f.after is not None and f.after is not f.before
            ]
            failed = self._documents.write_guarded(name, writes)
            for i, folded in planned.items():
                if i not in failed:
                    done[i] = folded
            pending = failed
            if not pending:
                return done
        raise ConflictError(f"{name}: {len(pending)} documents kept changing under this worker")

    def _fold_one(self, doc: Document | None, envelopes: list[Envelope]) -> _Folded:
        folded = _Folded(before=doc, after=doc)
        for index, envelope in enumerate(envelopes):
            have = folded.after["_v"] if folded.after is not None else 0
            if envelope.aggregate_version <= have:
                folded.duplicates += 1
            elif envelope.aggregate_version == have + 1:
                folded.after = self.kind.evolve(folded.after, envelope)
                folded.applied += 1
                folded.positions.append(envelope.position)
            else:
                folded.gap_at = index
                break
        return folded

    def _repair(self, planned: dict[str, _Folded], gaps: dict[uuid.UUID, tuple[int, int]]) -> None:
        histories = self._history.histories(self.kind.context, gaps)
        for aggregate_id, (after, upto) in gaps.items():
            folded = planned[str(aggregate_id)]
            expected = after + 1
            for item in histories.get(aggregate_id, []):
                if item.version != expected:
                    break
                folded.after = self._evolve_stored(folded.after, item)
                folded.applied += 1
                folded.repaired += 1
                folded.positions.append(item.position)
                expected += 1
            if expected <= upto:
                raise RepairError(
                    f"gap in {self.kind.context} aggregate {aggregate_id}: the read model has "
                    f"version {after}, the message is version {upto}, and the event store has "
                    f"no version {expected}"
                )

    def _evolve_stored(self, doc: Document | None, item: StoredItem) -> Document:
        if item.envelope is not None:
            return self.kind.evolve(doc, item.envelope)
        if doc is None:
            raise RepairError(f"aggregate {item.aggregate_id} starts with a private event")
        return skip_private(doc, version=item.version, position=item.position)

    def _derive(self, docs: Sequence[Document], targets: Targets) -> None:
        if not docs:
            return
        writes: list[HashWrite] = []
        doomed: list[str] = []
        for version in targets.redis:
            prefix = redis_version_prefix(self._redis_prefix, version)
            for doc in docs:
                announce = tuple(
                    (self._redis_prefix + channel, message)
                    for channel, message in self.kind.announcements(doc)
                )
                writes += [
                    HashWrite(prefix + key, fields, announce)
                    for key, fields in self.kind.hashes(doc)
                ]
                doomed += [prefix + key for key in self.kind.invalidations(doc)]
        self._hashes.put_guarded(writes)
        self._hashes.delete(sorted(set(doomed)))
        if not targets.analytics:
            return
        self._write_analytics(self.kind.analytics(docs), targets)
        stale = self.kind.stale_keys(docs)
        if not stale:
            return
        if self._progress is None:  # nobody to remember them for later: now
            source = targets.documents[0]
            self._write_analytics(self.kind.recompute(stale, self._documents, source), targets)
        else:
            self._progress.mark_stale(self.kind.read_model, stale)

    def _write_analytics(self, computed: dict[str, list[Document]], targets: Targets) -> None:
        for version in targets.analytics:
            for name, rows in computed.items():
                target = collection(name, version)
                self._documents.ensure_indexes(target, INDEXES[name])
                self._documents.put_many(target, rows, ANALYTICS_KEYS[name])

    def refresh_analytics(self, targets: Targets) -> int:
        """Recompute the analytics of every stale key, then forget the keys.

        The keys are read before the documents, and each is forgotten only if it was not
        marked again meanwhile, so a change that lands during the recompute is recomputed
        next time, never lost.

        Returns:
            How many keys were recomputed.
        """
        if self._progress is None or not targets.analytics or not targets.documents:
            return 0
        seen = self._progress.stale(self.kind.read_model)
        if not seen:
            return 0
        source = targets.documents[0]
        self._write_analytics(self.kind.recompute(seen, self._documents, source), targets)
        self._progress.clear_stale(self.kind.read_model, seen)
        return len(seen)


def replay(
    engine: Engine,
    reader: EventStoreReader,
    *,
    after: int,
    upto: int,
    targets: Callable[[], Targets],
    on_poison: Callable[[Envelope, Exception], None],
    batch_size: int = 1000,
    stop: Callable[[], bool] = lambda: False,
    on_batch: Callable[[int, ApplyResult], None] | None = None,
) -> int:
    """Apply the context's log from ``after + 1`` to ``upto`` from the event store, in batches.

    The same apply as the Kafka path (catch-up and rebuild). ``targets`` is asked before
    every batch, so a rebuild that starts meanwhile is written too.

    Returns:
        The last position replayed (``after`` if nothing was).
    """
    position = after
    while position < upto and not stop():
        items = reader.read(engine.kind.context, after=position, limit=batch_size, upto=upto)
        if not items:
            break
        envelopes = [item.envelope for item in items if item.envelope is not None]
        result = engine.apply_isolating(envelopes, targets(), on_poison)
        position = items[-1].position
        if on_batch is not None:
            result.first_position = items[0].position
            result.last_position = position
            result.count = len(items)
            on_batch(position, result)
    return position


def recompute_analytics(
    documents: DocumentStore,
    *,
    bookings_version: int,
    flights_version: int,
    target_version: int,
    chunk: int = 1000,
) -> int:
    """Compute every analytics document from the bookings and flights documents.

    Returns:
        How many analytics documents were written.
    """
    bookings = list(
        documents.scan(collection("bookings", bookings_version), ANALYTICS_BOOKING_FIELDS)
    )
    computed: dict[str, list[Document]] = {
        "sales_daily": sales_daily_documents(bookings),
        "funnel_daily": funnel_daily_documents(bookings),
        "load_factor": [
            row
            for flight in documents.scan(collection("flights", flights_version))
            for row in load_factor_documents(flight)
        ],
    }
    written = 0
    for name, rows in computed.items():
        target = collection(name, target_version)
        documents.ensure_indexes(target, INDEXES[name])
        for start in range(0, len(rows), chunk):
            documents.put_many(target, rows[start : start + chunk], ANALYTICS_KEYS[name])
        written += len(rows)
    return written
