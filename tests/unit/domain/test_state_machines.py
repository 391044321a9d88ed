"""Stateful property tests: one hypothesis state machine per aggregate (STYLE G13).

Each machine drives its aggregate with random command sequences and checks that
refused commands record nothing and change nothing, that the aggregate's
invariants hold after every step, and that replaying the recorded events
(through eventsourcing's JSON mapper) rebuilds exactly the same state.
"""

from __future__ import annotations

import copy
import functools
import itertools
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from uuid import UUID, uuid4

import pytest
from eventsourcing.persistence import DatetimeAsISO, JSONTranscoder, Mapper, UUIDAsHex
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from flightbook.domain.booking import (
    ALLOWED_TRANSITIONS,
    Booking,
    BookingStatus,
    CancellationReason,
    RejectionReason,
)
from flightbook.domain.errors import DomainError, IllegalTransitionError, PaymentStateError
from flightbook.domain.inventory import FlightInventory, FlightStatus
from flightbook.domain.payment import (
    ALLOWED_PAYMENT_TRANSITIONS,
    Payment,
    PaymentStatus,
    payment_id_for,
)
from flightbook.domain.values import Cabin, Fare, Money
from tests.support.builders import a_booking

if TYPE_CHECKING:
    from collections.abc import Callable

    from eventsourcing.domain import Aggregate

pytestmark = pytest.mark.unit

SETTINGS = settings(max_examples=100, stateful_step_count=50, deadline=None)
START = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
BOOKINGS = [UUID(int=n) for n in range(1, 7)]


def json_mapper() -> Mapper[UUID]:
    transcoder = JSONTranscoder()
    transcoder.register(UUIDAsHex())
    transcoder.register(DatetimeAsISO())
    return Mapper(transcoder=transcoder)


MAPPER = json_mapper()


def replay(history: list[Any]) -> Any:
    """Rebuild an aggregate from its events, each stored and read back as JSON."""
    aggregate = None
    for domain_event in history:
        stored = MAPPER.to_stored_event(domain_event)
        aggregate = MAPPER.to_domain_event(stored).mutate(aggregate)  # type: ignore[attr-defined]
    return aggregate


def attempt(aggregate: Aggregate, command: Callable[[], None]) -> list[Any] | DomainError:
    """Run a command; return its events, or the domain error that refused it.

    A refused command must record no event and leave the state untouched.
    """
    before = copy.deepcopy(aggregate)
    try:
        command()
    except DomainError as refusal:
        assert aggregate.collect_events() == []
        assert aggregate == before
        return refusal
    return list(aggregate.collect_events())


class InventoryMachine(RuleBasedStateMachine):
    """Whatever the commands, no fare is ever oversold, and the events replay."""

    def __init__(self) -> None:
        super().__init__()
        self.now = START
        self.inventory = FlightInventory.schedule(
            flight_number="FB101",
            origin="LHR",
            destination="JFK",
            departure=START + timedelta(hours=20),
            arrival=START + timedelta(hours=28),
            fares=[
                Fare(
                    code="Y",
                    cabin=Cabin.ECONOMY,
                    price=Money(45000, "EUR"),
                    seats=4,
                    refundable=False,
                    overbooking=1,
                ),
                Fare(
                    code="J",
                    cabin=Cabin.BUSINESS,
                    price=Money(250000, "EUR"),
                    seats=2,
                    refundable=True,
                ),
            ],
        )
        self.history: list[Any] = list(self.inventory.collect_events())
        self.cancel_after = 0

    @initialize(cancel_after=st.integers(min_value=0, max_value=20))
    def plan(self, cancel_after: int) -> None:
        # Cancelling ends all holds, so only allow it after this many events.
        self.cancel_after = cancel_after

    def _do(self, command: Callable[[], None]) -> list[Any] | None:
        outcome = attempt(self.inventory, command)
        if isinstance(outcome, DomainError):
            return None
        self.history += outcome
        return outcome

    @rule(
        booking=st.sampled_from(BOOKINGS),
        fare=st.sampled_from(["Y", "J", "F"]),
        seats=st.integers(min_value=0, max_value=4),
        ttl=st.integers(min_value=1, max_value=90),
    )
    def hold(self, booking: UUID, fare: str, seats: int, ttl: int) -> None:
        before = self.inventory.bookings_on_flight()
        expires_at = self.now + timedelta(minutes=ttl)

        events = self._do(
            lambda: self.inventory.hold_seats(booking, fare, seats, expires_at, now=self.now)
        )

        if events:
            assert booking not in before
            assert self.inventory.hold_of(booking) == (seats, expires_at)

    def _some_booking(self, data: st.DataObject, *, sold: bool = False) -> UUID:
        """Mostly a booking that has seats here (so commands succeed), else any booking."""
        with_seats = [
            booking
            for allocation in self.inventory.fares.values()
            for booking in (allocation.sold if sold else allocation.held)
        ]
        choices = st.sampled_from(BOOKINGS)
        if with_seats:
            choices = st.sampled_from(sorted(with_seats)) | choices
        return data.draw(choices)

    @rule(data=st.data())
    def confirm(self, data: st.DataObject) -> None:
        booking = self._some_booking(data)
        self._do(lambda: self.inventory.confirm_hold(booking))

    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        booking = self._some_booking(data)
        self._do(lambda: self.inventory.release_hold(booking, "released"))
        assert self.inventory.hold_of(booking) is None

    @rule(data=st.data())
    def expire(self, data: st.DataObject) -> None:
        booking = self._some_booking(data)
        events = self._do(lambda: self.inventory.expire_hold(booking, self.now))

        if events is not None:
            assert self.inventory.hold_of(booking) is None

    @rule()
    def expire_all_due(self) -> None:
        for booking in self.inventory.holds_expired_at(self.now):
            self._do(functools.partial(self.inventory.expire_hold, booking, self.now))

        assert self.inventory.holds_expired_at(self.now) == []
        deadline = self.inventory.next_hold_deadline()
        assert deadline is None or deadline > self.now

    @rule(data=st.data())
    def return_sold(self, data: st.DataObject) -> None:
        booking = self._some_booking(data, sold=True)
        self._do(lambda: self.inventory.return_sold_seats(booking, "booking cancelled"))

    @rule(
        fare=st.sampled_from(["Y", "J", "F"]),
        seats=st.none() | st.integers(min_value=-1, max_value=6),
        overbooking=st.none() | st.integers(min_value=-1, max_value=2),
        amount=st.none() | st.integers(min_value=0, max_value=300000),
    )
    def change_fare(
        self, fare: str, seats: int | None, overbooking: int | None, amount: int | None
    ) -> None:
        price = None if amount is None else Money(amount, "EUR")

        self._do(
            lambda: self.inventory.change_fare(
                fare, price=price, seats=seats, overbooking=overbooking
            )
        )

    @precondition(lambda self: len(self.history) > self.cancel_after)
    @rule()
    def cancel(self) -> None:
        self._do(lambda: self.inventory.cancel("weather"))

        assert self.inventory.status is FlightStatus.CANCELLED

    @rule(minutes=st.integers(min_value=1, max_value=120))
    def tick(self, minutes: int) -> None:
        self.now += timedelta(minutes=minutes)

    @invariant()
    def never_oversold(self) -> None:
        for code in self.inventory.fare_codes:
            fare = self.inventory.fare(code)
            committed = self.inventory.held(code) + self.inventory.sold(code)
            assert committed <= fare.seats + fare.overbooking
            assert self.inventory.seats_left(code) == fare.seats + fare.overbooking - committed

    @invariant()
    def a_booking_has_seats_in_one_place_only(self) -> None:
        places = [
            booking
            for allocation in self.inventory.fares.values()
            for booking in (*allocation.held, *allocation.sold)
        ]
        assert len(places) == len(set(places))

    @invariant()
    def replay_rebuilds_the_same_state(self) -> None:
        assert replay(self.history) == self.inventory


class BookingMachine(RuleBasedStateMachine):
    """Whatever the commands, the status follows the graph, and the events replay."""

    def __init__(self) -> None:
        super().__init__()
        self.booking: Booking
        self.history: list[Any] = []

    @initialize(
        refundable=st.booleans(),
        price=st.integers(min_value=0, max_value=10**7),
        finish_after=st.integers(min_value=0, max_value=3),
    )
    def request(self, refundable: bool, price: int, finish_after: int) -> None:
        # Rejecting or cancelling ends the story, so only allow it after this many
        # steps: otherwise few sequences would ever reach CONFIRMED.
        self.finish_after = finish_after
        self.booking = a_booking(
            uuid4(), customer="alice", sealed="sealed", price=price, refundable=refundable
        )
        self.history = list(self.booking.collect_events())

    def _transition(self, target: BookingStatus, command: Callable[[], None]) -> None:
        status = self.booking.status
        outcome = attempt(self.booking, command)
        if isinstance(outcome, DomainError):
            assert isinstance(outcome, IllegalTransitionError)
            assert target is not status
            assert target not in ALLOWED_TRANSITIONS[status]
        elif outcome:
            assert len(outcome) == 1
            assert target in ALLOWED_TRANSITIONS[status]
            assert self.booking.status is target
            self.history += outcome
        else:
            assert status is target

    def _may_finish(self) -> bool:
        return len(self.history) > self.finish_after

    @rule()
    def forward(self) -> None:
        """Take the next step of the happy path, whatever it is."""
        steps: dict[BookingStatus, Callable[[], None]] = {
            BookingStatus.REQUESTED: lambda: self.mark_seats_held(15),
            BookingStatus.SEATS_HELD: self.mark_payment_authorized,
            BookingStatus.PAYMENT_AUTHORIZED: self.confirm,
        }
        step = steps.get(self.booking.status)
        if step is not None:
            step()

    @rule(minutes=st.integers(min_value=1, max_value=30))
    def mark_seats_held(self, minutes: int) -> None:
        deadline = START + timedelta(minutes=minutes)
        self._transition(BookingStatus.SEATS_HELD, lambda: self.booking.mark_seats_held(deadline))

    @rule()
    def mark_payment_authorized(self) -> None:
        payment_id = payment_id_for(self.booking.id)
        self._transition(
            BookingStatus.PAYMENT_AUTHORIZED,
            lambda: self.booking.mark_payment_authorized(payment_id),
        )

    @rule()
    def confirm(self) -> None:
        self._transition(BookingStatus.CONFIRMED, self.booking.confirm)

    @precondition(_may_finish)
    @rule(reason=st.sampled_from(RejectionReason))
    def reject(self, reason: RejectionReason) -> None:
        self._transition(BookingStatus.REJECTED, lambda: self.booking.reject(reason))

    @precondition(_may_finish)
    @rule(reason=st.sampled_from(CancellationReason))
    def cancel(self, reason: CancellationReason) -> None:
        was_confirmed = self.booking.status is BookingStatus.CONFIRMED
        was_cancelled = self.booking.status is BookingStatus.CANCELLED

        self._transition(BookingStatus.CANCELLED, lambda: self.booking.cancel(reason, "alice"))

        if self.booking.status is BookingStatus.CANCELLED and not was_cancelled:
            full = self.booking.refundable or reason is CancellationReason.FLIGHT_CANCELLED
            expected = self.booking.price_amount if was_confirmed and full else 0
            assert self.booking.refund_amount == expected

    @invariant()
    def history_follows_the_graph(self) -> None:
        statuses = [BookingStatus.REQUESTED]
        names = {
            "SeatsHeld": BookingStatus.SEATS_HELD,
            "PaymentAuthorized": BookingStatus.PAYMENT_AUTHORIZED,
            "Confirmed": BookingStatus.CONFIRMED,
            "Rejected": BookingStatus.REJECTED,
            "Cancelled": BookingStatus.CANCELLED,
        }
        statuses += [names[type(e).__name__] for e in self.history[1:]]
        for current, following in itertools.pairwise(statuses):
            assert following in ALLOWED_TRANSITIONS[current]
        assert statuses[-1] is self.booking.status

    @invariant()
    def replay_rebuilds_the_same_state(self) -> None:
        assert replay(self.history) == self.booking


class PaymentMachine(RuleBasedStateMachine):
    """Whatever the commands, a payment follows its graph and never refunds too much."""

    def __init__(self) -> None:
        super().__init__()
        self.payment: Payment
        self.history: list[Any] = []

    @initialize(
        approved=st.booleans(),
        amount=st.integers(min_value=0, max_value=10**6),
        void_after=st.integers(min_value=0, max_value=1),
    )
    def open(self, approved: bool, amount: int, void_after: int) -> None:
        # Voiding ends the story: half the runs only try it after a capture.
        self.void_after = void_after
        booking_id = uuid4()
        if approved:
            self.payment = Payment.authorized(
                payment_id=payment_id_for(booking_id),
                booking_id=booking_id,
                amount=amount,
                currency="EUR",
                gateway_ref="auth",
            )
        else:
            self.payment = Payment.declined(
                payment_id=payment_id_for(booking_id),
                booking_id=booking_id,
                amount=amount,
                currency="EUR",
                reason="declined",
            )
        self.history = list(self.payment.collect_events())

    def _transition(self, target: PaymentStatus, command: Callable[[], None]) -> None:
        status = self.payment.status
        outcome = attempt(self.payment, command)
        if isinstance(outcome, DomainError):
            if target in ALLOWED_PAYMENT_TRANSITIONS[status]:
                # a legal refund may still be refused for its amount
                assert target is PaymentStatus.REFUNDED
                assert (outcome.code, outcome.field) == ("invalid_value", "amount")
            else:
                assert isinstance(outcome, PaymentStateError)
                assert target is not status
        elif outcome:
            assert len(outcome) == 1
            assert target in ALLOWED_PAYMENT_TRANSITIONS[status]
            assert self.payment.status is target
            self.history += outcome
        else:
            assert status is target

    @rule()
    def capture(self) -> None:
        self._transition(PaymentStatus.CAPTURED, lambda: self.payment.capture("cap"))

    @precondition(lambda self: len(self.history) > self.void_after)
    @rule()
    def void(self) -> None:
        self._transition(PaymentStatus.VOIDED, self.payment.void)

    @rule(extra=st.integers(min_value=-2, max_value=2), fraction=st.floats(0, 1))
    def refund(self, extra: int, fraction: float) -> None:
        amount = int(self.payment.amount * fraction) + extra
        self._transition(PaymentStatus.REFUNDED, lambda: self.payment.refund(amount, "ref"))

    @precondition(lambda self: self.payment.status is PaymentStatus.REFUNDED)
    @invariant()
    def refunds_stay_within_the_captured_amount(self) -> None:
        assert 0 < self.payment.refunded_amount <= self.payment.amount

    @invariant()
    def replay_rebuilds_the_same_state(self) -> None:
        assert replay(self.history) == self.payment


def test_inventory_is_never_oversold_and_replays() -> None:
    run_state_machine_as_test(InventoryMachine, settings=SETTINGS)


def test_booking_follows_its_status_graph_and_replays() -> None:
    run_state_machine_as_test(BookingMachine, settings=SETTINGS)


def test_payment_follows_its_status_graph_and_replays() -> None:
    run_state_machine_as_test(PaymentMachine, settings=SETTINGS)
