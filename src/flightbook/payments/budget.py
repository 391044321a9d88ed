"""Each payer's budget of gateway timeouts: one customer cannot open the breaker for everyone.

The circuit breaker in front of the provider is shared by every payment. Without a bound,
one customer whose card never answers (``tok_timeout``) fed it failure after failure and
opened it again and again, and every other customer's payment waited (issue 15). So each
payer gets a budget: at most ``limit`` calls that failed as unavailable within the last
``window`` seconds, counting calls still in flight. Only calls inside the budget reach the
breaker, so one payer can never put more than ``limit`` failures in a row into it.

A payer over the budget fails fast (:class:`PayerBudgetExhaustedError`: the booking is
rejected, the gateway is not called, the breaker is not touched); a payer whose budget is
held by calls in flight waits (:class:`PayerBusyError`: the job is tried later). A
decline or a rejection is an answer: it costs nothing. An open breaker
(:class:`CircuitOpenError`) costs nothing either: the provider was not asked.

The state is in this process: one saga process drives the payments (it is the one
consumer of the job table's authorizations); several saga processes would each give a
payer its own budget, so the bound a payer puts on the breaker grows with them, but each
process's breaker is its own too, so per process it still holds.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from flightbook.payments.gateway import PayerBudgetExhaustedError, PayerBusyError

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ("TimeoutBudget",)


@dataclass
class _Payer:
    failures: deque[float] = field(default_factory=deque)
    """When the payer's calls failed as unavailable (monotonic seconds), oldest first."""
    in_flight: int = 0


class TimeoutBudget:
    """Per payer: at most ``limit`` unavailable calls (failed or in flight) per ``window``.

    Thread-safe. Memory is bounded by the payers seen within a window: payers with
    nothing in the window and nothing in flight are forgotten.

    Args:
        limit: calls failing as unavailable a payer may have in the window.
        window: seconds a failure counts against its payer.
        clock: monotonic seconds (inject a fake one in tests).
    """

    def __init__(
        self, *, limit: int, window: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self._limit = limit
        self._window = window
        self._clock = clock
        self._lock = threading.Lock()
        self._payers: dict[str, _Payer] = {}
        self._swept_at = clock()

    @property
    def limit(self) -> int:
        return self._limit

    def admit(self, payer: str) -> None:
        """Let one call of ``payer`` through (it holds a share of the budget until settled).

        Raises:
            PayerBudgetExhaustedError: ``limit`` of the payer's calls failed in the window.
            PayerBusyError: the payer's failures and calls in flight fill the budget.
        """
        with self._lock:
            now = self._clock()
            self._sweep(now)
            state = self._payers.setdefault(payer, _Payer())
            self._forget_old(state, now)
            if len(state.failures) >= self._limit:
                raise PayerBudgetExhaustedError
            if len(state.failures) + state.in_flight >= self._limit:
                raise PayerBusyError("payer_timeout_budget_in_use")
            state.in_flight += 1

    def settle(self, payer: str, *, failed: bool) -> None:
        """The call :meth:`admit` let through ended; ``failed``: as unavailable (a timeout)."""
        with self._lock:
            state = self._payers.get(payer)
            if state is None:  # pragma: no cover - admit() created it
                return
            state.in_flight = max(0, state.in_flight - 1)
            if failed:
                state.failures.append(self._clock())
            elif not state.failures and state.in_flight == 0:
                del self._payers[payer]

    def exhausted(self, payer: str) -> bool:
        """True while ``payer``'s calls fail fast."""
        with self._lock:
            state = self._payers.get(payer)
            if state is None:
                return False
            self._forget_old(state, self._clock())
            return len(state.failures) >= self._limit

    def _forget_old(self, state: _Payer, now: float) -> None:
        while state.failures and now - state.failures[0] >= self._window:
            state.failures.popleft()

    def _sweep(self, now: float) -> None:
        """Forget idle payers, once a window (so a payer seen once is not kept for ever)."""
        if now - self._swept_at < self._window:
            return
        self._swept_at = now
        for payer, state in list(self._payers.items()):
            self._forget_old(state, now)
            if not state.failures and state.in_flight == 0:
                del self._payers[payer]
