"""The saga process: one log follower and a pool of job workers, until told to stop.

SIGTERM/SIGINT set a stop flag; each thread finishes its current unit of work (a
step is one transaction, a job one gateway call plus one transaction) and exits.
SIGKILL at any moment is safe too: progress lives in PostgreSQL only. A PostgreSQL outage
is ridden out in each thread (not ready meanwhile); it never ends the process (ADR 0018).
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from typing import TYPE_CHECKING

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge, ProcessCollector

from flightbook.runtime.loop import Backoff, ProcessLoop
from flightbook.runtime.outages import unavailable_server
from flightbook.saga.rounds import RoundFollower
from flightbook.saga.runner import JobRunner
from flightbook.saga.steps import SagaSteps

if TYPE_CHECKING:
    from collections.abc import Callable

    from flightbook.eventstore.applications import EventStore
    from flightbook.eventstore.pii import PersonalDataVault
    from flightbook.payments.gateway import PaymentGateway
    from flightbook.saga.jobs import JobQueue

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
        # One permit per committed step that scheduled jobs: it wakes one idle worker, not
        # all of them (eight workers each claiming for one new job was eight UPDATEs).
        self._jobs_waiting = threading.Semaphore(0)
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
            on_jobs=lambda due: self._jobs_waiting.release(min(due, self._workers)),
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
        self.loop = ProcessLoop("saga")
        self._errors: list[BaseException] = []
        self._away_at = -_AWAY_SECONDS  # when a thread last met a server outage (monotonic)

    def stop(self) -> None:
        self.loop.stop()
        self._jobs_waiting.release(self._workers)

    def ready(self) -> bool:
        """No thread died, none met an outage in the last seconds, and PostgreSQL answers."""
        recently_away = time.monotonic() - self._away_at < _AWAY_SECONDS
        return not self._errors and not recently_away and self.queue.pending() >= 0

    def run(self) -> None:
        """Run until :meth:`stop`; re-raise the first error a thread died of."""
        threads = [threading.Thread(target=self._guard(self._follow), name="saga-follower")]
        threads += [
            threading.Thread(target=self._guard(self._work), name=f"saga-worker-{n}")
            for n in range(self._workers)
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
        self.follower.run(self.loop.stop_requested, self._poll)

    def _work(self) -> None:
        while not self.loop.stop_requested():
            if self.runner.run_due(1) == 0:
                # woken at once when the follower schedules a job; polls for due timers
                self._jobs_waiting.acquire(timeout=self._poll)

    def _observe(self) -> None:
        try:
            heads, done = self.follower.heads(), self.follower.positions()
            for source, head in heads.items():
                self._lag.labels(source).set(max(0, head - done.get(source, 0)))
            self._pending.set(self.queue.pending())
        except Exception:
            _log.warning("saga.metrics_failed")
