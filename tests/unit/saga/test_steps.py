"""The saga's decisions on the in-memory store: where each booking ends, what the gateway saw.

The saga runs by hand (:class:`~tests.support.memory.MemorySaga`): a follower pass answers
every event stored so far, due jobs run when the test says, and the clock only moves when
the test moves it. So a test can stop the saga with a chosen event unanswered, act (cancel,
let a hold expire) and let it go on, which is how the races of a live system are reached.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from flightbook.domain.booking import Booking, BookingStatus
from flightbook.domain.inventory import FlightInventory, FlightStatus
from flightbook.domain.payment import PaymentStatus
from flightbook.payments.gateway import Authorization, Declined
from flightbook.payments.memory import InMemoryGateway
from flightbook.saga.jobs import JobKind
from tests.support.memory import (
    HOLD_SECONDS,
    PRICE,
    START,
    MemorySaga,
    event_counts,
    stored,
)

pytestmark = pytest.mark.unit

S = BookingStatus


@pytest.fixture(params=[False, True], ids=["one-step", "rounds"])
def saga(request: pytest.FixtureRequest) -> MemorySaga:
    """Each decision test runs on the reference follower and on the saga's batched one."""
    return MemorySaga(batched=request.param)


@pytest.fixture
def stepwise_saga() -> MemorySaga:
    """The one-step follower only: the test stops the saga between two steps that the
    batched follower takes in one round (its folds never stop at that state)."""
    return MemorySaga()


def no_sleep(_seconds: float) -> None:
    return None


class InterruptingGateway(InMemoryGateway):
    """Runs :attr:`before_authorize` while an authorization is on its way to the provider."""

    def __init__(self) -> None:
        super().__init__(sleep=no_sleep)
        self.before_authorize: Callable[[], None] | None = None

    def authorize(
        self, *, idempotency_key: str, token: str, amount: int, currency: str
    ) -> Authorization | Declined:
        if self.before_authorize is not None:
            interrupt, self.before_authorize = self.before_authorize, None
            interrupt()
        return super().authorize(
            idempotency_key=idempotency_key, token=token, amount=amount, currency=currency
        )


def outcome(saga: MemorySaga, booking_id: uuid.UUID) -> tuple[BookingStatus, str | None]:
    booking = saga.booking(booking_id)
    return booking.status, booking.reason


def status_is(saga: MemorySaga, booking_id: uuid.UUID, status: BookingStatus) -> Callable[[], bool]:
    return lambda: saga.booking(booking_id).status is status


# -- the happy path ----------------------------------------------------------------------------


def test_a_paid_booking_is_confirmed_its_seats_sold_and_captured_once(saga: MemorySaga) -> None:
    flight_id = saga.schedule_flight(seats=10)
    booking_id = saga.request_booking(flight_id, passengers=2)

    saga.settle()

    booking = saga.booking(booking_id)
    flight = saga.flight(flight_id)
    payment = saga.payment(booking_id)
    assert booking.status is S.CONFIRMED
    assert (flight.sold("Y"), flight.held("Y"), flight.seats_left("Y")) == (2, 0, 8)
    assert saga.ledger(booking_id) == [("authorize", 2 * PRICE), ("capture", 2 * PRICE)]
    assert payment is not None
    assert payment.status is PaymentStatus.CAPTURED
    assert saga.pending_jobs() == set()


def test_a_confirmed_booking_is_not_touched_when_its_hold_deadline_passes(
    saga: MemorySaga,
) -> None:
    flight_id = saga.schedule_flight()
    booking_id = saga.request_booking(flight_id)
    saga.settle()
    before = event_counts(saga.store)

    saga.advance(HOLD_SECONDS * 2)
    saga.settle()

    assert saga.booking(booking_id).status is S.CONFIRMED
    assert saga.ledger(booking_id) == [("authorize", PRICE), ("capture", PRICE)]
    assert event_counts(saga.store) == before


def test_a_flaky_gateway_is_asked_again_and_the_booking_captured_once(saga: MemorySaga) -> None:
    """``tok_flaky`` fails the first two calls of each key: the jobs retry them later."""
    flight_id = saga.schedule_flight()
    booking_id = saga.request_booking(flight_id, token="tok_flaky")

    for _ in range(10):
        saga.settle()
        if saga.ledger(booking_id)[-1:] == [("capture", PRICE)]:
            break
        saga.advance(5)  # past the longest backoff of the first attempts

    assert saga.booking(booking_id).status is S.CONFIRMED
    assert saga.ledger(booking_id) == [("authorize", PRICE), ("capture", PRICE)]


# -- rejections --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("token", "reason"),
    [("tok_declined", "card_declined"), ("tok_insufficient_funds", "insufficient_funds")],
)
def test_a_declined_payment_rejects_the_booking_and_gives_the_seats_back(
    saga: MemorySaga, token: str, reason: str
) -> None:
    flight_id = saga.schedule_flight(seats=10)
    booking_id = saga.request_booking(flight_id, token=token, passengers=3)

    saga.settle()

    booking = saga.booking(booking_id)
    flight = saga.flight(flight_id)
    payment = saga.payment(booking_id)
    assert (booking.status, booking.reason) == (S.REJECTED, "PAYMENT_DECLINED")
    assert (flight.seats_left("Y"), flight.held("Y"), flight.sold("Y")) == (10, 0, 0)
    assert payment is not None
    assert (payment.status, payment.decline_reason) == (PaymentStatus.DECLINED, reason)
    assert saga.ledger(booking_id) == []
    assert saga.pending_jobs() == set()


def test_a_booking_that_finds_no_seats_is_rejected_without_asking_for_payment(
    saga: MemorySaga,
) -> None:
    flight_id = saga.schedule_flight(seats=1)
    first = saga.request_booking(flight_id)
    second = saga.request_booking(flight_id)
    too_many = saga.request_booking(flight_id, passengers=2)

    saga.settle()

    assert saga.booking(first).status is S.CONFIRMED
    for booking_id in (second, too_many):
        booking = saga.booking(booking_id)
        assert (booking.status, booking.reason) == (S.REJECTED, "NO_SEATS")
        assert saga.payment(booking_id) is None
        assert saga.ledger(booking_id) == []
    assert saga.flight(flight_id).sold("Y") == 1


def test_a_booking_of_a_flight_that_does_not_exist_is_rejected_as_no_seats(
    saga: MemorySaga,
) -> None:
    """There is no rejection reason for an unknown flight: the saga says ``NO_SEATS``."""
    booking_id = saga.request_booking(uuid.uuid4())

    saga.settle()

    booking = saga.booking(booking_id)
    assert (booking.status, booking.reason) == (S.REJECTED, "NO_SEATS")
    assert saga.payment(booking_id) is None
    assert saga.pending_jobs() == set()


def test_a_booking_of_a_flight_cancelled_before_its_seats_were_held_is_rejected(
    saga: MemorySaga,
) -> None:
    flight_id = saga.schedule_flight()
    booking_id = saga.request_booking(flight_id)
    saga.cancel_flight(flight_id)

    saga.settle()

    booking = saga.booking(booking_id)
    assert (booking.status, booking.reason) == (S.REJECTED, "FLIGHT_CANCELLED")
    assert saga.flight(flight_id).bookings_on_flight() == set()
    assert saga.ledger(booking_id) == []


def test_a_booking_answered_after_the_flight_departed_is_rejected(saga: MemorySaga) -> None:
    """A departed flight is "not bookable" too; the booking's reason says FLIGHT_CANCELLED."""
    flight_id = saga.schedule_flight(departure=START + dt.timedelta(hours=2))
    booking_id = saga.request_booking(flight_id)

    saga.advance(3 * 3600)
    saga.settle()

    booking = saga.booking(booking_id)
    assert (booking.status, booking.reason) == (S.REJECTED, "FLIGHT_CANCELLED")
    assert saga.flight(flight_id).seats_left("Y") == 10


def test_a_payment_that_never_answers_lets_the_hold_expire_and_gives_the_seats_back(
    saga: MemorySaga,
) -> None:
    flight_id = saga.schedule_flight(seats=4)
    booking_id = saga.request_booking(flight_id, token="tok_timeout", passengers=2)
    saga.settle()
    saga.advance(HOLD_SECONDS - 1)
    saga.settle()
    assert saga.booking(booking_id).status is S.SEATS_HELD
    assert saga.flight(flight_id).held("Y") == 2

    saga.advance(2)  # past the deadline
    saga.settle()

    booking = saga.booking(booking_id)
    flight = saga.flight(flight_id)
    assert (booking.status, booking.reason) == (S.REJECTED, "HOLD_EXPIRED")
    assert (flight.held("Y"), flight.seats_left("Y")) == (0, 4)
    assert saga.payment(booking_id) is None
    assert saga.ledger(booking_id) == []
    assert saga.pending_jobs() == set()


def test_a_hold_that_expires_while_the_confirmation_is_pending_rejects_and_voids(
    stepwise_saga: MemorySaga,
) -> None:
    """The payment was authorized, but the hold expired before the saga confirmed it."""
    saga = stepwise_saga
    flight_id = saga.schedule_flight()
    booking_id = saga.request_booking(flight_id)
    saga.run_until(status_is(saga, booking_id, S.PAYMENT_AUTHORIZED))

    saga.advance(HOLD_SECONDS + 1)
    saga.run_jobs()  # the hold expires before Booking.PaymentAuthorized is answered
    saga.settle()

    booking = saga.booking(booking_id)
    payment = saga.payment(booking_id)
    assert (booking.status, booking.reason) == (S.REJECTED, "HOLD_EXPIRED")
    assert saga.flight(flight_id).seats_left("Y") == 10
    assert payment is not None
    assert payment.status is PaymentStatus.VOIDED
    assert saga.ledger(booking_id) == [("authorize", PRICE), ("void", PRICE)]
    assert "hold already gone" in saga.notes


# -- cancellation by the customer ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("stage", "ledger", "payment_status"),
    [
        (S.REQUESTED, [], None),
        (S.SEATS_HELD, [], None),
        (S.PAYMENT_AUTHORIZED, [("authorize", 2 * PRICE), ("void", 2 * PRICE)], "VOIDED"),
    ],
)
def test_a_booking_cancelled_before_confirmation_gets_its_seats_back_and_is_not_charged(
    stepwise_saga: MemorySaga,
    stage: BookingStatus,
    ledger: list[tuple[str, int]],
    payment_status: str | None,
) -> None:
    """Before confirmation nothing was captured: an authorization is voided, nothing refunded."""
    saga = stepwise_saga
    flight_id = saga.schedule_flight(seats=5, refundable=True)
    booking_id = saga.request_booking(flight_id, passengers=2)
    saga.run_until(status_is(saga, booking_id, stage))

    saga.cancel_booking(booking_id)
    saga.settle()

    booking = saga.booking(booking_id)
    flight = saga.flight(flight_id)
    payment = saga.payment(booking_id)
    assert (booking.status, booking.reason) == (S.CANCELLED, "CUSTOMER")
    assert (booking.cancelled_by, booking.refund_amount) == ("alice", 0)
    assert (flight.seats_left("Y"), flight.held("Y"), flight.sold("Y")) == (5, 0, 0)
    assert saga.ledger(booking_id) == ledger
    assert (payment.status if payment else None) == payment_status
    assert saga.pending_jobs() == set()


@pytest.mark.parametrize(
    ("refundable", "ledger", "payment_status"),
    [
        (False, [("authorize", 2 * PRICE), ("capture", 2 * PRICE)], PaymentStatus.CAPTURED),
        (
            True,
            [("authorize", 2 * PRICE), ("capture", 2 * PRICE), ("refund", 2 * PRICE)],
            PaymentStatus.REFUNDED,
        ),
    ],
)
def test_a_confirmed_booking_cancelled_is_refunded_per_its_fare_and_its_seats_resold(
    saga: MemorySaga,
    refundable: bool,
    ledger: list[tuple[str, int]],
    payment_status: PaymentStatus,
) -> None:
    flight_id = saga.schedule_flight(seats=5, refundable=refundable)
    booking_id = saga.request_booking(flight_id, passengers=2)
    saga.settle()

    saga.cancel_booking(booking_id)
    saga.settle()

    booking = saga.booking(booking_id)
    flight = saga.flight(flight_id)
    payment = saga.payment(booking_id)
    assert booking.status is S.CANCELLED
    assert booking.refund_amount == (2 * PRICE if refundable else 0)
    assert (flight.seats_left("Y"), flight.sold("Y")) == (5, 0)
    assert saga.ledger(booking_id) == ledger
    assert payment is not None
    assert payment.status is payment_status
    assert payment.refunded_amount == booking.refund_amount


def test_a_non_refundable_booking_cancelled_before_its_capture_ran_is_still_charged(
    saga: MemorySaga,
) -> None:
    """The fare's rule must not depend on whether the capture job ran before the cancel."""
    flight_id = saga.schedule_flight(refundable=False)
    booking_id = saga.request_booking(flight_id)
    saga.run_until(status_is(saga, booking_id, S.CONFIRMED))  # Booking.Confirmed unanswered

    saga.cancel_booking(booking_id)
    saga.settle()

    assert saga.booking(booking_id).refund_amount == 0
    assert saga.ledger(booking_id) == [("authorize", PRICE), ("capture", PRICE)]


# -- cancellation of the flight ----------------------------------------------------------------


def test_a_cancelled_flight_cancels_every_booking_on_it_and_refunds_the_paid_ones(
    saga: MemorySaga,
) -> None:
    flight_id = saga.schedule_flight(seats=6, refundable=False)
    paid = [saga.request_booking(flight_id, customer=c) for c in ("alice", "bob")]
    held = saga.request_booking(flight_id, customer="carol", token="tok_timeout")
    declined = saga.request_booking(flight_id, customer="dave", token="tok_declined")
    saga.settle()

    saga.cancel_flight(flight_id)
    late = saga.request_booking(flight_id, customer="erin")
    saga.settle()

    for booking_id in (*paid, held):
        booking = saga.booking(booking_id)
        assert (booking.status, booking.reason) == (S.CANCELLED, "FLIGHT_CANCELLED")
        assert booking.cancelled_by == "system"
    for booking_id in paid:
        assert saga.booking(booking_id).refund_amount == PRICE  # even on a non-refundable fare
        assert saga.ledger(booking_id) == [
            ("authorize", PRICE),
            ("capture", PRICE),
            ("refund", PRICE),
        ]
    assert saga.ledger(held) == []
    assert outcome(saga, declined) == (S.REJECTED, "PAYMENT_DECLINED")
    assert outcome(saga, late) == (S.REJECTED, "FLIGHT_CANCELLED")
    flight = saga.flight(flight_id)
    assert flight.status is FlightStatus.CANCELLED
    assert (flight.held("Y"), flight.sold("Y")) == (0, 0)
    assert saga.pending_jobs() == set()


def test_a_flight_cancelled_while_a_hold_awaits_confirmation_cancels_and_voids(
    stepwise_saga: MemorySaga,
) -> None:
    saga = stepwise_saga
    flight_id = saga.schedule_flight()
    booking_id = saga.request_booking(flight_id)
    saga.run_until(status_is(saga, booking_id, S.PAYMENT_AUTHORIZED))  # hold not yet confirmed

    saga.cancel_flight(flight_id)
    saga.settle()

    booking = saga.booking(booking_id)
    assert (booking.status, booking.reason) == (S.CANCELLED, "FLIGHT_CANCELLED")
    assert saga.ledger(booking_id) == [("authorize", PRICE), ("void", PRICE)]


# -- races and repeats ---------------------------------------------------------------------------


def test_an_authorization_that_lands_after_the_booking_ended_is_voided() -> None:
    """The customer cancels while the gateway is authorizing, and the cancellation is fully
    handled (seats back, nothing to settle yet) before the authorization is stored."""
    gateway = InterruptingGateway()
    saga = MemorySaga(gateway=gateway)
    flight_id = saga.schedule_flight()
    booking_id = saga.request_booking(flight_id)

    def customer_cancels() -> None:
        saga.cancel_booking(booking_id)
        saga.settle()
        assert saga.payment(booking_id) is None

    gateway.before_authorize = customer_cancels
    saga.settle()

    booking = saga.booking(booking_id)
    payment = saga.payment(booking_id)
    assert booking.status is S.CANCELLED
    assert payment is not None
    assert payment.status is PaymentStatus.VOIDED
    assert saga.ledger(booking_id) == [("authorize", PRICE), ("void", PRICE)]
    assert saga.flight(flight_id).seats_left("Y") == 10
    assert saga.pending_jobs() == set()
    assert "late authorization to void" in saga.notes


def test_an_authorization_stored_just_before_the_cancellation_is_voided(
    saga: MemorySaga,
) -> None:
    flight_id = saga.schedule_flight()
    booking_id = saga.request_booking(flight_id)
    saga.run_until(lambda: saga.payment(booking_id) is not None)  # Payment.Authorized unanswered

    saga.cancel_booking(booking_id)
    saga.settle()

    assert saga.booking(booking_id).status is S.CANCELLED
    assert saga.ledger(booking_id) == [("authorize", PRICE), ("void", PRICE)]
    assert "late authorization to void" in saga.notes


def test_seats_held_for_a_booking_that_ended_meanwhile_are_given_back(
    saga: MemorySaga,
) -> None:
    """The seats are held, and the booking cancelled, before the hold is answered."""
    flight_id = saga.schedule_flight(seats=3)
    booking_id = saga.request_booking(flight_id, passengers=3)
    hold = saga.steps.decide(saga.last(Booking.Requested, booking_id), "c")
    assert hold is not None
    hold.target.record(*hold.aggregates, rows=hold.rows)
    saga.cancel_booking(booking_id)

    step = saga.steps.decide(saga.last(FlightInventory.SeatsHeld, booking_id), "c")

    assert step is not None
    assert step.note == "late hold released"
    step.target.record(*step.aggregates, rows=step.rows)
    assert saga.flight(flight_id).seats_left("Y") == 3
    assert saga.pending_jobs() == set()
    assert saga.booking(booking_id).status is S.CANCELLED


def scenario_confirmed(saga: MemorySaga) -> uuid.UUID:
    return saga.request_booking(saga.schedule_flight())


def scenario_refunded(saga: MemorySaga) -> uuid.UUID:
    booking_id = saga.request_booking(saga.schedule_flight(refundable=True))
    saga.settle()
    saga.cancel_booking(booking_id)
    return booking_id


def scenario_declined(saga: MemorySaga) -> uuid.UUID:
    return saga.request_booking(saga.schedule_flight(), token="tok_declined")


def scenario_expired(saga: MemorySaga) -> uuid.UUID:
    booking_id = saga.request_booking(saga.schedule_flight(), token="tok_timeout")
    saga.settle()
    saga.advance(HOLD_SECONDS + 1)
    return booking_id


def scenario_flight_cancelled(saga: MemorySaga) -> uuid.UUID:
    flight_id = saga.schedule_flight()
    booking_id = saga.request_booking(flight_id)
    saga.settle()
    saga.cancel_flight(flight_id)
    return booking_id


@pytest.mark.parametrize(
    "scenario",
    [
        scenario_confirmed,
        scenario_refunded,
        scenario_declined,
        scenario_expired,
        scenario_flight_cancelled,
    ],
)
def test_every_step_answered_again_stores_nothing(
    saga: MemorySaga, scenario: Callable[[MemorySaga], uuid.UUID]
) -> None:
    """Each event of a finished booking, answered a second time (a redelivery), decides no
    event, and the jobs its rows may schedule again find nothing to do."""
    booking_id = scenario(saga)
    saga.settle()
    counts = event_counts(saga.store)
    ledger = saga.ledger(booking_id)
    events = [event for app in saga.store for event, _meta in stored(app)]

    decided = []
    for event in events:
        step = saga.steps.decide(event, "again")
        if step is None:
            continue
        decided.append((type(event).__qualname__, step.note))
        assert [a.pending_events for a in step.aggregates if a.pending_events] == [], step.note
        step.target.record(*step.aggregates, rows=step.rows)
    saga.settle()
    saga.advance(HOLD_SECONDS + 1)
    saga.settle()

    assert decided
    assert event_counts(saga.store) == counts
    assert saga.ledger(booking_id) == ledger
    assert saga.pending_jobs() == set()


def test_an_expiry_job_rescheduled_by_a_repeat_leaves_a_sold_booking_alone(
    saga: MemorySaga,
) -> None:
    """Answering ``Booking.Requested`` again schedules a new hold expiry; it finds no hold."""
    flight_id = saga.schedule_flight()
    booking_id = saga.request_booking(flight_id)
    saga.settle()
    requested = saga.last(Booking.Requested, booking_id)

    step = saga.steps.decide(requested, "again")
    assert step is not None
    step.target.record(*step.aggregates, rows=step.rows)

    assert saga.pending_jobs() == {(booking_id, JobKind.EXPIRE_HOLD)}
    saga.advance(HOLD_SECONDS + 1)
    saga.settle()
    assert saga.pending_jobs() == set()
    assert saga.flight(flight_id).sold("Y") == 1


# -- a property: seats are never sold twice ------------------------------------------------------


@hypothesis_settings(max_examples=25, deadline=None)
@given(
    seats=st.integers(1, 4),
    parties=st.lists(
        st.tuples(st.integers(1, 3), st.sampled_from(["tok_ok", "tok_declined"])),
        min_size=1,
        max_size=5,
    ),
)
def test_whatever_is_asked_seats_sold_match_the_confirmed_bookings_and_their_captures(
    seats: int, parties: list[tuple[int, str]]
) -> None:
    saga = MemorySaga()
    flight_id = saga.schedule_flight(seats=seats)
    booked = [
        (saga.request_booking(flight_id, passengers=n, token=token), n) for n, token in parties
    ]

    saga.settle()

    flight = saga.flight(flight_id)
    confirmed = 0
    for booking_id, passengers in booked:
        booking = saga.booking(booking_id)
        if booking.status is S.CONFIRMED:
            confirmed += passengers
            expected = [("authorize", passengers * PRICE), ("capture", passengers * PRICE)]
            assert saga.ledger(booking_id) == expected
        else:
            assert booking.status is S.REJECTED
            assert booking.reason in {"NO_SEATS", "PAYMENT_DECLINED"}
            assert saga.ledger(booking_id) == []
    assert flight.sold("Y") == confirmed <= seats
    assert flight.held("Y") == 0
    assert saga.pending_jobs() == set()
