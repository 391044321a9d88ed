"""The one process loop: capped backoff with jitter, retries until stopped, readiness."""

from __future__ import annotations

import threading

import pytest

from flightbook.runtime.loop import Backoff, ProcessLoop
from tests.support.memory import Seconds

pytestmark = pytest.mark.unit


def test_backoff_doubles_up_to_its_cap_and_starts_again_after_a_success() -> None:
    backoff = Backoff(first=0.2, cap=1.0, rng=lambda: 1.0)  # no jitter: the upper bound

    delays = [backoff.next_delay() for _ in range(5)]
    backoff.reset()

    assert delays == pytest.approx([0.2, 0.4, 0.8, 1.0, 1.0])
    assert backoff.next_delay() == pytest.approx(0.2)


def test_backoff_jitter_keeps_each_delay_between_half_and_all_of_it() -> None:
    low = Backoff(first=0.4, cap=5.0, rng=lambda: 0.0)

    assert low.next_delay() == pytest.approx(0.2)
    assert low.next_delay() == pytest.approx(0.4)


def test_a_failing_unit_of_work_is_retried_after_the_backoff_until_it_succeeds() -> None:
    loop = ProcessLoop("test", max_backoff=0.001)
    calls: list[int] = []
    failures: list[tuple[str, float]] = []

    def serve() -> None:
        calls.append(len(calls))
        if len(calls) < 3:
            raise ConnectionError(f"down {len(calls)}")
        loop.backoff.reset()
        loop.stop()

    loop.run(serve, on_failure=lambda exc, delay: failures.append((str(exc), delay)))

    assert len(calls) == 3
    assert [text for text, _ in failures] == ["down 1", "down 2"]
    assert all(0 < delay <= 0.001 for _, delay in failures)
    assert loop.backoff.failures == 0


def test_close_runs_however_the_loop_ends() -> None:
    loop = ProcessLoop("test")
    closed = threading.Event()

    def serve() -> None:
        raise KeyboardInterrupt  # not an Exception: the loop does not swallow it

    with pytest.raises(KeyboardInterrupt):
        loop.run(serve, on_failure=lambda _exc, _delay: None, close=closed.set)

    assert closed.is_set()


def test_a_stopped_loop_does_not_serve_and_wait_returns_at_once() -> None:
    loop = ProcessLoop("test")
    loop.stop()
    served: list[int] = []

    loop.run(lambda: served.append(1), on_failure=lambda _exc, _delay: None)

    assert served == []
    assert loop.stop_requested()
    assert loop.wait(60.0) is True


def test_readiness_needs_progress_within_the_window() -> None:
    clock = Seconds(100.0)
    loop = ProcessLoop("test", ready_window=30.0, clock=clock)
    assert not loop.ready()  # nothing done yet

    loop.alive()
    clock.now += 29.0
    ready_in_time = loop.ready()
    clock.now += 2.0

    assert ready_in_time
    assert not loop.ready()


def test_a_failure_makes_the_process_not_ready_until_its_next_unit_of_work() -> None:
    loop = ProcessLoop("test", max_backoff=0.001)
    readiness: list[bool] = []

    def serve() -> None:
        readiness.append(loop.ready())
        if len(readiness) == 1:
            loop.alive()
            raise ConnectionError("the server went away")
        loop.alive()  # the next unit of work went through
        readiness.append(loop.ready())
        loop.stop()

    loop.run(serve, on_failure=lambda _exc, _delay: None)

    assert readiness == [True, False, True]


def test_backoff_after_very_many_failures_stays_at_its_cap() -> None:
    backoff = Backoff(first=0.2, cap=5.0, rng=lambda: 1.0)

    delays = [backoff.next_delay() for _ in range(2000)]  # an outage of hours

    assert delays[-1] == pytest.approx(5.0)
