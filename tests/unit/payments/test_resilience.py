"""ResilientGateway and CircuitBreaker, driven by a scripted gateway and a fake clock."""

from __future__ import annotations

import contextlib
import random
from typing import TypeAlias

import pytest
from structlog.testing import capture_logs

from flightbook.payments.gateway import (
    Authorization,
    Capture,
    CircuitOpenError,
    Declined,
    GatewayRejectedError,
    GatewayUnavailableError,
    PaymentGateway,
    Refund,
)
from flightbook.payments.resilience import BreakerState, CircuitBreaker, ResilientGateway

pytestmark = pytest.mark.unit

Step: TypeAlias = Authorization | Declined | Capture | Refund | Exception | None

AUTHORIZED = Authorization(authorization_id="auth_1", amount=45000, currency="EUR")
CAPTURED = Capture(capture_id="cap_1", amount=45000)
REFUNDED = Refund(refund_id="re_1", amount=45000)


class ScriptedGateway:
    """Answers each call with the next step of its script; the last step repeats forever."""

    def __init__(self, *steps: Step) -> None:
        self._steps = list(steps)
        self.calls: list[tuple[str, str]] = []

    def _next(self, operation: str, idempotency_key: str) -> Step:
        self.calls.append((operation, idempotency_key))
        step = self._steps.pop(0) if len(self._steps) > 1 else self._steps[0]
        if isinstance(step, Exception):
            raise step
        return step

    def authorize(
        self, *, idempotency_key: str, token: str, amount: int, currency: str
    ) -> Authorization | Declined:
        result = self._next("authorize", idempotency_key)
        assert isinstance(result, Authorization | Declined)
        return result

    def capture(self, *, idempotency_key: str, authorization_id: str, amount: int) -> Capture:
        result = self._next("capture", idempotency_key)
        assert isinstance(result, Capture)
        return result

    def void(self, *, idempotency_key: str, authorization_id: str) -> None:
        assert self._next("void", idempotency_key) is None

    def refund(self, *, idempotency_key: str, authorization_id: str, amount: int) -> Refund:
        result = self._next("refund", idempotency_key)
        assert isinstance(result, Refund)
        return result


class FakeTime:
    """A clock that only moves when something sleeps on it (or a test advances it)."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class WidestJitter(random.Random):
    """Always picks the top of the jitter window, so backoff is deterministic."""

    def uniform(self, a: float, b: float) -> float:
        return b


def resilient(inner: PaymentGateway, time: FakeTime, **options: float) -> ResilientGateway:
    settings: dict[str, float] = {"max_attempts": 5, "breaker_fail_max": 100} | options
    return ResilientGateway(
        inner,
        max_attempts=int(settings.pop("max_attempts")),
        breaker_fail_max=int(settings.pop("breaker_fail_max")),
        base_delay=settings.pop("base_delay", 0.05),
        max_delay=settings.pop("max_delay", 2.0),
        max_elapsed=settings.pop("max_elapsed", 10.0),
        breaker_reset_timeout=settings.pop("breaker_reset_timeout", 10.0),
        sleep=time.sleep,
        clock=time.clock,
        rng=WidestJitter(),
    )


def always_down(**options: float) -> tuple[FakeTime, ScriptedGateway, ResilientGateway]:
    """A gateway that is always down, behind the resilience layer on a fake clock."""
    time = FakeTime()
    inner = ScriptedGateway(GatewayUnavailableError("down"))
    return time, inner, resilient(inner, time, **options)


def authorize(gateway: PaymentGateway, key: str = "b1:authorize") -> Authorization | Declined:
    return gateway.authorize(idempotency_key=key, token="tok_ok", amount=45000, currency="EUR")


def test_transient_errors_are_retried_until_the_call_succeeds() -> None:
    inner = ScriptedGateway(GatewayUnavailableError("a"), GatewayUnavailableError("b"), AUTHORIZED)
    gateway = resilient(inner, FakeTime())

    result = authorize(gateway)

    assert result == AUTHORIZED
    assert len(inner.calls) == 3


def test_gives_up_after_max_attempts_and_raises_the_last_error() -> None:
    errors = [GatewayUnavailableError(f"failure {n}") for n in (1, 2, 3)]
    inner = ScriptedGateway(*errors)
    time = FakeTime()
    gateway = resilient(inner, time, max_attempts=3)

    with pytest.raises(GatewayUnavailableError) as raised:
        authorize(gateway)

    assert raised.value is errors[-1]
    assert len(inner.calls) == 3
    assert len(time.sleeps) == 2


def test_a_decline_is_an_answer_and_is_not_retried() -> None:
    inner = ScriptedGateway(Declined(reason="card_declined"), AUTHORIZED)
    gateway = resilient(inner, FakeTime())

    result = authorize(gateway)

    assert result == Declined(reason="card_declined")
    assert len(inner.calls) == 1


def test_a_rejection_is_raised_at_once_and_not_retried() -> None:
    inner = ScriptedGateway(GatewayRejectedError("authorization_voided"), CAPTURED)
    time = FakeTime()
    gateway = resilient(inner, time)

    with pytest.raises(GatewayRejectedError, match="authorization_voided"):
        gateway.capture(idempotency_key="b1:capture", authorization_id="auth_1", amount=45000)

    assert len(inner.calls) == 1
    assert time.sleeps == []


@pytest.mark.parametrize(
    ("operation", "answer"),
    [("authorize", AUTHORIZED), ("capture", CAPTURED), ("void", None), ("refund", REFUNDED)],
)
def test_every_attempt_reuses_the_callers_idempotency_key(operation: str, answer: Step) -> None:
    """Reusing the key is what makes a retry after a lost response safe: no second charge."""
    flaky = GatewayUnavailableError("flaky")
    inner = ScriptedGateway(flaky, flaky, flaky, answer)
    gateway = resilient(inner, FakeTime())
    key = f"b1:{operation}"

    if operation == "authorize":
        authorize(gateway, key)
    elif operation == "capture":
        gateway.capture(idempotency_key=key, authorization_id="auth_1", amount=45000)
    elif operation == "void":
        gateway.void(idempotency_key=key, authorization_id="auth_1")
    else:
        gateway.refund(idempotency_key=key, authorization_id="auth_1", amount=45000)

    assert inner.calls == [(operation, key)] * 4


def test_backoff_windows_double_from_base_delay_up_to_max_delay() -> None:
    time = FakeTime()
    gateway = resilient(
        ScriptedGateway(GatewayUnavailableError("down")),
        time,
        max_attempts=7,
        base_delay=0.05,
        max_delay=0.3,
    )

    with pytest.raises(GatewayUnavailableError):
        authorize(gateway)

    assert time.sleeps == pytest.approx([0.05, 0.1, 0.2, 0.3, 0.3, 0.3])


def test_jittered_delays_stay_within_their_windows() -> None:
    """Full jitter: each delay is anywhere in [0, window], and the window doubles up to a cap."""
    time = FakeTime()
    gateway = ResilientGateway(
        ScriptedGateway(GatewayUnavailableError("down")),
        max_attempts=10,
        breaker_fail_max=100,
        base_delay=0.05,
        max_delay=1.0,
        max_elapsed=60.0,
        sleep=time.sleep,
        clock=time.clock,
        rng=random.Random(7),
    )

    with pytest.raises(GatewayUnavailableError):
        authorize(gateway)

    windows = [min(1.0, 0.05 * 2**n) for n in range(9)]
    assert len(time.sleeps) == 9
    assert all(0.0 <= delay <= window for delay, window in zip(time.sleeps, windows, strict=True))
    assert len(set(time.sleeps)) == 9


def test_no_retry_is_made_that_would_end_after_the_time_budget() -> None:
    time, inner, gateway = always_down(max_attempts=10, base_delay=0.1, max_elapsed=0.25)

    with pytest.raises(GatewayUnavailableError):
        authorize(gateway)

    assert time.sleeps == pytest.approx([0.1])  # the next backoff (0.2) would end at 0.3 > 0.25
    assert len(inner.calls) == 2


def test_breaker_opens_after_fail_max_failures_and_then_fails_fast() -> None:
    _, inner, gateway = always_down(max_attempts=1, breaker_fail_max=3)
    for _ in range(3):
        with pytest.raises(GatewayUnavailableError):
            authorize(gateway)

    with pytest.raises(CircuitOpenError):
        authorize(gateway)

    assert len(inner.calls) == 3
    assert gateway.breaker.state is BreakerState.OPEN


def test_an_open_breaker_ends_the_retries_of_the_call_that_tripped_it() -> None:
    time, inner, gateway = always_down(max_attempts=5, breaker_fail_max=2)

    with pytest.raises(CircuitOpenError):
        authorize(gateway)

    assert len(inner.calls) == 2
    assert len(time.sleeps) == 2  # the third attempt failed fast and was not retried


def test_breaker_half_opens_after_reset_timeout_and_closes_on_success() -> None:
    time = FakeTime()
    down = GatewayUnavailableError("down")
    inner = ScriptedGateway(down, down, AUTHORIZED)
    gateway = resilient(inner, time, max_attempts=1, breaker_fail_max=2, breaker_reset_timeout=10)
    for _ in range(2):
        with pytest.raises(GatewayUnavailableError):
            authorize(gateway)
    time.now += 9.9
    with pytest.raises(CircuitOpenError):
        authorize(gateway)
    time.now += 0.1
    state_before_trial = gateway.breaker.state

    result = authorize(gateway)

    assert state_before_trial is BreakerState.HALF_OPEN
    assert result == AUTHORIZED
    assert gateway.breaker.state is BreakerState.CLOSED
    assert authorize(gateway) == AUTHORIZED
    assert len(inner.calls) == 4


def test_a_failed_trial_call_opens_the_breaker_for_another_reset_timeout() -> None:
    time, inner, gateway = always_down(max_attempts=1, breaker_fail_max=1, breaker_reset_timeout=5)
    with pytest.raises(GatewayUnavailableError):
        authorize(gateway)
    time.now += 5

    with pytest.raises(GatewayUnavailableError) as trial:
        authorize(gateway)

    assert not isinstance(trial.value, CircuitOpenError)  # the trial reached the gateway
    assert gateway.breaker.state is BreakerState.OPEN
    with pytest.raises(CircuitOpenError):
        authorize(gateway)
    assert len(inner.calls) == 2


def test_rejections_and_declines_are_answers_that_reset_the_failure_count() -> None:
    down = GatewayUnavailableError("down")
    rejected = GatewayRejectedError("unknown_authorization")
    declined = Declined(reason="card_declined")
    inner = ScriptedGateway(down, down, rejected, down, down, declined, down, down, AUTHORIZED)
    gateway = resilient(inner, FakeTime(), max_attempts=1, breaker_fail_max=3)

    for _ in range(8):
        with contextlib.suppress(GatewayRejectedError, GatewayUnavailableError):
            authorize(gateway)

    assert len(inner.calls) == 8  # none failed fast
    assert gateway.breaker.state is BreakerState.CLOSED
    assert authorize(gateway) == AUTHORIZED


def test_half_open_breaker_lets_a_single_trial_call_through() -> None:
    time = FakeTime()
    breaker = CircuitBreaker(fail_max=1, reset_timeout=1.0, clock=time.clock)
    with pytest.raises(GatewayUnavailableError):
        breaker.call(lambda: (_ for _ in ()).throw(GatewayUnavailableError("down")))
    time.now += 1.0
    concurrent: list[Exception] = []

    def trial() -> str:
        try:
            breaker.call(lambda: "second")
        except CircuitOpenError as error:
            concurrent.append(error)
        return "trial"

    assert breaker.call(trial) == "trial"
    assert len(concurrent) == 1
    assert breaker.state is BreakerState.CLOSED


def test_each_retry_is_logged_with_operation_and_idempotency_key() -> None:
    inner = ScriptedGateway(GatewayUnavailableError("timeout"), CAPTURED)
    gateway = resilient(inner, FakeTime(), base_delay=0.05)

    with capture_logs() as logs:
        gateway.capture(idempotency_key="b1:capture", authorization_id="auth_1", amount=45000)

    assert logs == [
        {
            "event": "gateway.retry",
            "operation": "capture",
            "idempotency_key": "b1:capture",
            "attempt": 1,
            "delay": 0.05,
            "error": "timeout",
            "error_type": "GatewayUnavailableError",
            "log_level": "warning",
        }
    ]


def test_resilient_gateway_is_a_payment_gateway() -> None:
    gateway = resilient(ScriptedGateway(AUTHORIZED), FakeTime())

    assert isinstance(gateway, PaymentGateway)
