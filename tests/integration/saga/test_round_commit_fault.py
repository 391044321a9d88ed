"""A round that fails at its commit is lost whole or kept whole, and the saga goes on.

The saga's round follower (ADR 0020) stores everything a round decided in ONE transaction.
These tests break that transaction's edge on purpose, against real PostgreSQL, with 20
bookings on a flight of 15 seats so that a round holds many decisions:

- *before the commit*: the round's batch is refused before anything is written, as a
  dropped connection or a crash at that moment would; nothing of the round may be stored;
- *at the commit*: the batch was written in the round's transaction, then the COMMIT
  failed (the server died at that moment) and the transaction is rolled back: nothing of
  the round may be stored, and nothing the round changed in the saga's memory may be
  built on (a round that did once stored a flight's later events over a gap);
- *after the commit*: the transaction committed, then the process failed before it
  learned so (its positions, its memory of its own events): the round is stored, and
  whatever follows must not repeat it.

Each failure is met as the saga process meets it (``SagaProcess._guard``): a lost
connection (``psycopg.OperationalError``) is an outage ridden out in the follower's
thread, which enters ``LogFollower.run`` again (positions read again from the tracking
records, the follower's cache and memory kept); any other error stops the process, and
its supervisor starts a new one (here a new store and a new saga: nothing kept in
memory). Either way every booking must reach the end it would have reached without the
failure, with each of its events stored once and the gateway asked once.
"""

from __future__ import annotations

import contextlib
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import psycopg
import pytest

from flightbook.config.settings import Settings
from flightbook.domain.booking import BookingStatus
from flightbook.domain.payment import payment_id_for
from flightbook.eventstore import batch as batches
from flightbook.eventstore.applications import ContextApplication, EventStore
from flightbook.eventstore.batch import Batch
from flightbook.runtime.outages import unavailable_server
from flightbook.saga import rounds
from flightbook.saga.follower import LogFollower
from tests.support.saga import SagaHarness, make_harness
from tests.support.writeside import WriteSide

pytestmark = pytest.mark.integration

PRICE = 45000
SEATS = 15
TOKENS = [
    "tok_ok",
    "tok_ok",
    "tok_ok",
    "tok_declined",
    "tok_ok",
    "tok_flaky",
    "tok_ok",
    "tok_ok",
    "tok_insufficient_funds",
    "tok_ok",
    "tok_flaky",
    "tok_ok",
    "tok_ok",
    "tok_ok",
    "tok_declined",
    # no seat left for these: rejected without a payment
    "tok_ok",
    "tok_ok",
    "tok_declined",
    "tok_ok",
    "tok_ok",
]
FAULTY_ROUNDS = frozenset({1, 3})
"""The rounds (counted over every saga the test starts) whose commit fails: the first one
holds the seats of all 20 bookings, the third answers the gateway's authorizations."""

Outcome = Literal["confirmed", "declined", "no seats"]
When = Literal["before", "at", "after"]


def expected_outcome(index: int, token: str) -> Outcome:
    if index >= SEATS:
        return "no seats"
    return "declined" if token in {"tok_declined", "tok_insufficient_funds"} else "confirmed"


EXPECTED_EVENTS: dict[Outcome, dict[str, list[str]]] = {
    "confirmed": {
        "bookings": [
            "Booking.Requested",
            "Booking.SeatsHeld",
            "Booking.PaymentAuthorized",
            "Booking.Confirmed",
        ],
        "inventory": ["FlightInventory.SeatsHeld", "FlightInventory.HoldConfirmed"],
        "payments": ["Payment.Authorized", "Payment.Captured"],
    },
    "declined": {
        "bookings": ["Booking.Requested", "Booking.SeatsHeld", "Booking.Rejected"],
        "inventory": ["FlightInventory.SeatsHeld", "FlightInventory.HoldReleased"],
        "payments": ["Payment.Declined"],
    },
    "no seats": {
        "bookings": ["Booking.Requested", "Booking.Rejected"],
        "inventory": [],
        "payments": [],
    },
}
EXPECTED_LEDGER: dict[Outcome, list[tuple[str, int]]] = {
    "confirmed": [("authorize", PRICE), ("capture", PRICE)],
    "declined": [],
    "no seats": [],
}


# -- the faults ------------------------------------------------------------------------------------


class InjectedCrashError(RuntimeError):
    """The saga process died (a bug, a SIGKILL): its supervisor starts a new one."""


def lost_connection() -> psycopg.OperationalError:
    return psycopg.OperationalError("server closed the connection unexpectedly (injected)")


def crash() -> InjectedCrashError:
    return InjectedCrashError("the saga process died (injected)")


@dataclass
class Faults:
    """Fails the commit of the rounds numbered in ``rounds``, before or after it happens."""

    when: When
    error: Callable[[], Exception]
    rounds: frozenset[int] = FAULTY_ROUNDS
    commits: int = 0
    """Rounds that came to their commit so far."""
    raised: int = 0
    written: bool = False

    def due(self) -> bool:
        self.commits += 1
        return self.commits in self.rounds

    def fail(self) -> None:
        self.raised += 1
        raise self.error()

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Wrap the round follower's batch (not the job runner's), and its transaction."""
        faults = self
        real_session = batches.session  # what the round follower opens

        class FaultyBatch(Batch):
            def commit(self, *args: Any, **kwargs: Any) -> None:
                if faults.when == "before" and faults.due():
                    faults.fail()  # nothing written: the round's transaction rolls back
                super().commit(*args, **kwargs)
                faults.written = True

        @contextlib.contextmanager
        def session(applications: Sequence[ContextApplication]) -> Iterator[Any]:
            faults.written = False
            with real_session(applications) as conn:
                yield conn
                if faults.when == "at" and faults.written and faults.due():
                    faults.fail()  # written, then the COMMIT failed: it all rolls back
            # the round's transaction has committed here
            if faults.when == "after" and faults.written and faults.due():
                faults.fail()

        monkeypatch.setattr(rounds, "Batch", FaultyBatch)
        monkeypatch.setattr(rounds, "session", session)


# -- driving the saga ------------------------------------------------------------------------------


class Sagas:
    """Starts sagas on the test's database: the first, and one per restart."""

    def __init__(self, settings: Settings, stack: contextlib.ExitStack) -> None:
        self.settings = settings
        self.stack = stack
        self.started = 0

    def start(self) -> SagaHarness:
        """A saga as a new process has it: its own store and follower, nothing in memory."""
        store = EventStore(self.settings)
        self.stack.callback(store.close)
        harnesses = contextlib.contextmanager(make_harness)
        self.started += 1
        return self.stack.enter_context(harnesses(self.settings, WriteSide(store)))


def rejoin(follower: LogFollower) -> None:
    """What the follower's thread does after riding out an outage: ``run`` again (which
    reads the positions again from the tracking records), here for one pass only."""
    stops = iter([False, True])
    follower.run(lambda: next(stops), poll_seconds=0.0)


def run_to_the_end(sagas: Sagas, faults: Faults, bookings: list[uuid.UUID]) -> SagaHarness:
    """Follower passes and due jobs until nothing is left to do; each injected failure is
    checked (nothing of the round stored, or all of it) and met as the process meets it."""
    harness = sagas.start()
    after_outage = False
    for _ in range(200):
        follower = harness.saga.follower
        answered, injected = follower.positions(), faults.raised
        try:
            if after_outage:
                rejoin(follower)
                moved = 1  # (run() does not say): look again
            else:
                moved = follower.run_once()
        except Exception as failure:  # (a lost connection comes wrapped by the library)
            if faults.raised == injected:
                raise  # not ours
            stored = follower.positions()
            if faults.when in {"before", "at"}:
                assert stored == answered, "a round refused at its commit stored something"
            else:
                assert stored != answered, "the round failed after its commit was not stored"
            if unavailable_server(failure) == "postgres":
                after_outage = True  # ridden out in the follower's thread
            else:
                harness = sagas.start()  # the process exits; a new one starts
            continue
        after_outage = False
        moved += harness.saga.runner.run_due(10)
        if moved == 0:
            break
    else:
        raise AssertionError("the saga never came to rest")
    finished = [harness.booking(b).status for b in bookings]
    assert all(s in {BookingStatus.CONFIRMED, BookingStatus.REJECTED} for s in finished)
    assert harness.saga.queue.pending() == 0
    return harness


def events_about(app: ContextApplication) -> dict[object, list[str]]:
    """Each aggregate's events in ``app``'s log (by the booking they name, if any)."""
    found: dict[object, list[str]] = defaultdict(list)
    for notification in app.recorder.select_notifications(start=1, limit=100_000):
        event, _meta = app.metadata_mapper.decode(notification)
        about = getattr(event, "booking_id", None) or notification.originator_id
        found[about].append(type(event).__qualname__)
    return found


# -- the tests -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("when", "error"),
    [
        ("before", lost_connection),
        ("before", crash),
        ("at", lost_connection),
        ("at", crash),
        ("after", lost_connection),
        ("after", crash),
    ],
    ids=[
        "before-commit-connection-lost",
        "before-commit-process-died",
        "commit-failed-connection-lost",
        "commit-failed-process-died",
        "after-commit-connection-lost",
        "after-commit-process-died",
    ],
)
def test_a_round_failing_at_its_commit_loses_nothing_and_repeats_nothing(
    settings: Settings,
    write_side: WriteSide,
    monkeypatch: pytest.MonkeyPatch,
    when: When,
    error: Callable[[], Exception],
) -> None:
    flight_id = write_side.schedule_flight(seats=SEATS)
    bookings = [
        write_side.request_booking(flight_id, token=token, customer=f"customer-{i}")
        for i, token in enumerate(TOKENS)
    ]
    outcomes = {
        b: expected_outcome(i, t) for i, (b, t) in enumerate(zip(bookings, TOKENS, strict=True))
    }
    faults = Faults(when, error)
    faults.install(monkeypatch)

    with contextlib.ExitStack() as stack:
        sagas = Sagas(settings, stack)
        harness = run_to_the_end(sagas, faults, bookings)

        assert faults.raised == len(FAULTY_ROUNDS)
        restarts = sagas.started - 1
        assert restarts == (0 if error is lost_connection else len(FAULTY_ROUNDS))
        # nothing left unanswered: a saga started now finds nothing to store
        heads = harness.saga.follower.heads()
        again = run_to_the_end(sagas, faults, bookings)
        assert again.saga.follower.heads() == heads
        logs = {
            "bookings": events_about(harness.bookings),
            "inventory": events_about(harness.inventory),
            "payments": events_about(harness.payments),
        }
        for booking_id, outcome in outcomes.items():
            booking = harness.booking(booking_id)
            if outcome == "confirmed":
                assert booking.status is BookingStatus.CONFIRMED, booking_id
            else:
                reason = "NO_SEATS" if outcome == "no seats" else "PAYMENT_DECLINED"
                assert (booking.status, booking.reason) == (BookingStatus.REJECTED, reason)
            expected = EXPECTED_EVENTS[outcome]
            assert logs["bookings"].get(booking_id, []) == expected["bookings"], booking_id
            assert logs["inventory"].get(booking_id, []) == expected["inventory"], booking_id
            payment_events = logs["payments"].get(booking_id, []) + logs["payments"].get(
                payment_id_for(booking_id), []
            )
            assert payment_events == expected["payments"], booking_id
            ledger = [
                (entry.operation, entry.amount)
                for entry in harness.gateway.entries_for_booking(str(booking_id))
            ]
            assert ledger == EXPECTED_LEDGER[outcome], booking_id
        confirmed = sum(1 for outcome in outcomes.values() if outcome == "confirmed")
        flight = harness.flight(flight_id)
        assert (flight.sold("Y"), flight.held("Y")) == (confirmed, 0)
        assert logs["inventory"][flight_id] == ["FlightInventory.Scheduled"]
