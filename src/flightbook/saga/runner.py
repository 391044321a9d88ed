"""Runs the saga's due jobs: hold expiry and the calls to the payment gateway.

Each job is state-driven and idempotent: it reloads the booking (and payment), asks
the gateway with the booking's idempotency key ``<booking id>:<operation>``, and stores
the outcome together with the job's completion. Authorizations go through the booking's
customer's share of the gateway (``for_payer``): when a customer's payments used up their
budget of timeouts, the payment is recorded declined (``payer_timeout_budget_exhausted``)
at once, without a call, and the saga rejects the booking ``PAYMENT_UNAVAILABLE``. A
gateway that does not answer leaves the job to be retried later with exponential backoff;
a crash mid-job re-runs it after its lease, and the gateway's idempotency makes the
repeat harmless.

The booking's payment token is sealed in its ``Booking.Requested`` like its passengers
(issue 17); it is opened with the vault just before the call, and only held in memory for
it. A legacy event's plain token (not :func:`~flightbook.eventstore.pii.is_sealed`) is used
as it is. A token that reads
erased (it cannot: an erasure waits for the customer's bookings in progress) is declined
``payment_token_erased`` without a call.
"""

from __future__ import annotations

import datetime as dt
import random
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import structlog
from eventsourcing.persistence import IntegrityError

from flightbook.domain.booking import Booking, BookingStatus
from flightbook.domain.payment import Payment, PaymentStatus, payment_id_for
from flightbook.eventstore.applications import retry_conflicts
from flightbook.eventstore.batch import Batch
from flightbook.eventstore.cache import load_many
from flightbook.eventstore.metadata import recording
from flightbook.eventstore.pii import ERASED, is_sealed
from flightbook.payments.gateway import (
    Authorization,
    Declined,
    GatewayRejectedError,
    GatewayUnavailableError,
    PayerBudgetExhaustedError,
    PayerScopedGateway,
)
from flightbook.saga.jobs import Job, JobKind, JobQueue, complete_job

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from uuid import UUID

    from eventsourcing.domain import Aggregate

    from flightbook.eventstore.applications import ContextApplication, EventStore
    from flightbook.eventstore.pii import PersonalDataVault
    from flightbook.eventstore.rows import Row
    from flightbook.payments.gateway import PaymentGateway

__all__ = ("JobDone", "JobRunner", "Loaded", "Prefetched")

_log = structlog.get_logger()
_MAX_BACKOFF = 60.0
TOKEN_ERASED = "payment_token_erased"  # noqa: S105 - a decline reason, not a secret


@dataclass(frozen=True)
class Loaded:
    """A job's booking and payment as read before the job ran (None: none stored)."""

    booking: Booking | None
    payment: Payment | None


class Prefetched:
    """The bookings and payments of a batch of claimed jobs.

    Each booking's aggregates go to ONE job of the batch (:meth:`get`): a second job of the
    same booking (a hold expiry and a payment, say) reads its own, so no two workers change
    one object.
    """

    def __init__(self, bookings: dict[UUID, Any], payments: dict[UUID, Any]) -> None:
        self._bookings = bookings
        self._payments = payments
        self._given: set[UUID] = set()

    def get(self, job: Job) -> Loaded | None:
        if job.booking_id in self._given:
            return None
        self._given.add(job.booking_id)
        booking = self._bookings.get(job.booking_id)
        payment = self._payments.get(payment_id_for(job.booking_id))
        if not isinstance(booking, Booking):
            return None  # not stored (yet): the job reads it again itself
        return Loaded(booking, payment if isinstance(payment, Payment) else None)


@dataclass
class JobDone:
    """A job whose outside work is done (the gateway answered): what to store for it."""

    job: Job
    outcome: str
    writes: list[tuple[ContextApplication, list[Aggregate], list[Row]]] = field(
        default_factory=list
    )
    started: float = 0.0
    loaded: Loaded | None = None


class JobRunner:
    """Executes claimed jobs.

    :meth:`prepare` does a job's outside work, :meth:`store` stores the outcomes of many
    jobs in one transaction, :meth:`run` does both for one job.

    Args:
        queue: the job table.
        store: the applications.
        gateway: the payment gateway (already wrapped in retry + circuit breaker).
        vault: opens the bookings' sealed payment tokens.
        clock: the current UTC time.
    """

    def __init__(
        self,
        *,
        queue: JobQueue,
        store: EventStore,
        gateway: PaymentGateway,
        vault: PersonalDataVault,
        clock: Callable[[], dt.datetime],
        on_job: Callable[[str, str], None] | None = None,
        on_conflict: Callable[[int], None] | None = None,
    ) -> None:
        self.queue = queue
        self.bookings = store.bookings
        self.inventory = store.inventory
        self.payments = store.payments
        self.gateway = gateway
        self.vault = vault
        self.clock = clock
        self._on_conflict = on_conflict
        self._on_job = on_job or (lambda _kind, _outcome: None)

    def run_due(self, limit: int = 1) -> int:
        """Claim and run up to ``limit`` due jobs, their outcomes stored together."""
        jobs = self.queue.claim(limit, self.clock())
        if jobs:
            loaded = self.prefetch(jobs)
            self.store([self.prepare(job, loaded.get(job)) for job in jobs])
        return len(jobs)

    def prefetch(self, jobs: Sequence[Job], *, conn: Any = None) -> Prefetched:
        """The bookings and payments of claimed jobs, read in one query per context."""
        ids = [job.booking_id for job in jobs]
        bookings = load_many(self.bookings, ids, conn=conn)
        payments = load_many(self.payments, [payment_id_for(i) for i in ids], conn=conn)
        return Prefetched(bookings, payments)

    def run(self, job: Job) -> None:
        """Run one job and store its outcome (again on fresh state after a conflict)."""

        def attempt() -> JobDone:
            done = self.prepare(job)
            self.write([done])
            return done

        self.finished(retry_conflicts(attempt, on_retry=self._on_conflict))

    def prepare(self, job: Job, loaded: Loaded | None = None) -> JobDone:
        """Load what the job needs and do its outside work; nothing is stored yet.

        ``loaded``: the job's booking and payment as prefetched (else read now). A gateway
        that does not answer reschedules the job at once (``retry later``).
        """
        started = time.perf_counter()
        handler = {
            JobKind.AUTHORIZE_PAYMENT: self._authorize,
            JobKind.EXPIRE_HOLD: self._expire_hold,
            JobKind.SETTLE_PAYMENT: self._settle,
        }[job.kind]
        done = JobDone(job, "", started=started, loaded=loaded)
        try:
            done.outcome = handler(job, done)
        except GatewayUnavailableError as exc:
            done.writes.clear()
            done.outcome = self._later(job, done, f"gateway unavailable: {exc}")
        return done

    def store(self, done: Sequence[JobDone]) -> None:
        """Store the outcomes in one transaction; after a conflict, each job again alone."""
        try:
            self.write(done)
        except IntegrityError:
            self.run_again(done)
            return
        for each in done:
            self.finished(each)

    def run_again(self, done: Sequence[JobDone]) -> None:
        """Each job again, alone, on fresh state, after their outcomes were refused together.

        Another writer changed an aggregate first; the gateway's keys make repeats safe.
        """
        for each in done:
            self.run(each.job)

    @property
    def store_applications(self) -> tuple[ContextApplication, ...]:
        """The contexts the jobs write to (for a session of their own)."""
        return (self.bookings, self.inventory, self.payments)

    def write(self, done: Sequence[JobDone], conn: Any = None) -> None:
        """Store the outcomes in one transaction (``conn``: a session's)."""
        batch = Batch(self.store_applications)
        for each in done:
            job = each.job
            with recording(
                actor="saga",
                correlation_id=job.correlation_id,
                causation_id=f"job:{job.kind.value}:{job.booking_id}",
            ):
                for app, aggregates, rows in each.writes:
                    batch.collect(app, aggregates, rows)
        batch.commit(conn)

    def finished(self, done: JobDone) -> None:
        """Count and log a job whose outcome is stored."""
        job = done.job
        self._on_job(job.kind.value, done.outcome.split(":")[0])
        _log.info(
            "saga.job",
            kind=job.kind.value,
            booking_id=str(job.booking_id),
            attempt=job.attempts,
            correlation_id=job.correlation_id,
            outcome=done.outcome,
            duration_ms=round((time.perf_counter() - done.started) * 1000, 2),
        )

    def _later(self, job: Job, done: JobDone, error: str) -> str:
        delay = min(_MAX_BACKOFF, 0.5 * 2 ** min(job.attempts, 10))
        delay = random.uniform(delay / 2, delay)  # noqa: S311 - jitter, not security
        booking = self.bookings.booking(job.booking_id)
        due = self.clock() + dt.timedelta(seconds=delay)
        if job.kind is JobKind.AUTHORIZE_PAYMENT and booking.hold_expires_at is not None:
            if self.clock() >= booking.hold_expires_at:
                done.writes.append((self.payments, [], [complete_job(job)]))
                return "given up: the hold expired"
            due = min(due, booking.hold_expires_at)
        self.queue.retry_later(job, due, error)
        return f"retry later: {error}"

    # -- jobs -------------------------------------------------------------------------------

    def _authorize(self, job: Job, done: JobDone) -> str:
        booking = self._booking(job, done)
        if booking.status is not BookingStatus.SEATS_HELD:
            done.writes.append((self.payments, [], [complete_job(job)]))
            return "not needed"
        if self._payment(job, done) is not None:
            done.writes.append((self.payments, [], [complete_job(job)]))
            return "already answered"
        gateway = self.gateway
        if isinstance(gateway, PayerScopedGateway):
            gateway = gateway.for_payer(booking.customer_id)
        token = self._payment_token(booking)
        try:
            answer: Authorization | Declined = (
                Declined(reason=TOKEN_ERASED)
                if token == ERASED
                else gateway.authorize(
                    idempotency_key=f"{booking.id}:authorize",
                    token=token,
                    amount=booking.price_amount,
                    currency=booking.currency,
                )
            )
        except PayerBudgetExhaustedError as exc:
            # This customer's payments kept timing out: fail fast (the saga rejects the
            # booking PAYMENT_UNAVAILABLE) rather than hold the seats until the hold expires.
            answer = Declined(reason=exc.reason)
        if isinstance(answer, Authorization):
            payment = Payment.authorized(
                payment_id=payment_id_for(booking.id),
                booking_id=booking.id,
                amount=booking.price_amount,
                currency=booking.currency,
                gateway_ref=answer.authorization_id,
            )
            outcome = "authorized"
        else:
            payment = Payment.declined(
                payment_id=payment_id_for(booking.id),
                booking_id=booking.id,
                amount=booking.price_amount,
                currency=booking.currency,
                reason=answer.reason,
            )
            outcome = f"declined: {answer.reason}"
        done.writes.append((self.payments, [payment], [complete_job(job)]))
        return outcome

    def _booking(self, job: Job, done: JobDone) -> Booking:
        if done.loaded is not None and done.loaded.booking is not None:
            return done.loaded.booking
        return self.bookings.booking(job.booking_id)

    def _payment(self, job: Job, done: JobDone) -> Payment | None:
        if done.loaded is not None:
            return done.loaded.payment
        return self.payments.payment_of(job.booking_id)

    def _payment_token(self, booking: Booking) -> str:
        """The booking's payment token opened (a legacy plain one as it is), or ERASED."""
        if not is_sealed(booking.payment_token):
            return booking.payment_token
        return self.vault.open(booking.customer_id, booking.payment_token)

    def _expire_hold(self, job: Job, done: JobDone) -> str:
        booking = self._booking(job, done)
        flight = self.inventory.flight(booking.flight_id)
        hold = flight.hold_of(booking.id)
        if hold is None:
            done.writes.append((self.inventory, [], [complete_job(job)]))
            return "no hold"
        now = self.clock()
        if hold.expires_at > now:
            self.queue.retry_later(job, hold.expires_at, "not yet due")
            return "not yet due"
        flight.expire_hold(booking.id, now)
        done.writes.append((self.inventory, [flight], [complete_job(job)]))
        return "expired"

    def _settle(self, job: Job, done: JobDone) -> str:
        booking = self._booking(job, done)
        payment = self._payment(job, done)
        key = f"{booking.id}"
        if payment is None or payment.gateway_ref is None:
            done.writes.append((self.payments, [], [complete_job(job)]))
            return "nothing to settle"
        try:
            if payment.status is PaymentStatus.AUTHORIZED:
                kept = _charge_kept(booking, payment.amount)
                if kept > 0:  # confirmed, or cancelled after it on a fare that keeps money
                    capture = self.gateway.capture(
                        idempotency_key=f"{key}:capture",
                        authorization_id=payment.gateway_ref,
                        amount=payment.amount,
                    )
                    payment.capture(capture.capture_id)
                    outcome = "captured"
                    if booking.status is BookingStatus.CANCELLED and booking.refund_amount > 0:
                        refund = self.gateway.refund(
                            idempotency_key=f"{key}:refund",
                            authorization_id=payment.gateway_ref,
                            amount=booking.refund_amount,
                        )
                        payment.refund(refund.amount, refund.refund_id)
                        outcome = "captured and refunded"
                elif booking.is_final:
                    self.gateway.void(
                        idempotency_key=f"{key}:void", authorization_id=payment.gateway_ref
                    )
                    payment.void()
                    outcome = "voided"
                else:
                    outcome = "waiting for the booking"
            elif (
                payment.status is PaymentStatus.CAPTURED
                and booking.status is BookingStatus.CANCELLED
                and booking.refund_amount > 0
            ):
                refund = self.gateway.refund(
                    idempotency_key=f"{key}:refund",
                    authorization_id=payment.gateway_ref,
                    amount=booking.refund_amount,
                )
                payment.refund(refund.amount, refund.refund_id)
                outcome = "refunded"
            else:
                outcome = "settled"
        except GatewayRejectedError as exc:  # the provider refuses for good: stop asking
            outcome = f"rejected by the gateway: {exc.reason}"
        done.writes.append((self.payments, [payment], [complete_job(job)]))
        return outcome


def _charge_kept(booking: Booking, amount: int) -> int:
    """What the customer pays in the end, per the booking's state and its fare's rules.

    A confirmed booking pays the whole amount; one cancelled after its confirmation pays
    what the refund rule leaves (a non-refundable fare keeps everything), whether or not
    the capture had run when it was cancelled; any other final booking pays nothing.
    """
    if booking.status is BookingStatus.CONFIRMED:
        return amount
    if booking.status is BookingStatus.CANCELLED and booking.was_confirmed:
        return max(0, amount - booking.refund_amount)
    return 0
