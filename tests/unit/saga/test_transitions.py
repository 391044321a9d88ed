"""The saga's declared table (:mod:`flightbook.saga.transitions`) against what its steps do.

Every step decided here, by the follower or by hand, is checked against its row: the row
for (event type, note) exists, the step writes the row's context, stores only events the
row names and schedules only the row's jobs. Every job run is checked against
:data:`~flightbook.saga.transitions.JOBS` the same way. The scenarios together must
reach every outcome of the table, so the table can hold no stale row.

The follower answers the logs in its natural order (bookings, inventory, payments, each
to its end); the races it cannot produce (a hold answered after the booking ended, an
event answered twice) are made by a driver that answers chosen events in a chosen order.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import pytest
from eventsourcing.domain import DomainEvent

from flightbook.domain.booking import Booking, BookingStatus
from flightbook.domain.inventory import FlightInventory
from flightbook.domain.payment import Payment
from flightbook.domain.subject import DataSubject, ErasureReason
from flightbook.payments.budget import TimeoutBudget
from flightbook.payments.resilience import ResilientGateway
from flightbook.saga.jobs import DropJob, Job, JobKind, ScheduleJob
from flightbook.saga.runner import JobDone, JobRunner, Loaded
from flightbook.saga.steps import SagaSteps, Step
from flightbook.saga.transitions import (
    JOBS,
    TRANSITIONS,
    UNANSWERED,
    answered_events,
    transition,
)
from tests.support.memory import HOLD_SECONDS, Clock, MemorySaga, memory_store, save

pytestmark = pytest.mark.unit

B, F, P = Booking, FlightInventory, Payment
S = BookingStatus
Outcome = tuple[type, str]
"""An event type and the note of one outcome of its step."""


@dataclass
class Coverage:
    """What the checked steps and jobs did."""

    outcomes: set[Outcome] = field(default_factory=set)
    causes: set[type] = field(default_factory=set)
    jobs: set[JobKind] = field(default_factory=set)
    job_causes: set[tuple[JobKind, type]] = field(default_factory=set)


def check_step(event: object, step: Step) -> None:
    """The step agrees with its row of TRANSITIONS (to be called before it is recorded)."""
    row = transition(type(event), step.note)  # KeyError: an outcome the table does not declare
    where = f"{type(event).__qualname__} -> {step.note!r}"
    assert step.target.spec.name == row.writes, where
    caused = {type(e) for a in step.aggregates for e in a.pending_events}
    assert caused <= set(row.causes), f"{where} stores {caused - set(row.causes)}"
    scheduled = {r.kind for r in step.rows if isinstance(r, ScheduleJob)}
    assert scheduled <= set(row.jobs), f"{where} schedules {scheduled - set(row.jobs)}"
    assert all(isinstance(r, ScheduleJob | DropJob) for r in step.rows), where


class CheckedSteps(SagaSteps):
    """The saga's decisions, each checked against the table and counted."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.coverage = Coverage()

    def decide(self, event: object, correlation_id: str) -> Step | None:
        step = super().decide(event, correlation_id)
        if step is not None:
            check_step(event, step)
            self.coverage.outcomes.add((type(event), step.note))
            self.coverage.causes |= {type(e) for a in step.aggregates for e in a.pending_events}
        return step


class CheckedRunner(JobRunner):
    """The job runner, each job's stored events checked against JOBS and counted."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.coverage = Coverage()

    def prepare(self, job: Job, loaded: Loaded | None = None) -> JobDone:
        done = super().prepare(job, loaded)
        (row,) = [j for j in JOBS if j.kind is job.kind]
        for app, aggregates, _rows in done.writes:
            caused = {type(e) for a in aggregates for e in a.pending_events}
            if app.spec.name != row.writes:
                assert caused == set(), f"{job.kind} would write {caused} to {app.spec.name}"
                continue
            assert caused <= set(row.causes), f"{job.kind} would store {caused - set(row.causes)}"
            self.coverage.job_causes |= {(job.kind, c) for c in caused}
        self.coverage.jobs.add(job.kind)
        return done


class Decided(NamedTuple):
    note: str
    caused: list[type]


class Driver:
    """A :class:`MemorySaga` whose steps and jobs are checked, plus a hand to answer events."""

    def __init__(self) -> None:
        self.saga = MemorySaga(steps_class=CheckedSteps, runner_class=CheckedRunner)
        steps, runner = self.saga.steps, self.saga.runner
        assert isinstance(steps, CheckedSteps)
        assert isinstance(runner, CheckedRunner)
        self.coverage = steps.coverage
        runner.coverage = self.coverage

    def decide(self, event: object) -> Decided:
        """Answer ``event`` now and store the step, as the follower would (without tracking)."""
        step = self.saga.steps.decide(event, "c")
        assert step is not None, f"the saga does not answer {type(event).__qualname__}"
        caused = [type(e) for a in step.aggregates for e in a.pending_events]
        step.target.record(*step.aggregates, rows=step.rows)
        return Decided(step.note, caused)

    def answer(self, booking_id: uuid.UUID, *event_types: type) -> list[str]:
        """Answer by hand the newest event of each type about the booking, in this order."""
        return [self.decide(self.saga.last(t, booking_id)).note for t in event_types]

    def until(self, booking_id: uuid.UUID, status: BookingStatus) -> None:
        self.saga.run_until(lambda: self.saga.booking(booking_id).status is status)

    def authorized_by_hand(self, flight_id: uuid.UUID) -> uuid.UUID:
        """A booking on the flight, its events answered by hand until the payment is authorized."""
        booking_id = self.saga.request_booking(flight_id)
        self.answer(booking_id, B.Requested, F.SeatsHeld, B.SeatsHeld)
        self.saga.run_jobs()  # authorizes
        return booking_id

    def cancel_once(self, status: BookingStatus) -> uuid.UUID:
        """A new booking, cancelled once it reaches ``status``; the saga then settles."""
        booking_id = self.saga.request_booking(self.saga.schedule_flight())
        self.until(booking_id, status)
        self.saga.cancel_booking(booking_id)
        self.saga.settle()
        return booking_id


@dataclass(frozen=True)
class Scenario:
    run: Callable[[Driver], None]
    reaches: frozenset[Outcome]


SCENARIOS: dict[str, Scenario] = {}


def scenario(*reaches: Outcome) -> Callable[[Callable[[Driver], None]], Callable[[Driver], None]]:
    """Register a scenario with the outcomes it is there to reach."""

    def register(run: Callable[[Driver], None]) -> Callable[[Driver], None]:
        SCENARIOS[run.__name__] = Scenario(run, frozenset(reaches))
        return run

    return register


# -- in the follower's order ---------------------------------------------------------------------


@scenario(
    (B.Requested, "seats held"),
    (F.SeatsHeld, "booking seats held"),
    (B.SeatsHeld, "payment to authorize"),
    (P.Authorized, "booking payment authorized"),
    (B.PaymentAuthorized, "hold confirmed"),
    (F.HoldConfirmed, "booking confirmed"),
    (B.Confirmed, "payment to capture"),
    (B.Cancelled, "seats given back"),
)
def confirmed_then_cancelled_and_refunded(d: Driver) -> None:
    booking_id = d.saga.request_booking(d.saga.schedule_flight(refundable=True))
    d.saga.settle()
    d.saga.cancel_booking(booking_id)
    d.saga.settle()
    assert [op for op, _ in d.saga.ledger(booking_id)] == ["authorize", "capture", "refund"]


@scenario((P.Declined, "booking rejected: payment declined"), (B.Rejected, "seats given back"))
def declined(d: Driver) -> None:
    d.saga.request_booking(d.saga.schedule_flight(), token="tok_declined")
    d.saga.settle()


@scenario((P.Declined, "booking rejected: payment unavailable"), (B.Rejected, "seats given back"))
def payer_out_of_timeout_budget(d: Driver) -> None:
    """The payer's one timeout fills their budget: the retry is declined without a call."""
    d.saga.runner.gateway = ResilientGateway(
        d.saga.gateway,
        max_attempts=1,
        sleep=lambda _seconds: None,
        budget=TimeoutBudget(limit=1, window=300.0),
    )
    booking_id = d.saga.request_booking(d.saga.schedule_flight(), token="tok_timeout")
    d.saga.settle()
    assert d.saga.booking(booking_id).status is S.SEATS_HELD  # the call timed out
    d.saga.advance(60)  # the job is due again
    d.saga.settle()

    booking = d.saga.booking(booking_id)
    assert (booking.status, booking.reason) == (S.REJECTED, "PAYMENT_UNAVAILABLE")
    assert d.saga.flight(booking.flight_id).held("Y") == 0


@scenario((B.Requested, "no seats"))
def no_seats_left(d: Driver) -> None:
    flight_id = d.saga.schedule_flight(seats=1)
    d.saga.request_booking(flight_id)
    d.saga.request_booking(flight_id)
    d.saga.settle()


@scenario((B.Requested, "unknown flight"), (B.Rejected, "unknown flight"))
def unknown_flight(d: Driver) -> None:
    d.saga.request_booking(uuid.uuid4())
    d.saga.settle()


@scenario((B.Requested, "flight not bookable"), (F.FlightCancelled, "bookings cancelled"))
def flight_cancelled_before_the_hold(d: Driver) -> None:
    flight_id = d.saga.schedule_flight()
    d.saga.request_booking(flight_id)
    d.saga.cancel_flight(flight_id)
    d.saga.settle()


@scenario((B.Requested, "booking already ended"), (B.Cancelled, "seats given back"))
def cancelled_before_the_saga_answered(d: Driver) -> None:
    booking_id = d.saga.request_booking(d.saga.schedule_flight())
    d.saga.cancel_booking(booking_id)
    d.saga.settle()


@scenario((B.Cancelled, "unknown flight"))
def unknown_flight_cancelled_before_the_saga_answered(d: Driver) -> None:
    booking_id = d.saga.request_booking(uuid.uuid4())
    d.saga.cancel_booking(booking_id)
    d.saga.settle()


@scenario((F.HoldExpired, "booking rejected: hold expired"))
def hold_expired(d: Driver) -> None:
    d.saga.request_booking(d.saga.schedule_flight(), token="tok_timeout")
    d.saga.settle()
    d.saga.advance(HOLD_SECONDS + 1)
    d.saga.settle()


@scenario((B.SeatsHeld, "booking moved on"))
def cancelled_before_payment_was_asked_for(d: Driver) -> None:
    d.cancel_once(S.SEATS_HELD)


@scenario((B.PaymentAuthorized, "booking moved on"))
def cancelled_before_the_hold_was_confirmed(d: Driver) -> None:
    booking_id = d.cancel_once(S.PAYMENT_AUTHORIZED)
    assert [op for op, _ in d.saga.ledger(booking_id)] == ["authorize", "void"]


@scenario((B.PaymentAuthorized, "flight cancelled"))
def flight_cancelled_before_the_hold_was_confirmed(d: Driver) -> None:
    flight_id = d.saga.schedule_flight()
    booking_id = d.authorized_by_hand(flight_id)
    d.answer(booking_id, P.Authorized)
    d.saga.cancel_flight(flight_id)

    assert d.answer(booking_id, B.PaymentAuthorized) == ["flight cancelled"]
    assert d.answer(flight_id, F.FlightCancelled) == ["bookings cancelled"]
    assert d.answer(booking_id, B.Cancelled) == ["seats given back"]
    d.saga.run_jobs()  # voids

    assert d.saga.booking(booking_id).status is S.CANCELLED
    assert d.saga.flight(flight_id).held("Y") == 0
    assert [op for op, _ in d.saga.ledger(booking_id)] == ["authorize", "void"]


@scenario((B.PaymentAuthorized, "hold already gone"))
def hold_expired_before_it_was_confirmed(d: Driver) -> None:
    booking_id = d.saga.request_booking(d.saga.schedule_flight())
    d.until(booking_id, S.PAYMENT_AUTHORIZED)
    d.saga.advance(HOLD_SECONDS + 1)
    d.saga.run_jobs()
    d.saga.settle()


@scenario((F.HoldExpired, "booking already ended"))
def hold_expired_after_the_cancellation(d: Driver) -> None:
    booking_id = d.saga.request_booking(d.saga.schedule_flight(), token="tok_timeout")
    d.saga.settle()
    d.saga.cancel_booking(booking_id)
    d.saga.advance(HOLD_SECONDS + 1)
    d.saga.run_jobs()  # the hold expires before the cancellation is answered
    d.saga.settle()


@scenario((P.Authorized, "late authorization to void"))
def authorized_after_the_cancellation(d: Driver) -> None:
    booking_id = d.saga.request_booking(d.saga.schedule_flight())
    d.saga.run_until(lambda: d.saga.payment(booking_id) is not None)
    d.saga.cancel_booking(booking_id)
    d.saga.settle()
    assert [op for op, _ in d.saga.ledger(booking_id)] == ["authorize", "void"]


@scenario((P.Declined, "booking already ended"))
def declined_after_the_cancellation(d: Driver) -> None:
    booking_id = d.saga.request_booking(d.saga.schedule_flight(), token="tok_declined")
    d.saga.run_until(lambda: d.saga.payment(booking_id) is not None)
    d.saga.cancel_booking(booking_id)
    d.saga.settle()


@scenario((F.FlightCancelled, "bookings cancelled"), (B.Cancelled, "seats given back"))
def flight_cancelled_with_bookings_on_it(d: Driver) -> None:
    flight_id = d.saga.schedule_flight()
    sold = [d.saga.request_booking(flight_id) for _ in range(2)]
    held = d.saga.request_booking(flight_id, token="tok_timeout")
    d.saga.settle()
    d.saga.cancel_flight(flight_id)
    d.saga.settle()
    assert {d.saga.booking(b).status for b in (*sold, held)} == {S.CANCELLED}


# -- by hand, in orders the follower does not take -------------------------------------------------


@scenario((F.SeatsHeld, "late hold released"))
def hold_answered_after_the_booking_ended(d: Driver) -> None:
    flight_id = d.saga.schedule_flight()
    booking_id = d.saga.request_booking(flight_id)
    assert d.answer(booking_id, B.Requested) == ["seats held"]
    d.saga.cancel_booking(booking_id)
    assert d.answer(booking_id, F.SeatsHeld, B.Cancelled) == [
        "late hold released",
        "seats given back",
    ]
    assert d.saga.flight(flight_id).seats_left("Y") == 10


@scenario((F.SeatsHeld, "booking moved on"), (P.Authorized, "booking moved on"))
def events_answered_twice(d: Driver) -> None:
    booking_id = d.authorized_by_hand(d.saga.schedule_flight())

    notes = d.answer(booking_id, F.SeatsHeld, P.Authorized, P.Authorized)

    assert notes == ["booking moved on", "booking payment authorized", "booking moved on"]
    assert d.saga.booking(booking_id).status is S.PAYMENT_AUTHORIZED


@scenario((F.HoldConfirmed, "late confirmation undone"))
def confirmation_answered_after_the_booking_ended(d: Driver) -> None:
    flight_id = d.saga.schedule_flight()
    booking_id = d.authorized_by_hand(flight_id)
    assert d.answer(booking_id, P.Authorized, B.PaymentAuthorized)[-1] == "hold confirmed"
    d.saga.cancel_booking(booking_id)

    undone = d.decide(d.saga.last(F.HoldConfirmed, booking_id))
    d.answer(booking_id, B.Cancelled)
    d.saga.run_jobs()  # voids

    assert undone == Decided("late confirmation undone", [F.SoldSeatsReturned])
    assert d.saga.flight(flight_id).seats_left("Y") == 10
    assert [op for op, _ in d.saga.ledger(booking_id)] == ["authorize", "void"]


@scenario((F.HoldConfirmed, "booking not authorized"))
def hold_confirmed_for_a_booking_not_authorized(d: Driver) -> None:
    """No order of the saga's own events gets here (it confirms holds of authorized bookings
    only): the branch guards against a hold confirmed by someone else, as this test does."""
    flight_id = d.saga.schedule_flight()
    booking_id = d.saga.request_booking(flight_id)
    d.answer(booking_id, B.Requested, F.SeatsHeld)
    flight = d.saga.flight(flight_id)
    flight.confirm_hold(booking_id)
    save(d.saga.store.inventory, flight, actor="ops")

    assert d.answer(booking_id, F.HoldConfirmed) == ["booking not authorized"]
    assert d.saga.booking(booking_id).status is S.SEATS_HELD


# -- the tests ---------------------------------------------------------------------------------


def test_the_table_names_exactly_the_events_the_saga_answers() -> None:
    store = memory_store()
    steps = SagaSteps(store=store, hold_seconds=HOLD_SECONDS, clock=Clock())

    assert answered_events() == steps.answers()


def test_every_event_of_the_logs_is_answered_or_declared_unanswered() -> None:
    """A new event type needs a decision: a row of the table, or a place in UNANSWERED."""
    events = {
        value
        for aggregate in (Booking, FlightInventory, Payment, DataSubject)
        for value in vars(aggregate).values()
        if isinstance(value, type)
        and issubclass(value, DomainEvent)
        and value.__qualname__.count(".") == 1
        and value.__name__ not in {"Event", "Created"}
    }

    assert events == answered_events() | UNANSWERED
    assert answered_events() & UNANSWERED == set()


def test_the_saga_stores_nothing_for_an_erasure() -> None:
    d = Driver()
    flight_id = d.saga.schedule_flight()
    booking_id = d.saga.request_booking(flight_id)
    d.saga.settle()
    booking = d.saga.booking(booking_id)
    booking.erase_personal_data(ErasureReason.CUSTOMER_REQUEST)
    subject = DataSubject.open("alice")
    subject.erase(ErasureReason.CUSTOMER_REQUEST, bookings=1)
    save(d.saga.store.bookings, booking, subject, actor="dpo-1")
    before = {app.spec.name: app.recorder.max_notification_id() for app in d.saga.store}

    d.saga.settle()

    assert {app.spec.name: app.recorder.max_notification_id() for app in d.saga.store} == before
    assert d.saga.booking(booking_id).status is S.CONFIRMED


def test_no_outcome_is_declared_twice_for_one_event() -> None:
    declared = [(row.on, note) for row in TRANSITIONS for note in row.outcome]

    assert len(declared) == len(set(declared))


def test_every_kind_of_job_has_one_row() -> None:
    assert sorted(job.kind for job in JOBS) == sorted(JobKind)


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_each_scenario_reaches_its_outcomes_and_every_step_matches_the_table(name: str) -> None:
    d = Driver()

    SCENARIOS[name].run(d)

    assert SCENARIOS[name].reaches <= d.coverage.outcomes


def test_the_scenarios_reach_every_outcome_of_the_table_and_every_job() -> None:
    """So the table holds no row (or note, or caused event) that no step produces."""
    seen = Coverage()
    for entry in SCENARIOS.values():
        d = Driver()
        entry.run(d)
        seen.outcomes |= d.coverage.outcomes
        seen.causes |= d.coverage.causes
        seen.jobs |= d.coverage.jobs
        seen.job_causes |= d.coverage.job_causes

    declared = {(row.on, note) for row in TRANSITIONS for note in row.outcome}
    assert declared - seen.outcomes == set()
    assert {c for row in TRANSITIONS for c in row.causes} - seen.causes == set()
    assert seen.jobs == set(JobKind)
    assert {(job.kind, c) for job in JOBS for c in job.causes} - seen.job_causes == set()
