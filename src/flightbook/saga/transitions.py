"""The booking saga on one screen: which event it answers, what it does, what that causes.

A booking's happy path is nine hops across the three logs::

    booking    Requested ─┐
    inventory             └─ hold seats ─▶ SeatsHeld ─┐                      (+ job expire_hold)
    booking    SeatsHeld ◀────────────────────────────┘ ─┐
    payment                       (job authorize_payment) └─▶ Authorized ─┐
    booking    PaymentAuthorized ◀────────────────────────────────────────┘ ─┐
    inventory                          confirm the hold ─▶ HoldConfirmed ◀──┘
    booking    Confirmed ◀── (answering HoldConfirmed)
    payment                       (job settle_payment) ─▶ Captured

Each row of :data:`TRANSITIONS` is one outcome of one step: the event answered, the
notes the step logs for it, the context the step writes (its events, the tracking record
of the answered event and its job rows, in one transaction), the events it may store
there and the jobs it may schedule. :data:`JOBS` says the same of the jobs.
``tests/unit/saga/test_transitions.py`` runs every branch of
:class:`~flightbook.saga.steps.SagaSteps` and checks each against this table, so the
table cannot drift from the code. :data:`UNANSWERED` names every other event of the three
logs, so a new event type must be put in one of the two (a test checks it): an erasure of
personal data (``Booking.PassengersErased``, ``DataSubject``) is nothing the saga acts on,
since it is refused while a booking is in progress.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from flightbook.domain.booking import Booking
from flightbook.domain.inventory import FlightInventory
from flightbook.domain.payment import Payment
from flightbook.domain.subject import DataSubject
from flightbook.saga.jobs import JobKind

if TYPE_CHECKING:
    from flightbook.eventstore.contexts import Context

__all__ = (
    "JOBS",
    "TRANSITIONS",
    "UNANSWERED",
    "JobTransition",
    "Transition",
    "answered_events",
    "transition",
)

B, F, P = Booking, FlightInventory, Payment
EXPIRE, AUTHORIZE, SETTLE = JobKind.EXPIRE_HOLD, JobKind.AUTHORIZE_PAYMENT, JobKind.SETTLE_PAYMENT
GIVE_BACK = (F.HoldReleased, F.SoldSeatsReturned)
SETTLED = (P.Captured, P.Voided, P.Refunded)


@dataclass(frozen=True)
class Transition:
    """One outcome of the saga's step for an event."""

    on: type
    """The event answered."""
    outcome: tuple[str, ...]
    """The step's notes for this outcome (``saga.step`` log lines, ``outcome`` label)."""
    writes: Context
    """The one context the step writes, with the answered event's tracking record."""
    causes: tuple[type, ...] = ()
    """The events it may store (none: only the tracking record and job rows)."""
    jobs: tuple[JobKind, ...] = ()
    """The jobs it may schedule."""


@dataclass(frozen=True)
class JobTransition:
    """What a due job does: the context it writes and the events it may store there."""

    kind: JobKind
    writes: Context
    causes: tuple[type, ...]


# fmt: off
TRANSITIONS: tuple[Transition, ...] = (
    # the booking's own log
    Transition(B.Requested, ("seats held",), "inventory", (F.SeatsHeld,), (EXPIRE,)),
    Transition(B.Requested, ("no seats", "flight not bookable", "unknown flight"), "booking",
               (B.Rejected,)),
    Transition(B.Requested, ("booking already ended",), "booking"),
    Transition(B.SeatsHeld, ("payment to authorize",), "payment", (), (AUTHORIZE,)),
    Transition(B.SeatsHeld, ("booking moved on",), "payment"),
    Transition(B.PaymentAuthorized, ("hold confirmed",), "inventory", (F.HoldConfirmed,)),
    Transition(B.PaymentAuthorized, ("booking moved on", "hold already gone", "flight cancelled"),
               "inventory"),
    Transition(B.Confirmed, ("payment to capture",), "payment", (), (SETTLE,)),
    Transition(B.Rejected, ("seats given back", "unknown flight"), "inventory", GIVE_BACK,
               (SETTLE,)),
    Transition(B.Cancelled, ("seats given back", "unknown flight"), "inventory", GIVE_BACK,
               (SETTLE,)),
    # the flight's log
    Transition(F.SeatsHeld, ("booking seats held",), "booking", (B.SeatsHeld,)),
    Transition(F.SeatsHeld, ("late hold released",), "inventory", (F.HoldReleased,)),
    Transition(F.SeatsHeld, ("booking moved on",), "booking"),
    Transition(F.HoldConfirmed, ("booking confirmed",), "booking", (B.Confirmed,)),
    Transition(F.HoldConfirmed, ("late confirmation undone",), "inventory", (F.SoldSeatsReturned,)),
    Transition(F.HoldConfirmed, ("booking not authorized",), "booking"),
    Transition(F.HoldExpired, ("booking rejected: hold expired",), "booking", (B.Rejected,)),
    Transition(F.HoldExpired, ("booking already ended",), "booking"),
    Transition(F.FlightCancelled, ("bookings cancelled",), "booking", (B.Cancelled,)),
    # the payment's log
    Transition(P.Authorized, ("booking payment authorized",), "booking", (B.PaymentAuthorized,)),
    Transition(P.Authorized, ("late authorization to void",), "payment", (), (SETTLE,)),
    Transition(P.Authorized, ("booking moved on",), "booking"),
    Transition(P.Declined, ("booking rejected: payment declined",), "booking", (B.Rejected,)),
    Transition(P.Declined, ("booking rejected: payment unavailable",), "booking", (B.Rejected,)),
    Transition(P.Declined, ("booking already ended",), "booking"),
)

UNANSWERED: frozenset[type] = frozenset({
    B.PassengersErased,  # only on a finished booking: nothing left to do
    F.Scheduled, F.FareChanged,  # a booking's request asks for the seats
    F.HoldReleased, F.SoldSeatsReturned,  # what the saga itself does when a booking ends
    P.Captured, P.Voided, P.Refunded,  # the end of a payment's settle job
    DataSubject.Opened, DataSubject.Erased,  # an erasure: for the read models, not the saga
})
"""The events of the logs the saga reads and does not answer (the follower skips them)."""

JOBS: tuple[JobTransition, ...] = (
    JobTransition(EXPIRE, "inventory", (F.HoldExpired,)),
    JobTransition(AUTHORIZE, "payment", (P.Authorized, P.Declined)),
    JobTransition(SETTLE, "payment", SETTLED),
)
# fmt: on


def transition(event_type: type, note: str) -> Transition:
    """The row of the outcome ``note`` of the step for ``event_type`` (KeyError: none)."""
    for row in TRANSITIONS:
        if row.on is event_type and note in row.outcome:
            return row
    raise KeyError((event_type.__qualname__, note))


def answered_events() -> frozenset[type]:
    """Every event type the saga answers."""
    return frozenset(t.on for t in TRANSITIONS)
