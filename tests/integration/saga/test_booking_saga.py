"""The saga drives each booking to its end, against real PostgreSQL and the simulated gateway."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from flightbook.config.settings import Settings
from flightbook.domain.booking import BookingStatus, CancellationReason
from flightbook.domain.payment import Payment, PaymentStatus, payment_id_for
from flightbook.eventstore.metadata import recording
from flightbook.payments.budget import TimeoutBudget
from flightbook.payments.resilience import BreakerState
from tests.support.saga import SagaHarness, make_harness
from tests.support.writeside import WriteSide

pytestmark = pytest.mark.integration


def test_a_paid_booking_is_confirmed_its_seats_sold_and_captured_once(
    harness: SagaHarness,
) -> None:
    flight_id = harness.schedule_flight(seats=10)
    booking_id = harness.request_booking(flight_id, passengers=2)

    harness.settle()

    booking = harness.booking(booking_id)
    flight = harness.flight(flight_id)
    assert booking.status is BookingStatus.CONFIRMED
    assert (flight.sold("Y"), flight.held("Y")) == (2, 0)
    captures = [
        e for e in harness.gateway.entries_for_booking(str(booking_id)) if e.operation == "capture"
    ]
    assert [c.amount for c in captures] == [90000]
    payment: Payment = harness.payments.repository.get(payment_id_for(booking_id))
    assert payment.status is PaymentStatus.CAPTURED


@pytest.mark.parametrize("token", ["tok_declined", "tok_insufficient_funds"])
def test_a_declined_payment_rejects_the_booking_and_frees_the_seats(
    harness: SagaHarness, token: str
) -> None:
    flight_id = harness.schedule_flight(seats=10)
    booking_id = harness.request_booking(flight_id, token=token)

    harness.settle()

    booking = harness.booking(booking_id)
    assert booking.status is BookingStatus.REJECTED
    assert booking.reason == "PAYMENT_DECLINED"
    assert harness.flight(flight_id).seats_left("Y") == 10
    assert not [
        e for e in harness.gateway.entries_for_booking(str(booking_id)) if e.operation == "capture"
    ]


def test_a_flaky_gateway_is_retried_and_the_booking_confirmed(harness: SagaHarness) -> None:
    flight_id = harness.schedule_flight(seats=10)
    booking_id = harness.request_booking(flight_id, token="tok_flaky")

    harness.run_until(lambda: harness.booking(booking_id).status is BookingStatus.CONFIRMED)
    harness.settle()

    captures = [
        e for e in harness.gateway.entries_for_booking(str(booking_id)) if e.operation == "capture"
    ]
    assert len(captures) == 1


def test_no_seats_left_rejects_the_booking_without_touching_payment(
    harness: SagaHarness,
) -> None:
    flight_id = harness.schedule_flight(seats=1)
    first = harness.request_booking(flight_id)
    second = harness.request_booking(flight_id)

    harness.settle()

    assert harness.booking(first).status is BookingStatus.CONFIRMED
    rejected = harness.booking(second)
    assert (rejected.status, rejected.reason) == (BookingStatus.REJECTED, "NO_SEATS")
    assert harness.gateway.entries_for_booking(str(second)) == []


@pytest.fixture
def short_holds(settings: Settings, write_side: WriteSide) -> Iterator[SagaHarness]:
    yield from make_harness(settings, write_side, hold_seconds=1.0, gateway_timeout=0.1)


def test_a_payment_that_never_answers_expires_the_hold_and_rejects(
    short_holds: SagaHarness,
) -> None:
    flight_id = short_holds.schedule_flight(seats=3)
    booking_id = short_holds.request_booking(flight_id, token="tok_timeout")

    short_holds.run_until(
        lambda: short_holds.booking(booking_id).status is BookingStatus.REJECTED, timeout=20
    )
    short_holds.settle()

    booking = short_holds.booking(booking_id)
    assert booking.reason == "HOLD_EXPIRED"
    assert short_holds.flight(flight_id).seats_left("Y") == 3
    assert short_holds.gateway.entries_for_booking(str(booking_id)) == []


@pytest.mark.parametrize(
    ("refundable", "refunded"),
    [(True, [45000]), (False, [])],
    ids=["refundable-refunded", "non-refundable-no-money"],
)
def test_cancelling_a_confirmed_booking_returns_the_seats_and_refunds_only_a_refundable_one(
    harness: SagaHarness, refundable: bool, refunded: list[int]
) -> None:
    flight_id = harness.schedule_flight(seats=5, refundable=refundable)
    booking_id = harness.request_booking(flight_id, refundable=refundable)
    harness.settle()
    booking = harness.booking(booking_id)

    booking.cancel(CancellationReason.CUSTOMER, by="alice")
    with recording(actor="alice"):
        harness.bookings.record(booking)
    harness.settle()

    assert harness.booking(booking_id).status is BookingStatus.CANCELLED
    assert harness.flight(flight_id).seats_left("Y") == 5
    refunds = [
        e for e in harness.gateway.entries_for_booking(str(booking_id)) if e.operation == "refund"
    ]
    assert [r.amount for r in refunds] == refunded


def test_a_cancelled_flight_cancels_and_refunds_every_booking_on_it(
    harness: SagaHarness,
) -> None:
    flight_id = harness.schedule_flight(seats=5, refundable=False)
    booked = [harness.request_booking(flight_id) for _ in range(3)]
    harness.settle()
    flight = harness.flight(flight_id)

    flight.cancel("weather")
    with recording(actor="ops"):
        harness.inventory.record(flight)
    harness.settle()

    for booking_id in booked:
        booking = harness.booking(booking_id)
        assert (booking.status, booking.reason) == (BookingStatus.CANCELLED, "FLIGHT_CANCELLED")
        refunds = [
            e.amount
            for e in harness.gateway.entries_for_booking(str(booking_id))
            if e.operation == "refund"
        ]
        assert refunds == [45000]


def test_every_saga_event_carries_the_requests_correlation_and_its_cause(
    harness: SagaHarness,
) -> None:
    flight_id = harness.schedule_flight()
    booking_id = harness.request_booking(flight_id, correlation_id="req-42")

    harness.settle()

    mapper = harness.bookings.metadata_mapper
    metas = [
        mapper.decode(n)[1]
        for n in harness.bookings.recorder.select_notifications(start=None, limit=100)
        if n.originator_id == booking_id
    ]
    assert [m.correlation_id for m in metas] == ["req-42"] * 4
    assert [m.actor for m in metas] == ["alice", "saga", "saga", "saga"]
    assert all(m.causation_id for m in metas[1:])


@pytest.fixture
def budgeted(settings: Settings, write_side: WriteSide) -> Iterator[SagaHarness]:
    """A breaker that six failures in a row open, and a budget of three timeouts a payer."""
    yield from make_harness(
        settings,
        write_side,
        gateway_timeout=0.05,
        breaker_fail_max=6,
        budget=TimeoutBudget(limit=3, window=300.0),
    )


def test_one_payers_timeouts_do_not_open_the_breaker_for_another_payer(
    budgeted: SagaHarness,
) -> None:
    """Review finding 6: a hoarder's ``tok_timeout`` payments opened the shared breaker, so
    everyone's payments waited. Four bookings of four attempts each would open it twice."""
    flight_id = budgeted.schedule_flight(seats=20)
    hoarded = [
        budgeted.request_booking(flight_id, token="tok_timeout", customer="hoarder")
        for _ in range(4)
    ]

    budgeted.run_until(
        lambda: all(budgeted.booking(b).status is BookingStatus.REJECTED for b in hoarded)
    )
    breaker = budgeted.saga.runner.gateway.breaker  # type: ignore[attr-defined]
    assert breaker.state is BreakerState.CLOSED
    carol = budgeted.request_booking(flight_id, customer="carol")
    budgeted.settle()

    assert budgeted.booking(carol).status is BookingStatus.CONFIRMED
    assert {budgeted.booking(b).reason for b in hoarded} == {"PAYMENT_UNAVAILABLE"}
    assert budgeted.flight(flight_id).held("Y") == 0
    assert breaker.state is BreakerState.CLOSED
