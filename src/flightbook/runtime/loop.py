"""The one process loop: stop on request, retry failures with capped backoff, tell readiness.

Every long-running worker (relay, projection workers, saga, auditor) runs its unit of
work through a :class:`ProcessLoop`:

- :meth:`ProcessLoop.stop` (SIGTERM/SIGINT, :func:`run_until_signalled`) asks it to
  finish the unit in hand and return; :meth:`ProcessLoop.wait` sleeps until then;
- :meth:`ProcessLoop.run` calls ``serve`` again whenever it raises, after a capped
  exponential backoff with jitter (:class:`Backoff`), telling ``on_failure`` first;
- :meth:`ProcessLoop.alive` marks progress and :meth:`ProcessLoop.ready` says whether
  there was any within the readiness window and no failure since (a process riding out a
  server outage is not ready until its next unit of work succeeds, ADR 0018).
"""

from __future__ import annotations

import random
import signal
import threading
import time
from typing import TYPE_CHECKING

import structlog

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ("Backoff", "ProcessLoop", "run_until_signalled")


class Backoff:
    """Capped exponential backoff with jitter: ``first * 2**(n-1)``, at most ``cap``, x0.5..1.

    Args:
        first: The delay after the first failure (before jitter).
        cap: The longest delay.
        rng: Uniform numbers in [0, 1) (tests pass their own).
    """

    def __init__(
        self, *, first: float = 0.2, cap: float = 5.0, rng: Callable[[], float] = random.random
    ) -> None:
        self._first = first
        self._cap = cap
        self._rng = rng
        self.failures = 0

    def next_delay(self) -> float:
        """Count one more failure and return how long to wait before the next attempt."""
        self.failures += 1
        delay = min(self._cap, self._first * 2.0 ** min(self.failures - 1, 32))
        return delay * (0.5 + 0.5 * self._rng())

    def reset(self) -> None:
        """The last attempt succeeded: the next failure waits ``first`` again."""
        self.failures = 0


class ProcessLoop:
    """The stop flag, backoff and readiness of one long-running process.

    Args:
        name: The process (for the logs).
        max_backoff: The longest wait between two failed attempts.
        ready_window: How recent the last sign of progress must be to be ready.
        clock: Monotonic seconds (tests pass their own).
    """

    def __init__(
        self,
        name: str,
        *,
        max_backoff: float = 5.0,
        ready_window: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.backoff = Backoff(cap=max_backoff)
        self._stopping = threading.Event()
        self._ready_window = ready_window
        self._clock = clock
        self._alive_at: float | None = None
        self._failing = False

    # -- stopping ---------------------------------------------------------------------------

    def stop(self) -> None:
        """Finish the unit of work in hand, then return from :meth:`run`."""
        self._stopping.set()

    def stop_requested(self) -> bool:
        """Whether :meth:`stop` was called."""
        return self._stopping.is_set()

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; True (at once) when a stop was asked for."""
        return self._stopping.wait(seconds)

    # -- readiness --------------------------------------------------------------------------

    def alive(self) -> None:
        """The process made progress (or waited for work) just now."""
        self._alive_at = self._clock()
        self._failing = False

    def ready(self) -> bool:
        """Progress within the readiness window (a process whose every attempt fails is not)."""
        alive = self._alive_at
        if self._failing or alive is None:
            return False
        return self._clock() - alive < self._ready_window

    # -- running ----------------------------------------------------------------------------

    def run(
        self,
        serve: Callable[[], None],
        *,
        on_failure: Callable[[Exception, float], None],
        close: Callable[[], None] | None = None,
    ) -> None:
        """Call ``serve`` until stopped; after each failure, ``on_failure(exc, delay)`` and wait.

        ``serve`` returns when it sees :meth:`stop_requested` (or to be called again); it calls
        ``backoff.reset()`` once it has done a unit of work. ``close`` runs at the end,
        however the loop ends.
        """
        self.alive()
        try:
            while not self.stop_requested():
                try:
                    serve()
                except Exception as exc:
                    self._failing = True
                    delay = self.backoff.next_delay()
                    on_failure(exc, delay)
                    self.wait(delay)
        finally:
            if close is not None:
                close()


def run_until_signalled(process: str, run: Callable[[], None], stop: Callable[[], None]) -> None:
    """Run a worker loop; SIGTERM/SIGINT ask it to stop after its current unit of work."""

    def on_signal(signum: int, _frame: object) -> None:
        structlog.get_logger().info(
            "process.stopping", process=process, signal=signal.Signals(signum).name
        )
        stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    run()
    structlog.get_logger().info("process.stopped", process=process)
