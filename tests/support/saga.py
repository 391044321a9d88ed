"""A saga wired to real PostgreSQL, driven step by step by the tests (no threads)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from psycopg_pool import ConnectionPool

from flightbook.config.settings import Settings
from flightbook.eventstore.pii import build_vault
from flightbook.payments.budget import TimeoutBudget
from flightbook.payments.resilience import ResilientGateway
from flightbook.payments.simulated import SimulatedGateway
from flightbook.saga.jobs import PostgresJobQueue
from flightbook.saga.process import SagaProcess
from tests.support.writeside import WriteSide


@dataclass
class SagaHarness(WriteSide):
    saga: SagaProcess
    gateway: SimulatedGateway

    def settle(self, timeout: float = 30.0) -> None:
        """Run the follower and the due jobs until nothing is left to do now."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            moved = self.saga.follower.run_once() + self.saga.runner.run_due(10)
            if moved == 0:
                return
        raise AssertionError("the saga did not settle")

    def run_until(self, done: Callable[[], bool], timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.saga.follower.run_once()
            self.saga.runner.run_due(10)
            if done():
                return
            time.sleep(0.05)
        raise AssertionError("condition not reached")


def make_harness(
    settings: Settings,
    write_side: WriteSide,
    *,
    hold_seconds: float = 60.0,
    gateway_timeout: float = 0.2,
    breaker_fail_max: int = 1000,
    budget: TimeoutBudget | None = None,
) -> Iterator[SagaHarness]:
    assert settings.postgres_url is not None
    pool = ConnectionPool(settings.postgres_url, min_size=1, max_size=4, open=True)
    gateway = SimulatedGateway(pool, timeout=gateway_timeout)
    gateway.ensure_schema()
    resilient = ResilientGateway(
        gateway,
        max_attempts=4,
        base_delay=0.01,
        max_delay=0.05,
        max_elapsed=0.5,
        breaker_fail_max=breaker_fail_max,
        budget=budget,
    )
    saga = SagaProcess(
        store=write_side.store,
        gateway=resilient,
        vault=build_vault(settings, pool),
        queue=PostgresJobQueue(pool),
        postgres_url=settings.postgres_url,
        hold_seconds=hold_seconds,
        workers=1,
        poll_seconds=0.05,
    )
    try:
        yield SagaHarness(write_side.store, saga, gateway)
    finally:
        pool.close()
