"""Retry with backoff and a circuit breaker around any :class:`PaymentGateway`.

Only :class:`GatewayUnavailableError` is retried: a :class:`Declined` is an answer and
a :class:`GatewayRejectedError` will not change on a retry. Every attempt reuses the
caller's idempotency key, so a call retried after a lost response never charges twice.

Declines never count toward the breaker: a :class:`Declined` (and a rejection) is the
provider answering, so it resets the failure count like a success and never opens it.
One payer's timeouts are bounded before they reach the shared breaker: the authorizations
of :meth:`ResilientGateway.for_payer` go through that payer's share of a
:class:`~flightbook.payments.budget.TimeoutBudget`, attempt by attempt.

Retry uses ``tenacity``. The breaker is our own small class rather than ``pybreaker``:
pybreaker holds one lock for the whole guarded call (so a hanging provider call would
block every other caller behind it), reads the wall clock directly (no injectable
clock for tests), and lets every caller through while half-open.
"""

from __future__ import annotations

import random
import threading
import time
from enum import StrEnum
from typing import TYPE_CHECKING, TypeVar

import structlog
from tenacity import RetryCallState, Retrying, retry_if_exception

from flightbook.payments.gateway import (
    CircuitOpenError,
    GatewayRejectedError,
    GatewayUnavailableError,
    PayerBusyError,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from flightbook.payments.budget import TimeoutBudget
    from flightbook.payments.gateway import (
        Authorization,
        Capture,
        Declined,
        Operation,
        PaymentGateway,
        Refund,
    )

__all__ = ("BreakerState", "CircuitBreaker", "ResilientGateway")

_T = TypeVar("_T")

_logger = structlog.get_logger()


class BreakerState(StrEnum):
    """Where a :class:`CircuitBreaker` stands."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    """A consecutive-failure circuit breaker for gateway calls; thread-safe.

    Closed: calls pass; ``fail_max`` transient failures in a row open it (a success or a
    rejection, which is an answer, resets the count). Open: calls fail fast with
    :class:`CircuitOpenError`. After ``reset_timeout`` seconds the next call is let
    through alone as a trial (half-open): success closes the breaker, a transient
    failure opens it again for another ``reset_timeout``. Exceptions that are neither
    transient nor rejections do not move it. The lock guards state only, never the call.

    Args:
        fail_max: Consecutive transient failures that open the breaker.
        reset_timeout: Seconds the breaker stays open before a trial call.
        clock: Monotonic clock in seconds; inject a fake one in tests.
    """

    def __init__(
        self,
        *,
        fail_max: int = 5,
        reset_timeout: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if fail_max < 1:
            raise ValueError("fail_max must be at least 1")
        self._fail_max = fail_max
        self._reset_timeout = reset_timeout
        self._clock = clock
        self._lock = threading.Lock()
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._trial_in_flight = False

    @property
    def state(self) -> BreakerState:
        """The current state; an open breaker whose timeout has passed reports half-open."""
        with self._lock:
            if self._state is BreakerState.OPEN and self._timeout_elapsed():
                return BreakerState.HALF_OPEN
            return self._state

    def call(self, fn: Callable[[], _T]) -> _T:
        """Run ``fn`` if the breaker admits it, and record how it went.

        Raises:
            CircuitOpenError: The breaker is open (or half-open with a trial in flight).
        """
        trial = self._admit()
        try:
            result = fn()
        except GatewayUnavailableError:
            self._on_failure(trial=trial)
            raise
        except GatewayRejectedError:
            self._on_success(trial=trial)
            raise
        except BaseException:
            self._on_neutral(trial=trial)
            raise
        self._on_success(trial=trial)
        return result

    def _timeout_elapsed(self) -> bool:
        return self._clock() - self._opened_at >= self._reset_timeout

    def _admit(self) -> bool:
        """Let the call through or raise; return whether it is the half-open trial."""
        with self._lock:
            if self._state is BreakerState.CLOSED:
                return False
            if self._state is BreakerState.OPEN:
                if not self._timeout_elapsed():
                    raise CircuitOpenError("circuit open: payment gateway calls suspended")
                self._state = BreakerState.HALF_OPEN
            if self._trial_in_flight:
                raise CircuitOpenError("circuit half-open: a trial call is in flight")
            self._trial_in_flight = True
            return True

    def _on_failure(self, *, trial: bool) -> None:
        with self._lock:
            if trial:
                self._trial_in_flight = False
                self._open()
            elif self._state is BreakerState.CLOSED:
                self._failures += 1
                if self._failures >= self._fail_max:
                    self._open()

    def _on_success(self, *, trial: bool) -> None:
        with self._lock:
            if trial:
                self._trial_in_flight = False
                self._state = BreakerState.CLOSED
                _logger.info("gateway.circuit_closed")
            if self._state is BreakerState.CLOSED:
                self._failures = 0

    def _on_neutral(self, *, trial: bool) -> None:
        if trial:
            with self._lock:
                self._trial_in_flight = False  # stay half-open: the next call is the trial

    def _open(self) -> None:
        self._state = BreakerState.OPEN
        self._opened_at = self._clock()
        _logger.warning(
            "gateway.circuit_opened", failures=self._failures, reset_timeout=self._reset_timeout
        )


class ResilientGateway:
    """A :class:`PaymentGateway` that retries transient failures and trips a circuit breaker.

    Each call is tried up to ``max_attempts`` times, and never past ``max_elapsed``
    seconds from its start: a retry whose backoff would end after that is not made.
    The backoff before retry ``n`` is drawn uniformly from
    ``[0, min(max_delay, base_delay * 2 ** (n - 1))]`` ("full jitter"). Every attempt
    goes through the breaker; when it is open the call fails fast with
    :class:`CircuitOpenError`, which is not retried. When attempts run out, the last
    error is raised as is.

    Args:
        inner: The gateway to protect.
        max_attempts: Attempts per call, the first included.
        base_delay: Backoff window before the first retry, in seconds.
        max_delay: Upper bound of any single backoff, in seconds.
        max_elapsed: Time budget of one call including its retries, in seconds.
        breaker_fail_max: Consecutive transient failures that open the breaker.
        breaker_reset_timeout: Seconds the breaker stays open before a trial call.
        sleep: Sleep function used between attempts; inject a recorder in tests.
        clock: Monotonic clock for the time budget and the breaker.
        rng: Source of jitter; seed one for reproducible delays.
        budget: Each payer's budget of timeouts for :meth:`for_payer`'s authorizations
            (None: no per-payer bound). Keep its limit below ``breaker_fail_max``, so
            that no payer alone can open the breaker.
    """

    def __init__(
        self,
        inner: PaymentGateway,
        *,
        max_attempts: int = 5,
        base_delay: float = 0.05,
        max_delay: float = 2.0,
        max_elapsed: float = 10.0,
        breaker_fail_max: int = 5,
        breaker_reset_timeout: float = 10.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        budget: TimeoutBudget | None = None,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self._inner = inner
        self._max_attempts = max_attempts
        self._base_delay = base_delay
        self._max_delay = max_delay
        self._max_elapsed = max_elapsed
        self._sleep = sleep
        self._clock = clock
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self.breaker = CircuitBreaker(
            fail_max=breaker_fail_max, reset_timeout=breaker_reset_timeout, clock=clock
        )
        self.budget = budget

    def for_payer(self, payer: str) -> PaymentGateway:
        """This gateway for the calls made for ``payer``.

        Their authorizations spend the payer's budget of timeouts; capture, void and
        refund settle money already moved, so they are never refused for it.
        """
        return _PayerGateway(self, payer)

    def authorize(
        self,
        *,
        idempotency_key: str,
        token: str,
        amount: int,
        currency: str,
        payer: str | None = None,
    ) -> Authorization | Declined:
        return self._call(
            "authorize",
            idempotency_key,
            lambda: self._inner.authorize(
                idempotency_key=idempotency_key, token=token, amount=amount, currency=currency
            ),
            payer=payer,
        )

    def capture(self, *, idempotency_key: str, authorization_id: str, amount: int) -> Capture:
        return self._call(
            "capture",
            idempotency_key,
            lambda: self._inner.capture(
                idempotency_key=idempotency_key, authorization_id=authorization_id, amount=amount
            ),
        )

    def void(self, *, idempotency_key: str, authorization_id: str) -> None:
        self._call(
            "void",
            idempotency_key,
            lambda: self._inner.void(
                idempotency_key=idempotency_key, authorization_id=authorization_id
            ),
        )

    def refund(self, *, idempotency_key: str, authorization_id: str, amount: int) -> Refund:
        return self._call(
            "refund",
            idempotency_key,
            lambda: self._inner.refund(
                idempotency_key=idempotency_key, authorization_id=authorization_id, amount=amount
            ),
        )

    def _backoff(self, retry_state: RetryCallState) -> float:
        window = self._base_delay * 2 ** (retry_state.attempt_number - 1)
        return self._rng.uniform(0.0, min(self._max_delay, window))

    def _guarded(self, attempt: Callable[[], _T], payer: str | None) -> Callable[[], _T]:
        """One attempt: through the payer's budget (if any), then through the breaker."""
        budget = self.budget
        if budget is None or payer is None:
            return lambda: self.breaker.call(attempt)

        def spend() -> _T:
            budget.admit(payer)  # raises before the breaker and the provider are touched
            failed = False
            try:
                return self.breaker.call(attempt)
            except CircuitOpenError:
                raise  # the provider was not asked: it costs the payer nothing
            except GatewayUnavailableError:
                failed = True
                raise
            finally:
                budget.settle(payer, failed=failed)

        return spend

    def _call(
        self,
        operation: Operation,
        idempotency_key: str,
        attempt: Callable[[], _T],
        *,
        payer: str | None = None,
    ) -> _T:
        log = _logger.bind(operation=operation, idempotency_key=idempotency_key)
        started = self._clock()

        def stop(retry_state: RetryCallState) -> bool:
            # tenacity computes the upcoming backoff before asking whether to stop.
            out_of_time = self._clock() - started + retry_state.upcoming_sleep > self._max_elapsed
            return retry_state.attempt_number >= self._max_attempts or out_of_time

        def before_sleep(retry_state: RetryCallState) -> None:
            error = retry_state.outcome.exception() if retry_state.outcome else None
            log.warning(
                "gateway.retry",
                attempt=retry_state.attempt_number,
                delay=round(retry_state.upcoming_sleep, 4),
                error=str(error),
                error_type=type(error).__name__,
            )

        retrying = Retrying(
            sleep=self._sleep,
            stop=stop,
            wait=self._backoff,
            retry=retry_if_exception(_is_retryable),
            before_sleep=before_sleep,
            reraise=True,
        )
        try:
            return retrying(self._guarded(attempt, payer))
        except GatewayUnavailableError as error:
            log.warning("gateway.gave_up", error=str(error), error_type=type(error).__name__)
            raise


def _is_retryable(error: BaseException) -> bool:
    # An open breaker will not close during a backoff of a few hundred milliseconds, nor
    # will a payer's calls in flight end in one.
    return isinstance(error, GatewayUnavailableError) and not isinstance(
        error, CircuitOpenError | PayerBusyError
    )


class _PayerGateway:
    """A :class:`ResilientGateway` as one payer's calls go through it."""

    def __init__(self, gateway: ResilientGateway, payer: str) -> None:
        self._gateway = gateway
        self._payer = payer

    def authorize(
        self, *, idempotency_key: str, token: str, amount: int, currency: str
    ) -> Authorization | Declined:
        return self._gateway.authorize(
            idempotency_key=idempotency_key,
            token=token,
            amount=amount,
            currency=currency,
            payer=self._payer,
        )

    def capture(self, *, idempotency_key: str, authorization_id: str, amount: int) -> Capture:
        return self._gateway.capture(
            idempotency_key=idempotency_key, authorization_id=authorization_id, amount=amount
        )

    def void(self, *, idempotency_key: str, authorization_id: str) -> None:
        self._gateway.void(idempotency_key=idempotency_key, authorization_id=authorization_id)

    def refund(self, *, idempotency_key: str, authorization_id: str, amount: int) -> Refund:
        return self._gateway.refund(
            idempotency_key=idempotency_key, authorization_id=authorization_id, amount=amount
        )
