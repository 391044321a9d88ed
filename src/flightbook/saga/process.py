"""The saga process: the round follower and the job dispatcher with its pool, until stopped.

The dispatcher claims due jobs in batches (at most as many as the pool has free workers,
and only when woken by a round that scheduled due jobs, by a finished job, or at its
poll), lets the pool do their outside work (the gateway calls) concurrently, and stores
the outcomes of whatever finished meanwhile together, in one transaction.

SIGTERM/SIGINT set a stop flag; each thread finishes its current unit of work (a
round is one transaction; the dispatcher stores the jobs already under way) and exits.
SIGKILL at any moment is safe too: progress lives in PostgreSQL only. A PostgreSQL outage
is ridden out in each thread (not ready meanwhile); it never ends the process (ADR 0018).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import math
import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import structlog
from eventsourcing.persistence import IntegrityError
from prometheus_client import CollectorRegistry, Counter, Gauge, ProcessCollector

from flightbook.eventstore.batch import session
from flightbook.runtime.loop import Backoff, ProcessLoop
from flightbook.runtime.outages import unavailable_server
from flightbook.saga.rounds import RoundFollower
from flightbook.saga.runner import JobDone, JobRunner, Loaded, Prefetched
from flightbook.saga.steps import SagaSteps

if TYPE_CHECKING:
    from collections.abc import Callable

    from flightbook.eventstore.applications import EventStore
    from flightbook.eventstore.pii import PersonalDataVault
    from flightbook.payments.gateway import PaymentGateway
    from flightbook.saga.jobs import Job, JobQueue

__all__ = ("SagaProcess", "utc_now")

_log = structlog.get_logger()
_AWAY_SECONDS = 2.0
"""Not ready for this long after a thread last met a server outage."""


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class SagaProcess:
    """Everything the saga runs, wired together (built by ``flightbook.bootstrap``)."""

    def __init__(
        self,
        *,
        store: EventStore,
        gateway: PaymentGateway,
        vault: PersonalDataVault,
        queue: JobQueue,
        postgres_url: str,
        hold_seconds: float,
        workers: int,
        poll_seconds: float,
        linger_seconds: float = 0.0,
        clock: Callable[[], dt.datetime] = utc_now,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.registry = registry or CollectorRegistry()
        ProcessCollector(registry=self.registry)
        steps_total = Counter(
            "flightbook_saga_steps_total",
            "Saga steps stored",
            ["source", "outcome"],
            registry=self.registry,
        )
        jobs_total = Counter(
            "flightbook_saga_jobs_total",
            "Saga jobs run",
            ["kind", "outcome"],
            registry=self.registry,
        )
        conflicts = Counter(
            "flightbook_saga_conflict_retries_total",
            "Steps and jobs run again because another writer changed the aggregate first",
            registry=self.registry,
        )
        self._lag = Gauge(
            "flightbook_saga_lag_positions",
            "Positions of each log not yet answered",
            ["source"],
            registry=self.registry,
        )
        self._pending = Gauge(
            "flightbook_saga_jobs_pending", "Jobs waiting", registry=self.registry
        )
        # The dispatcher waits on _wake: a round scheduled jobs due now (_jobs_due: claim
        # them), a job finished (store it), or the process stops.
        self._wake = threading.Event()
        self._jobs_due = threading.Event()
        steps = SagaSteps(store=store, hold_seconds=hold_seconds, clock=clock)
        rounds = Counter(
            "flightbook_saga_rounds_total", "Rounds of the follower stored", registry=self.registry
        )
        self.follower = RoundFollower(
            store=store,
            steps=steps,
            postgres_url=postgres_url,
            clock=clock,
            on_step=lambda source, note: steps_total.labels(source, note).inc(),
            on_jobs=lambda _due: self._jobs_waiting(),
            on_conflict=lambda _attempt: conflicts.inc(),
            on_round=lambda _read, _written: rounds.inc(),
        )
        self.queue = queue
        self.runner = JobRunner(
            queue=self.queue,
            store=store,
            gateway=gateway,
            vault=vault,
            clock=clock,
            on_job=lambda kind, outcome: jobs_total.labels(kind, outcome).inc(),
            on_conflict=lambda _attempt: conflicts.inc(),
        )
        self._workers = workers
        self._poll = poll_seconds
        self._linger = linger_seconds
        self.loop = ProcessLoop("saga")
        self._errors: list[BaseException] = []
        self._away_at = -_AWAY_SECONDS  # when a thread last met a server outage (monotonic)

    def _jobs_waiting(self) -> None:
        self._jobs_due.set()
        self._wake.set()

    def stop(self) -> None:
        self.loop.stop()
        self._wake.set()

    def ready(self) -> bool:
        """No thread died, none met an outage in the last seconds, and PostgreSQL answers."""
        recently_away = time.monotonic() - self._away_at < _AWAY_SECONDS
        return not self._errors and not recently_away and self.queue.pending() >= 0

    def run(self) -> None:
        """Run until :meth:`stop`; re-raise the first error a thread died of."""
        threads = [
            threading.Thread(target=self._guard(self._follow), name="saga-follower"),
            threading.Thread(target=self._guard(self._dispatch), name="saga-jobs"),
        ]
        for thread in threads:
            thread.start()
        try:
            while not self.loop.wait(1.0):
                self._observe()
        finally:
            self.loop.stop()
            for thread in threads:
                thread.join()
        if self._errors:
            raise self._errors[0]

    def _guard(self, target: Callable[[], None]) -> Callable[[], None]:
        """Run ``target`` in its thread; ride out a server outage, stop the process on a bug.

        An error that says PostgreSQL (or the gateway's database) is away is waited out with
        capped backoff and ``target`` is entered again (a new LISTEN, positions read again
        from the tracking records): what was committed before is not repeated. Any other
        error stops the process, which the supervisor restarts.
        """

        def run() -> None:
            backoff = Backoff(cap=5.0)
            while not self.loop.stop_requested():
                entered = time.monotonic()
                try:
                    target()
                    return
                except Exception as exc:
                    server = unavailable_server(exc)
                    if server is None:
                        _log.exception("saga.thread_failed", thread=threading.current_thread().name)
                        self._errors.append(exc)
                        self.loop.stop()
                        return
                    self._away_at = time.monotonic()
                    if self._away_at - entered > _AWAY_SECONDS:
                        backoff.reset()  # it worked for a while: this is a new outage
                    delay = backoff.next_delay()
                    _log.warning(
                        "saga.server_unavailable",
                        thread=threading.current_thread().name,
                        server=server,
                        error=type(exc).__name__,
                        retry_in_s=round(delay, 2),
                    )
                    self.loop.wait(delay)

        return run

    def _follow(self) -> None:
        self.follower.run(self.loop.stop_requested, self._poll, linger_seconds=self._linger)

    def _dispatch(self) -> None:
        """Claim due jobs for free workers, store the outcomes of finished ones together."""
        finished: queue.SimpleQueue[JobDone | BaseException] = queue.SimpleQueue()
        in_flight = 0
        more = True  # the last claim filled every free worker: there may be more due
        claimed_at = -math.inf
        woken = False  # the last wait ended because of new work (not a poll)

        def work(job: Job, loaded: Loaded | None) -> None:
            try:
                finished.put(self.runner.prepare(job, loaded))
            except BaseException as exc:  # handed to the dispatcher, which decides
                finished.put(exc)
            self._wake.set()

        with ThreadPoolExecutor(self._workers, thread_name_prefix="saga-worker") as pool:
            try:
                while not self.loop.stop_requested():
                    if woken and self._linger:
                        # a job finished or came due: let the ones close behind it join
                        self.loop.wait(self._linger)
                    woken = False
                    self._wake.clear()
                    done, errors = _drain(finished)
                    in_flight -= len(done) + len(errors)
                    if errors:
                        self.runner.store(done)
                        raise errors[0]
                    free = self._workers - in_flight
                    due = self._jobs_due.is_set()
                    polled = time.monotonic() - claimed_at >= self._poll
                    claiming = free > 0 and (due or more or polled)
                    if claiming:
                        self._jobs_due.clear()
                        claimed_at = time.monotonic()
                    jobs, loaded = self._store_and_claim(done, free if claiming else 0)
                    if claiming:
                        more = len(jobs) == free
                    for job in jobs:
                        pool.submit(work, job, loaded.get(job) if loaded else None)
                    in_flight += len(jobs)
                    if not done and not (more and in_flight < self._workers):
                        # woken at once by a round's due jobs or a finished job; else polls
                        woken = self._wake.wait(self._poll)
            finally:
                # stopping, or a server away: finish what is under way and store it; what
                # cannot be stored runs again when its lease ends (the gateway's
                # idempotency keys make the repeat harmless)
                pool.shutdown(wait=True)
                done, _errors = _drain(finished)
                if done:
                    with contextlib.suppress(Exception):
                        self.runner.store(done)

    def _store_and_claim(
        self, done: list[JobDone], limit: int
    ) -> tuple[list[Job], Prefetched | None]:
        """Store what finished, claim up to ``limit`` due jobs, read what they need: one commit.

        Outcomes refused (another writer changed an aggregate first) are stored job by job
        on fresh state instead, and nothing is claimed this time.
        """
        if not done and limit == 0:
            return [], None
        try:
            with session(self.runner.store_applications) as conn:
                if done:
                    self.runner.write(done, conn)
                jobs = (
                    self.runner.queue.claim(limit, self.runner.clock(), conn=conn) if limit else []
                )
                loaded = self.runner.prefetch(jobs, conn=conn) if jobs else None
        except IntegrityError:
            self.runner.run_again(done)
            return [], None
        for each in done:
            self.runner.finished(each)
        return jobs, loaded

    def _observe(self) -> None:
        try:
            heads, done = self.follower.heads(), self.follower.answered()
            for source, head in heads.items():
                self._lag.labels(source).set(max(0, head - done.get(source, 0)))
            self._pending.set(self.queue.pending())
        except Exception:
            _log.warning("saga.metrics_failed")


def _drain(
    finished: queue.SimpleQueue[JobDone | BaseException],
) -> tuple[list[JobDone], list[BaseException]]:
    """Every finished job waiting now, and the errors workers met."""
    done: list[JobDone] = []
    errors: list[BaseException] = []
    while True:
        try:
            item = finished.get_nowait()
        except queue.Empty:
            return done, errors
        (errors if isinstance(item, BaseException) else done).append(item)  # type: ignore[arg-type]
