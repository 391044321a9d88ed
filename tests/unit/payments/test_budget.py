"""Each payer's budget of gateway timeouts, and how it stands before the shared breaker."""

from __future__ import annotations

import contextlib

import pytest

from flightbook.payments.budget import TimeoutBudget
from flightbook.payments.gateway import (
    CircuitOpenError,
    Declined,
    GatewayRejectedError,
    GatewayUnavailableError,
    PayerBudgetExhaustedError,
    PayerBusyError,
    PayerScopedGateway,
)
from flightbook.payments.resilience import BreakerState, ResilientGateway
from tests.unit.payments.test_resilience import (
    AUTHORIZED,
    FakeTime,
    ScriptedGateway,
    WidestJitter,
    authorize,
)

pytestmark = pytest.mark.unit

TIMEOUT = GatewayUnavailableError("timeout")


def budget(time: FakeTime, limit: int = 3, window: float = 300.0) -> TimeoutBudget:
    return TimeoutBudget(limit=limit, window=window, clock=time.clock)


def spend(budget: TimeoutBudget, payer: str, *, failed: bool = True) -> None:
    budget.admit(payer)
    budget.settle(payer, failed=failed)


# -- the budget alone --------------------------------------------------------------------------


def test_a_payer_is_exhausted_after_limit_timeouts_and_then_fails_fast() -> None:
    spent = budget(FakeTime(), limit=3)
    for _ in range(3):
        spend(spent, "hoarder")

    assert spent.exhausted("hoarder")
    with pytest.raises(PayerBudgetExhaustedError):
        spent.admit("hoarder")


def test_one_payers_timeouts_cost_another_payer_nothing() -> None:
    spent = budget(FakeTime(), limit=3)
    for _ in range(3):
        spend(spent, "hoarder")

    spent.admit("alice")
    assert not spent.exhausted("alice")


def test_calls_that_answered_cost_nothing() -> None:
    spent = budget(FakeTime(), limit=2)
    for _ in range(10):
        spend(spent, "alice", failed=False)

    assert not spent.exhausted("alice")
    spent.admit("alice")


def test_a_timeout_stops_counting_once_the_window_has_passed() -> None:
    time = FakeTime()
    spent = budget(time, limit=2, window=300.0)
    spend(spent, "hoarder")
    time.now += 200
    spend(spent, "hoarder")
    assert spent.exhausted("hoarder")

    time.now += 100  # the first timeout is 300 s old
    assert not spent.exhausted("hoarder")
    spent.admit("hoarder")


def test_calls_in_flight_hold_their_share_so_concurrent_calls_cannot_overrun_it() -> None:
    spent = budget(FakeTime(), limit=3)
    for _ in range(3):
        spent.admit("hoarder")  # three calls hang at the provider

    with pytest.raises(PayerBusyError):
        spent.admit("hoarder")
    assert isinstance(PayerBusyError(), GatewayUnavailableError)  # the job is tried later
    spent.settle("hoarder", failed=False)
    spent.admit("hoarder")


def test_payers_seen_long_ago_are_forgotten() -> None:
    time = FakeTime()
    spent = budget(time, limit=2, window=10.0)
    for n in range(100):
        spend(spent, f"payer-{n}")
    time.now += 11
    spend(spent, "someone", failed=False)

    assert spent._payers == {}


# -- in front of the shared breaker ------------------------------------------------------------


def resilient(inner: ScriptedGateway, time: FakeTime, *, limit: int = 3) -> ResilientGateway:
    return ResilientGateway(
        inner,
        max_attempts=4,
        breaker_fail_max=5,
        sleep=time.sleep,
        clock=time.clock,
        rng=WidestJitter(),
        budget=budget(time, limit=limit),
    )


def test_one_payers_timeouts_never_open_the_shared_breaker() -> None:
    """Review finding 6: one customer's ``tok_timeout`` payments opened it for everyone."""
    time = FakeTime()
    inner = ScriptedGateway(TIMEOUT)
    gateway = resilient(inner, time, limit=3)
    hoarder = gateway.for_payer("hoarder")

    for n in range(10):  # ten bookings, four attempts each without the budget
        with contextlib.suppress(GatewayUnavailableError, PayerBudgetExhaustedError):
            authorize(hoarder, key=f"b{n}:authorize")

    assert len(inner.calls) == 3  # the budget: three reached the provider, then none
    assert gateway.breaker.state is BreakerState.CLOSED


def test_a_payer_out_of_budget_fails_fast_without_a_call_while_others_are_served() -> None:
    time = FakeTime()
    inner = ScriptedGateway(TIMEOUT, TIMEOUT, TIMEOUT, AUTHORIZED)
    gateway = resilient(inner, time, limit=3)
    with contextlib.suppress(PayerBudgetExhaustedError):
        authorize(gateway.for_payer("hoarder"), key="h:authorize")
    calls = len(inner.calls)

    with pytest.raises(PayerBudgetExhaustedError):
        authorize(gateway.for_payer("hoarder"), key="h2:authorize")

    assert len(inner.calls) == calls
    assert authorize(gateway.for_payer("alice"), key="a:authorize") == AUTHORIZED


def test_a_call_that_found_the_breaker_open_costs_the_payer_nothing() -> None:
    time = FakeTime()
    inner = ScriptedGateway(TIMEOUT)
    gateway = ResilientGateway(
        inner,
        max_attempts=1,
        breaker_fail_max=1,
        sleep=time.sleep,
        clock=time.clock,
        budget=budget(time, limit=2),
    )
    with contextlib.suppress(GatewayUnavailableError):
        authorize(gateway, key="other:authorize")  # someone else opens it (no payer)
    alice = gateway.for_payer("alice")

    for n in range(5):
        with pytest.raises(CircuitOpenError):
            authorize(alice, key=f"a{n}:authorize")

    assert gateway.budget is not None
    assert not gateway.budget.exhausted("alice")


def test_declines_and_rejections_never_count_toward_the_breaker_or_the_budget() -> None:
    """Review finding 6: declines must not count; a decline is the provider answering."""
    time = FakeTime()
    declined = Declined(reason="card_declined")
    inner = ScriptedGateway(declined)
    gateway = resilient(inner, time, limit=1)
    payer = gateway.for_payer("decliner")

    for n in range(50):
        assert authorize(payer, key=f"d{n}:authorize") == declined
    inner_rejecting = ScriptedGateway(GatewayRejectedError("invalid_amount"))
    rejecting = resilient(inner_rejecting, time, limit=1)
    for n in range(50):
        with pytest.raises(GatewayRejectedError):
            authorize(rejecting.for_payer("decliner"), key=f"r{n}:authorize")

    assert gateway.breaker.state is rejecting.breaker.state is BreakerState.CLOSED
    assert gateway.budget is not None
    assert not gateway.budget.exhausted("decliner")
    assert (len(inner.calls), len(inner_rejecting.calls)) == (50, 50)


def test_settling_money_already_moved_is_never_refused_for_the_budget() -> None:
    time = FakeTime()
    inner = ScriptedGateway(TIMEOUT, None)
    gateway = resilient(inner, time, limit=1)
    payer = gateway.for_payer("hoarder")
    with pytest.raises(PayerBudgetExhaustedError):
        authorize(payer)

    payer.void(idempotency_key="h:void", authorization_id="auth_1")

    assert inner.calls == [("authorize", "b1:authorize"), ("void", "h:void")]


def test_the_resilient_gateway_scopes_calls_per_payer() -> None:
    gateway = resilient(ScriptedGateway(AUTHORIZED), FakeTime())

    assert isinstance(gateway, PayerScopedGateway)
