"""The batched follower: the saga answers its logs in rounds, one transaction per round.

Each round (ADR 0020, amending ADR 0011) reads up to ``batch_size`` new notifications of
each of the three logs, brings every aggregate they concern up to date at once (one query
per context, :class:`~flightbook.eventstore.cache.AggregateCache`), and answers them in
log order with the saga's own decisions (:class:`~flightbook.saga.steps.SagaSteps`), each
reading the state the previous ones left. A decision's own new events are answered at
once in the same round ("folded"): a booking's hold, its ``SeatsHeld`` and the payment
job follow one another in memory. Only a step that needs the outside world stops the
fold: a job row (a gateway call, a hold's deadline) whose outcome enters a later round.

Everything the round decided — events of the three contexts, job rows, the tracking
record of each log's last position read — is stored in ONE transaction
(:class:`~flightbook.eventstore.batch.Batch`). So a crash loses the round whole or keeps
it whole; an aggregate another writer changed first (a customer's cancellation) refuses
the whole round, which is decided again on fresh state.

A round's own events come back in the next rounds' reads; their consequences were already
decided, so they are passed over (by aggregate id and version) without a decision. After
a restart that memory is gone: such an event is decided again, and since every decision
is state-driven (ADR 0011) it finds its work done and stores nothing new.
"""

from __future__ import annotations

import datetime as dt
import random
import time
from collections import deque
from typing import TYPE_CHECKING, Any

import structlog
from eventsourcing.application import AggregateNotFoundError
from eventsourcing.persistence import IntegrityError, Tracking
from eventsourcing.utils import get_topic

from flightbook.domain.booking import Booking
from flightbook.domain.inventory import FlightInventory
from flightbook.eventstore.batch import Batch, read_logs, session
from flightbook.eventstore.cache import AggregateCache
from flightbook.eventstore.metadata import recording
from flightbook.saga.follower import LogFollower
from flightbook.saga.jobs import ScheduleJob

if TYPE_CHECKING:
    from collections.abc import Callable
    from uuid import UUID

    from eventsourcing.persistence import Notification

    from flightbook.eventstore.applications import ContextApplication, EventStore
    from flightbook.saga.steps import SagaSteps

__all__ = ("RoundFollower",)

_log = structlog.get_logger()
_CONFLICT_ATTEMPTS = 30
"""Rounds refused by a concurrent writer before the follower gives up (and the process
restarts it): each attempt reads fresh state, so only a bug keeps conflicting."""
_MAX_FOLD = 64
"""Steps one notification may lead to within a round; more means decisions that loop."""


class RoundFollower(LogFollower):
    """Answers the three logs in rounds (see the module docstring).

    Args:
        store: the three applications (sources and targets both).
        steps: the decisions.
        postgres_url: for LISTEN/NOTIFY.
        batch_size: notifications read per log and round.
        cache_size: aggregates kept per context between rounds.
        clock: the current UTC time (to tell which new jobs are due at once).
        on_round: called after each stored round with (notifications read, events written).
    """

    def __init__(
        self,
        *,
        store: EventStore,
        steps: SagaSteps,
        postgres_url: str,
        batch_size: int = 200,
        cache_size: int = 20_000,
        clock: Callable[[], dt.datetime] | None = None,
        on_step: Callable[[str, str], None] | None = None,
        on_conflict: Callable[[int], None] | None = None,
        on_jobs: Callable[[int], None] | None = None,
        on_round: Callable[[int, int], None] | None = None,
    ) -> None:
        apps = store.applications
        super().__init__(
            sources=apps,
            targets=apps,
            steps=steps,
            postgres_url=postgres_url,
            batch_size=batch_size,
            on_step=on_step,
            on_conflict=on_conflict,
            on_jobs=on_jobs,
        )
        self._store = store
        self._clock = clock or (lambda: dt.datetime.now(dt.UTC))
        self._on_round = on_round or (lambda _read, _written: None)
        self.bookings = AggregateCache(store.bookings, maxsize=cache_size)
        self.flights = AggregateCache(store.inventory, maxsize=cache_size)
        self._own: set[tuple[UUID, int]] = set()
        """(aggregate id, version) of events this follower stored and already answered."""
        self._topics = frozenset(get_topic(kind) for kind in steps.answers())
        self._limit = batch_size

    def run_once(self) -> int:
        """Answer every notification available now, round after round; how many were read."""
        if not self._positions:
            self._positions = self.positions()
        handled = 0
        while True:
            read, full = self._round()
            handled += read
            if not full:
                return handled

    # -- one round --------------------------------------------------------------------------

    def _round(self) -> tuple[int, bool]:
        started = time.perf_counter()
        outcome = self._with_conflicts_retried()
        if outcome is None:
            return 0, False
        batches, batch, skipped, steps, due_jobs = outcome
        read = sum(len(notifications) for notifications in batches.values())
        self._own.difference_update(skipped)
        self._own.update(batch.written)
        for name, notifications in batches.items():
            if notifications:
                self._positions[name] = notifications[-1].id
        if due_jobs:
            self._on_jobs(due_jobs)
        self._on_round(read, batch.event_count())
        _log.info(
            "saga.round",
            read=read,
            passed_over=len(skipped),
            steps=steps,
            events_written=batch.event_count(),
            jobs_due=due_jobs,
            duration_ms=round((time.perf_counter() - started) * 1000, 2),
        )
        full = any(len(n) >= self._limit for n in batches.values())
        return read, full

    def _with_conflicts_retried(
        self,
    ) -> tuple[dict[str, list[Notification]], Batch, list[tuple[UUID, int]], int, int] | None:
        """The round, decided again on fresh state while other writers get there first.

        Each conflict halves the next attempt's round (down to one notification per log),
        so a busy aggregate — a customer cancelling while the saga answers — cannot make
        a big round lose the race for ever; the next full round is big again.
        """
        self._limit = self._batch_size
        for attempt in range(1, _CONFLICT_ATTEMPTS + 1):
            try:
                return self._read_decide_store()
            except IntegrityError:
                if attempt == _CONFLICT_ATTEMPTS:
                    raise
                if self._on_conflict is not None:
                    self._on_conflict(attempt)
                self._limit = max(1, self._limit // 2)
                time.sleep(random.uniform(0, min(0.2, 0.005 * 2**attempt)))  # noqa: S311
        raise AssertionError("unreachable")

    def _read_decide_store(
        self,
    ) -> tuple[dict[str, list[Notification]], Batch, list[tuple[UUID, int]], int, int] | None:
        """One round in ONE transaction: read the logs and the aggregates, decide, store.

        Whatever the round changed in memory is forgotten unless its transaction committed:
        the COMMIT itself can fail (the server dies at that moment) after every statement
        of the batch succeeded, and a cache that kept those changes would have the next
        round store a flight's later events over the ones lost with this round.
        """
        state: _RoundState | None = None
        try:
            with session(self._store.applications) as conn:
                batches = read_logs(
                    [(s, self._positions[s.name], self._limit) for s in self._sources], conn
                )
                if not any(batches.values()):
                    return None
                state = _RoundState(self.bookings, self.flights, conn)
                decided = self._decide(batches, state)
        except BaseException:
            # not stored (or not known to be): read what the round touched again next time
            if state is not None:
                state.forget()
            raise
        return (batches, *decided)

    def _decide(
        self, batches: dict[str, list[Notification]], state: _RoundState
    ) -> tuple[Batch, list[tuple[UUID, int]], int, int]:
        """Decide the round and write it in the round's transaction.

        Returns (batch, own events passed over, steps, due jobs).
        """
        skipped: list[tuple[UUID, int]] = []
        work: list[tuple[ContextApplication, Notification, Any, Any]] = []
        others: set[str] = set()  # logs with an event this follower did not store itself
        caches = {
            self._store.bookings.name: self.bookings,
            self._store.inventory.name: self.flights,
        }
        for source in self._sources:
            cache = caches.get(source.name)
            for notification in batches[source.name]:
                key = (notification.originator_id, notification.originator_version)
                if key in self._own:  # decided in an earlier round: what we hold has it
                    skipped.append(key)
                    continue
                others.add(source.name)
                answered = notification.topic in self._topics
                held = cache.version_of(notification.originator_id) if cache else None
                behind = held is not None and notification.originator_version > held
                if not answered and not behind:
                    continue
                event, meta = source.metadata_mapper.decode(notification)
                if cache is not None and behind:
                    # another writer's event (a cancellation, an expiry): what we hold
                    # follows the log itself, without a query
                    cache.apply(event)
                if answered:
                    work.append((source, notification, event, meta))
        state.prefetch(event for _source, _n, event, _meta in work)
        batch = Batch(self._store.applications)
        steps = self._steps.reading(state)
        taken, due_jobs = 0, 0
        for source, notification, event, meta in work:
            counts = self._answer_folding(steps, batch, source, notification, event, meta)
            taken += counts[0]
            due_jobs += counts[1]
        for source in self._sources:
            # A log read only for the round's own earlier events need not move its
            # tracking record now: after a restart they are decided again, state-driven.
            notifications = batches[source.name]
            if notifications and source.name in others:
                batch.track(source, Tracking(source.name, notifications[-1].id))
        batch.commit(state.conn)
        return batch, skipped, taken, due_jobs

    def _answer_folding(
        self,
        steps: SagaSteps,
        batch: Batch,
        source: ContextApplication,
        notification: Notification,
        event: object,
        meta: Any,
    ) -> tuple[int, int]:
        """Answer one notification and fold its consequences; (steps stored, jobs due now)."""
        correlation_id: str = meta.correlation_id
        pending: deque[tuple[object, str]] = deque([(event, meta.event_id)])
        taken = due_jobs = 0
        while pending:
            if taken >= _MAX_FOLD:
                raise RuntimeError(f"saga decisions loop on {notification.originator_id}")
            current, causation_id = pending.popleft()
            step = steps.decide(current, correlation_id)
            if step is None:
                continue
            with recording(actor="saga", correlation_id=correlation_id, causation_id=causation_id):
                produced = batch.collect(step.target, step.aggregates, step.rows)
            taken += 1
            # due now: after the decision (a job it schedules "now" is due at its clock)
            now = self._clock()
            due_jobs += sum(
                1 for row in step.rows if isinstance(row, ScheduleJob) and row.due_at <= now
            )
            pending.extend((new_event, new_meta.event_id) for new_event, new_meta in produced)
            self._on_step(source.name, step.note)
            _log.info(
                "saga.step",
                source=source.name,
                position=notification.id,
                event_type=type(current).__qualname__,
                aggregate_id=str(getattr(current, "originator_id", "")),
                correlation_id=correlation_id,
                outcome=step.note,
                folded=current is not event,
            )
        return taken, due_jobs


class _RoundState:
    """The aggregates one round decides on: each read once, then changed in memory.

    It is the steps' :class:`~flightbook.saga.steps.Loader`. Bookings and flights come from
    the follower's caches, which follow the logs the follower reads (every event of a held
    aggregate passes through :meth:`AggregateCache.apply`); only those not held are read,
    in one query per context. State as of the round's log positions is what a decision
    sees; an event stored after them by another writer refuses the round's write
    (optimistic concurrency), and the round is decided again on fresh state.
    :meth:`forget` drops from the caches whatever the round may have changed.
    """

    def __init__(self, bookings: AggregateCache, flights: AggregateCache, conn: Any) -> None:
        self._caches = (bookings, flights)
        self.conn = conn
        """The round's session: reads and the batch in its one transaction."""
        self._bookings: dict[UUID, Any] = {}
        self._flights: dict[UUID, Any] = {}

    def prefetch(self, events: Any) -> None:
        """Bring every booking and flight the events concern up to date: two queries."""
        booking_ids: set[UUID] = set()
        flight_ids: set[UUID] = set()
        for event in events:
            if isinstance(event, Booking.Event):
                booking_ids.add(event.originator_id)
            elif isinstance(event, FlightInventory.Event):
                flight_ids.add(event.originator_id)
            found = getattr(event, "booking_id", None)
            if found is not None:
                booking_ids.add(found)
        bookings, flights = self._caches
        self._bookings.update(
            bookings.held_or_load(booking_ids - self._bookings.keys(), conn=self.conn)
        )
        flight_ids |= {b.flight_id for b in self._bookings.values() if isinstance(b, Booking)}
        self._flights.update(
            flights.held_or_load(flight_ids - self._flights.keys(), conn=self.conn)
        )

    def booking(self, booking_id: UUID) -> Booking:
        found = self._bookings.get(booking_id)
        if found is None:
            found = self._caches[0].held_or_load([booking_id], conn=self.conn).get(booking_id)
            if found is None:
                raise AggregateNotFoundError(booking_id)
            self._bookings[booking_id] = found
        if not isinstance(found, Booking):
            raise AggregateNotFoundError(booking_id)
        return found

    def flight(self, flight_id: UUID) -> FlightInventory:
        found = self._flights.get(flight_id)
        if found is None:
            found = self._caches[1].held_or_load([flight_id], conn=self.conn).get(flight_id)
            if found is None:
                raise AggregateNotFoundError(flight_id)
            self._flights[flight_id] = found
        if not isinstance(found, FlightInventory):
            raise AggregateNotFoundError(flight_id)
        return found

    def forget(self) -> None:
        bookings, flights = self._caches
        bookings.forget(self._bookings)
        flights.forget(self._flights)
