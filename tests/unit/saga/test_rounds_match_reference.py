"""The batched follower decides what the reference one does, whatever happens meanwhile.

Sagas on in-memory stores of their own are given the same random operations: flights
with few seats (some bookings find none), bookings with every kind of card token,
customer and flight cancellations, clock moves past hold deadlines and departures, due
jobs run at random points. One follows its logs one event per step (the reference
:class:`~flightbook.saga.follower.LogFollower`), one in rounds as the saga process does
(:class:`~flightbook.saga.rounds.RoundFollower`, rounds of 200). Both must be in the
same state after every operation, and so after everything settled. A third one reads
rounds of one to three notifications per log and is restarted at random (a fresh
follower: its cache and its memory of its own events gone); it is held to the
invariants only (see :func:`run_all`).

The two cannot take the same steps: one pass of the batched follower answers what the
reference needs several passes for (it folds a hold, the booking's ``SeatsHeld`` and the
payment job into one round). So an ``Answer`` drives each follower until it has answered
every stored event (one pass of the batched one must be enough) and the other operations
(a cancellation, a job run, a clock move) act only where both have answered everything.
A single pass of the reference has no batched counterpart: a customer cancelling after
it would meet a booking at an earlier stage than on the batched saga, and end with a
different, legitimate ledger (nothing, where the batched saga authorized and voided).
Partial progress is still everywhere: events stored by the command side or by jobs but
not yet answered, jobs due but not run, holds past their deadline whose expiry job has
not run, gateway calls waiting for their retry.

Booking ids are chosen by the test and equal in every run (jobs are claimed in order of
deadline, then booking id, so equal ids mean equal batches of jobs); flights are matched
by the order they were scheduled in. The runner's backoff jitter is pinned to its upper
bound, so a retried gateway call is due at the same time in every run.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flightbook.domain.booking import BookingStatus
from flightbook.domain.inventory import FlightStatus
from flightbook.domain.payment import PaymentStatus
from flightbook.eventstore.applications import EventStore
from flightbook.eventstore.metadata import recording
from flightbook.saga.rounds import RoundFollower
from tests.support.builders import a_booking
from tests.support.memory import (
    HOLD_SECONDS,
    PRICE,
    START,
    MemorySaga,
    cancel_booking,
    cancel_flight,
    event_counts,
    fare,
    schedule_flight,
)

pytestmark = pytest.mark.unit

S = BookingStatus
NAMESPACE = uuid.UUID("6f1c2b9e-3d4a-4e0b-9c7d-2a5b8e1f0c33")
TOKENS = (  # a good card is the common case
    "tok_ok",
    "tok_ok",
    "tok_ok",
    "tok_ok_gold",
    "tok_declined",
    "tok_insufficient_funds",
    "tok_timeout",
    "tok_flaky",
    "tok_unknown",
)
CUSTOMERS = ("alice", "bob", "carol")
DEFAULT_ROUND = 200
"""``RoundFollower``'s batch size."""


# -- the operations --------------------------------------------------------------------------------


@dataclass(frozen=True)
class FlightSpec:
    economy: int
    business: int  # 0: the flight has no fare J
    refundable: bool
    departs_soon: bool  # within hours of START, so a clock move may reach its departure


@dataclass(frozen=True)
class Book:
    flight: int  # an index into the flights (modulo their number); -1: a flight that does not exist
    fare: str
    passengers: int
    token: str
    customer: str


@dataclass(frozen=True)
class Cancel:
    booking: int  # an index into the bookings made so far (modulo their number)


@dataclass(frozen=True)
class CancelFlight:
    flight: int  # an index into the flights (modulo their number)


@dataclass(frozen=True)
class Answer:
    pass


@dataclass(frozen=True)
class RunJobs:
    pass


@dataclass(frozen=True)
class Settle:
    pass


@dataclass(frozen=True)
class Restart:
    pass


@dataclass(frozen=True)
class Advance:
    seconds: float


Op = Book | Cancel | CancelFlight | Answer | RunJobs | Settle | Restart | Advance

flight_specs = st.builds(
    FlightSpec,
    economy=st.integers(1, 5),
    business=st.integers(0, 2),
    refundable=st.booleans(),
    departs_soon=st.booleans(),
)
bookings = st.builds(
    Book,
    flight=st.sampled_from([0, 1, 2, 3, 4, 5, -1]),
    fare=st.sampled_from(["Y", "Y", "Y", "J"]),
    passengers=st.sampled_from([1, 1, 2]),
    token=st.sampled_from(TOKENS),
    customer=st.sampled_from(CUSTOMERS),
)
KINDS: dict[str, st.SearchStrategy[Op]] = {
    "book": bookings,
    "cancel": st.builds(Cancel, booking=st.integers(0, 30)),
    "cancel flight": st.builds(CancelFlight, flight=st.integers(0, 5)),
    "answer": st.just(Answer()),
    "jobs": st.just(RunJobs()),
    "settle": st.just(Settle()),
    "restart": st.just(Restart()),
    "advance": st.builds(
        Advance, seconds=st.sampled_from([1.0, 3.0, 30.0, 300.0, HOLD_SECONDS + 1, 7200.0])
    ),
}
WEIGHTS = {
    "book": 12,
    "answer": 8,
    "jobs": 8,
    "settle": 4,
    "advance": 4,
    "cancel": 5,
    "cancel flight": 1,
    "restart": 2,
}
operations: st.SearchStrategy[Op] = st.sampled_from(
    [kind for kind, weight in WEIGHTS.items() for _ in range(weight)]
).flatmap(KINDS.__getitem__)


# -- one run ---------------------------------------------------------------------------------------


class Run:
    """One saga given the operations.

    Args:
        flights: the flights scheduled first.
        batch_size: the batched follower's notifications per log and round (None: the
            reference follower).
        restarts: a ``Restart`` gives the batched follower a fresh start, as a new process
            would have (its cache and its memory of its own events gone); otherwise a
            ``Restart`` does nothing.
    """

    def __init__(
        self, flights: list[FlightSpec], batch_size: int | None, *, restarts: bool = False
    ) -> None:
        self.saga = MemorySaga(batched=batch_size is not None)
        self.batch_size = batch_size
        self.restarts = restarts
        if batch_size is not None and batch_size != DEFAULT_ROUND:
            self.restart()
        self.flights = [self._schedule(spec) for spec in flights]
        self.missing_flight = uuid.uuid5(NAMESPACE, "no such flight")
        self.bookings: list[tuple[uuid.UUID, Book]] = []

    @property
    def batched(self) -> bool:
        return self.batch_size is not None

    def restart(self) -> None:
        """A new round follower: positions from the tracking records, nothing in memory."""
        saga = self.saga
        assert self.batch_size is not None
        saga.follower = RoundFollower(
            store=saga.store,
            steps=saga.steps,
            postgres_url="",
            batch_size=self.batch_size,
            clock=saga.clock,
            on_step=lambda _source, note: saga.notes.append(note),
        )

    def _schedule(self, spec: FlightSpec) -> uuid.UUID:
        fares = [fare("Y", seats=spec.economy, refundable=spec.refundable)]
        if spec.business:
            fares.append(fare("J", seats=spec.business, refundable=True, price=2 * PRICE))
        departure = START + (dt.timedelta(hours=2) if spec.departs_soon else dt.timedelta(days=30))
        return schedule_flight(self.saga.store, departure=departure, fares=fares)

    def apply(self, op: Op) -> str:
        """Do ``op``; what was done (both runs must do the same)."""
        saga = self.saga
        match op:
            case Book():
                flight_id = (
                    self.flights[op.flight % len(self.flights)]
                    if op.flight >= 0
                    else self.missing_flight
                )
                booking_id = uuid.uuid5(NAMESPACE, f"booking {len(self.bookings)}")
                request_booking(saga.store, booking_id, flight_id, op)
                self.bookings.append((booking_id, op))
                return f"booked {booking_id}"
            case Cancel():
                if not self.bookings:
                    return "nothing to cancel"
                booking_id, book = self.bookings[op.booking % len(self.bookings)]
                if saga.booking(booking_id).is_final:
                    return f"{booking_id} already ended"
                cancel_booking(saga.store, booking_id, by=book.customer)
                return f"cancelled {booking_id}"
            case CancelFlight():
                index = op.flight % len(self.flights)
                cancel_flight(saga.store, self.flights[index])
                return f"cancelled flight {index}"
            case Answer():
                return self.answer()
            case RunJobs():
                return f"ran {saga.run_jobs()} jobs"
            case Settle():
                self.settle()
                return "settled"
            case Restart():
                if self.restarts:
                    self.restart()
                return "restarted"
            case Advance():
                saga.advance(op.seconds)
                return f"now {saga.clock.now.isoformat()}"

    def answer(self) -> str:
        """Answer every stored event: one pass of the batched follower, or the reference's
        passes until one reads nothing new."""
        saga = self.saga
        if self.batched:
            saga.answer()
            counts, jobs = event_counts(saga.store), saga.queue.jobs()
            saga.answer()  # only its own events come back: passed over, nothing decided
            assert (event_counts(saga.store), saga.queue.jobs()) == (counts, jobs), (
                "one pass of the batched follower left events to answer"
            )
            return "answered"
        for _ in range(50):
            if saga.answer() == 0:
                return "answered"
        raise AssertionError("the reference follower kept finding events")

    def settle(self) -> None:
        """Answer and run due jobs until nothing moves (``MemorySaga.settle`` runs the jobs
        between two passes of the reference: not a moment the batched saga has)."""
        for _ in range(50):
            self.answer()
            if self.saga.run_jobs() == 0:
                return
        raise AssertionError("the saga did not settle")

    def settle_for_good(self) -> None:
        """Move the clock past every deadline and retry until no job is left."""
        for _ in range(20):
            self.settle()
            if not self.saga.pending_jobs():
                return
            self.saga.advance(HOLD_SECONDS + 61)
        raise AssertionError(f"jobs never finished: {self.saga.pending_jobs()}")

    # -- what it ended with ---------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """Everything the saga decided, keyed so that two runs compare."""
        saga = self.saga
        bookings: dict[uuid.UUID, object] = {}
        payments: dict[uuid.UUID, object] = {}
        ledgers: dict[uuid.UUID, object] = {}
        for booking_id, _book in self.bookings:
            b = saga.booking(booking_id)
            bookings[booking_id] = (
                b.status,
                b.reason,
                b.refund_amount,
                b.was_confirmed,
                b.cancelled_by,
                b.hold_expires_at,
            )
            p = saga.payment(booking_id)
            payments[booking_id] = (
                None
                if p is None
                else (p.status, p.amount, p.refunded_amount, p.decline_reason, p.booking_id)
            )
            ledgers[booking_id] = saga.ledger(booking_id)
        flights = []
        for flight_id in self.flights:
            f = saga.flight(flight_id)
            seats = {code: (f.held(code), f.sold(code)) for code in f.fare_codes}
            holders = {
                code: (sorted(a.held), sorted(a.sold.items())) for code, a in f.fares.items()
            }
            flights.append((f.status, seats, holders))
        jobs = {key: row["due_at"] for key, row in saga.queue.jobs().items()}
        return {
            "bookings": bookings,
            "payments": payments,
            "ledgers": ledgers,
            "flights": flights,
            "jobs": jobs,
        }

    def check_invariants(self) -> None:
        """What holds at every moment: never oversold, never charged twice."""
        saga = self.saga
        for flight_id in self.flights:
            for code, allocation in saga.flight(flight_id).fares.items():
                assert allocation.committed <= allocation.fare.capacity, (flight_id, code)
        for booking_id, _book in self.bookings:
            operations = [operation for operation, _amount in saga.ledger(booking_id)]
            assert operations.count("authorize") <= 1, (booking_id, operations)
            assert operations.count("capture") <= 1, (booking_id, operations)
            assert operations.count("void") <= 1, (booking_id, operations)
            assert not {"capture", "void"} <= set(operations), (booking_id, operations)

    def check_settled(self) -> None:
        """What holds once everything settled: each booking ended and paid for as it should."""
        saga = self.saga
        assert saga.pending_jobs() == set()
        sold: dict[tuple[uuid.UUID, str], int] = {}
        for booking_id, book in self.bookings:
            booking = saga.booking(booking_id)
            payment = saga.payment(booking_id)
            ledger = saga.ledger(booking_id)
            amount = booking.price_amount
            assert booking.is_final or booking.status is S.CONFIRMED, booking.status
            if booking.status is S.CONFIRMED:
                sold[booking.flight_id, book.fare] = (
                    sold.get((booking.flight_id, book.fare), 0) + book.passengers
                )
                assert ledger == [("authorize", amount), ("capture", amount)]
                assert payment is not None
                assert payment.status is PaymentStatus.CAPTURED
            elif booking.was_confirmed:  # cancelled after its confirmation
                refund = booking.refund_amount
                assert payment is not None
                captured = [("authorize", amount), ("capture", amount)]
                if ledger == captured + ([("refund", refund)] if refund else []):
                    assert payment.status is (
                        PaymentStatus.REFUNDED if refund else PaymentStatus.CAPTURED
                    )
                    assert payment.refunded_amount == refund
                else:  # cancelled for all its money back before the capture ran: voided
                    assert refund == amount
                    assert ledger == [("authorize", amount), ("void", amount)]
                    assert payment.status is PaymentStatus.VOIDED
            else:  # never confirmed: nothing kept, an authorization released
                assert booking.refund_amount == 0
                assert ledger in ([], [("authorize", amount), ("void", amount)]), ledger
                if ledger:
                    assert payment is not None
                    assert payment.status is PaymentStatus.VOIDED
                else:
                    assert payment is None or payment.status is PaymentStatus.DECLINED
        for flight_id in self.flights:
            flight = saga.flight(flight_id)
            for code in flight.fare_codes:
                assert flight.held(code) == 0, (flight_id, code)
                assert flight.sold(code) == sold.get((flight_id, code), 0), (flight_id, code)
            if flight.status is FlightStatus.CANCELLED:
                assert all(flight.sold(code) == 0 for code in flight.fare_codes)


def request_booking(
    store: EventStore, booking_id: uuid.UUID, flight_id: uuid.UUID, op: Book
) -> None:
    """``tests.support.memory.request_booking`` under a chosen booking id."""
    flight = store.inventory.find_flight(flight_id)
    price, refundable = PRICE, False
    if flight is not None and op.fare in flight.fares:
        booked = flight.fare(op.fare)
        price, refundable = booked.price.amount, booked.refundable
    booking = a_booking(
        flight_id,
        customer=op.customer,
        token=op.token,
        passengers=op.passengers,
        price=price,
        refundable=refundable,
        fare=op.fare,
        sealed="pii1:sealed",
        booking_id=booking_id,
    )
    with recording(actor=op.customer):
        store.bookings.record(booking)


class _UpperBound:
    """``random`` for the job runner: its backoff jitter always picks the longest delay."""

    @staticmethod
    def uniform(_low: float, high: float) -> float:
        return high


# -- the property ----------------------------------------------------------------------------------


def compare(reference: Run, batched: Run, after: str) -> None:
    expected, found = reference.state(), batched.state()
    for part, value in expected.items():
        assert found[part] == value, f"{part} differ after {after}"


@settings(max_examples=60, deadline=None)
@given(
    flights=st.lists(flight_specs, min_size=1, max_size=3),
    ops=st.lists(operations, min_size=12, max_size=50),
    small_rounds=st.integers(1, 3),
)
def test_the_batched_saga_ends_where_the_reference_ends(
    flights: list[FlightSpec], ops: list[Op], small_rounds: int
) -> None:
    with mock.patch("flightbook.saga.runner.random", _UpperBound()):
        run_all(flights, ops, small_rounds)


def run_all(flights: list[FlightSpec], ops: list[Op], small_rounds: int) -> None:
    """The reference and the saga's batched follower in lockstep (rounds of 200: more than
    one pass of these scenarios finds in a log); a batched follower reading ``small_rounds``
    notifications per log and round, restarted at each ``Restart``, for the invariants.

    Rounds smaller than what waits in the logs interleave the three logs differently from
    the reference, which reads each log to its end before the next: a booking's
    ``Requested`` may then be answered after another booking's payment decline that the
    reference answers later, and get the seat that decline gave back. Both are correct;
    they are not the same. A restarted follower decides its own events again, which
    schedules their jobs again (found done when they run, but due at other times).
    """
    reference, batched = Run(flights, None), Run(flights, DEFAULT_ROUND)
    small = Run(flights, small_rounds, restarts=True)

    for number, op in enumerate(ops):
        done = reference.apply(op)
        assert batched.apply(op) == done
        small.apply(op)
        for run in (reference, batched, small):
            run.check_invariants()
        compare(reference, batched, f"operation {number}: {op} ({done})")
    for run in (reference, batched, small):
        run.settle_for_good()

    compare(reference, batched, "settling")
    for run in (reference, batched, small):
        run.check_invariants()
        run.check_settled()
