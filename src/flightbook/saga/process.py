"""The saga process: one log follower and a pool of job workers, until told to stop.

SIGTERM/SIGINT set a stop flag; each thread finishes its current unit of work (a
step is one transaction, a job one gateway call plus one transaction) and exits.
SIGKILL at any moment is safe too: progress lives in PostgreSQL only.
"""

from __future__ import annotations

import datetime as dt
import threading
from typing import TYPE_CHECKING

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge, ProcessCollector

from flightbook.runtime.loop import ProcessLoop
from flightbook.saga.follower import LogFollower
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
        apps = store.applications
        steps = SagaSteps(store=store, hold_seconds=hold_seconds, clock=clock)
        self.follower = LogFollower(
            sources=apps,
            targets=apps,
            steps=steps,
            postgres_url=postgres_url,
            on_step=lambda source, note: steps_total.labels(source, note).inc(),
            on_jobs=self._jobs_waiting.release,
            on_conflict=lambda _attempt: conflicts.inc(),
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

    def stop(self) -> None:
        self.loop.stop()
        self._jobs_waiting.release(self._workers)

    def ready(self) -> bool:
        return not self._errors and self.queue.pending() >= 0

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
        def run() -> None:
            try:
                target()
            except BaseException as exc:
                _log.exception("saga.thread_failed", thread=threading.current_thread().name)
                self._errors.append(exc)
                self.loop.stop()

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
