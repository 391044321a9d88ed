"""Follows the three notification logs and stores each step with its tracking record.

One event, one step, one transaction: the saga's reference follower (ADR 0011). The
saga process runs the batched :class:`~flightbook.saga.rounds.RoundFollower` built on
it; tests drive this one to stop the saga between any two steps, and compare the two.

Positions are the tracking records themselves: the follower resumes, per source log,
after the highest position any context recorded for it. Woken by LISTEN/NOTIFY on the
logs' channels, and polls anyway, so a lost notification never stalls it.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import psycopg
import structlog
from eventsourcing.persistence import Tracking
from psycopg import sql

from flightbook.eventstore.applications import retry_conflicts
from flightbook.eventstore.metadata import recording
from flightbook.saga.jobs import ScheduleJob

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from eventsourcing.persistence import Notification

    from flightbook.eventstore.applications import ContextApplication
    from flightbook.saga.steps import SagaSteps

__all__ = ("LogFollower",)

_log = structlog.get_logger()


class LogFollower:
    """Answers every new event of ``sources`` with the saga's step for it.

    Args:
        sources: the applications whose logs are followed.
        targets: every application a step may write to (their tracking tables hold
            the positions).
        steps: the decisions.
        postgres_url: for LISTEN/NOTIFY and reading positions.
        batch_size: notifications read per query.
    """

    def __init__(
        self,
        *,
        sources: Sequence[ContextApplication],
        targets: Sequence[ContextApplication],
        steps: SagaSteps,
        postgres_url: str,
        batch_size: int = 200,
        on_step: Callable[[str, str], None] | None = None,
        on_conflict: Callable[[int], None] | None = None,
        on_jobs: Callable[[int], None] | None = None,
    ) -> None:
        self._sources = list(sources)
        self._targets = list(targets)
        self._steps = steps
        self._url = postgres_url
        self._batch_size = batch_size
        self._positions: dict[str, int] = {}
        self._on_step = on_step or (lambda _source, _note: None)
        self._on_conflict = on_conflict
        self._on_jobs = on_jobs or (lambda _count: None)

    def positions(self) -> dict[str, int]:
        """The last position answered, per source application name (from the tracking records)."""
        return {
            source.name: max(target.tracked_position(source.name) for target in self._targets)
            for source in self._sources
        }

    def answered(self) -> dict[str, int]:
        """The last position answered per source log, as this follower knows it now.

        The rounds follower does not always move a log's tracking record for its own
        events (ADR 0020), so this, not :meth:`positions`, is what its lag is measured
        from; before the first pass it is the tracking records.
        """
        known = dict(self._positions)
        return known or self.positions()

    def heads(self) -> dict[str, int]:
        """The newest position of each source log."""
        return {s.name: s.recorder.max_notification_id() or 0 for s in self._sources}

    def run_once(self) -> int:
        """Answer every notification available now; return how many were read."""
        if not self._positions:
            self._positions = self.positions()
        handled = 0
        for source in self._sources:
            while True:
                after = self._positions[source.name]
                batch = source.recorder.select_notifications(
                    start=after + 1, limit=self._batch_size
                )
                for notification in batch:
                    self._answer(source, notification)
                    self._positions[source.name] = notification.id
                handled += len(batch)
                if len(batch) < self._batch_size:
                    break
        return handled

    def run(
        self, should_stop: Callable[[], bool], poll_seconds: float, *, linger_seconds: float = 0.0
    ) -> None:
        """Follow the logs until ``should_stop()``; LISTEN wakes it early.

        Woken by a notification, it waits ``linger_seconds`` for the events close behind
        before it reads: under a moderate load a round then answers several, not one (the
        ordering and the exactly-once of each step do not depend on it).
        """
        channels = [s.recorder.channel_name for s in self._sources]  # type: ignore[attr-defined]
        # (re)started, maybe after a failure whose commit is unknown: the tracking records say
        # what was answered, so read them again (and LISTEN afresh, then poll once)
        self._positions = {}
        with psycopg.connect(self._url, autocommit=True) as listener:
            for channel in channels:
                listener.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
            while not should_stop():
                self.run_once()
                # A notification that came meanwhile is waiting on this connection, so this
                # returns at once; looking again without one cost a round of queries.
                woken = False
                for _ in listener.notifies(timeout=poll_seconds, stop_after=1):
                    woken = True
                if woken and linger_seconds:
                    time.sleep(linger_seconds)
                    for _ in listener.notifies(timeout=0):  # those that came meanwhile
                        pass

    def _answer(self, source: ContextApplication, notification: Notification) -> None:
        event, meta = source.metadata_mapper.decode(notification)
        started = time.perf_counter()

        def attempt() -> str | None:
            step = self._steps.decide(event, meta.correlation_id)
            if step is None:
                return None
            with recording(
                actor="saga", correlation_id=meta.correlation_id, causation_id=meta.event_id
            ):
                step.target.record(
                    *step.aggregates,
                    tracking=Tracking(source.name, notification.id),
                    rows=step.rows,
                )
            scheduled = sum(1 for row in step.rows if isinstance(row, ScheduleJob))
            if scheduled:
                self._on_jobs(scheduled)  # committed: wake job workers now, not at their poll
            return step.note

        note = retry_conflicts(attempt, on_retry=self._on_conflict)
        if note is None:
            return
        self._on_step(source.name, note)
        _log.info(
            "saga.step",
            source=source.name,
            position=notification.id,
            event_type=type(event).__qualname__,
            aggregate_id=str(notification.originator_id),
            correlation_id=meta.correlation_id,
            outcome=note,
            duration_ms=round((time.perf_counter() - started) * 1000, 2),
        )
