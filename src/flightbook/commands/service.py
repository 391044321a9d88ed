"""The command side's use cases: validate, decide with one aggregate, record, return positions.

No HTTP here (STYLE G3): :mod:`flightbook.commands.http` turns requests into calls and
results or exceptions into responses. Every use case runs inside
:func:`flightbook.eventstore.metadata.recording`, so each event it stores carries the
actor and the correlation id of the request. A refused command raises a
:class:`~flightbook.domain.errors.DomainError` (or :class:`NotFoundError`) before anything
is stored.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from typing import TYPE_CHECKING, NamedTuple, TypeVar

import msgspec
from eventsourcing.persistence import IntegrityError

from flightbook.commands.idempotency import IdempotencyRecord
from flightbook.commands.requests import DEFAULT_CANCELLATION_REASON
from flightbook.domain.booking import ERASABLE, Booking, BookingStatus, CancellationReason
from flightbook.domain.caps import BookingCaps
from flightbook.domain.errors import DomainError, FlightNotBookableError, InvalidValueError
from flightbook.domain.inventory import FlightInventory, FlightStatus
from flightbook.domain.subject import (
    BookingsInProgressError,
    DataSubject,
    ErasureReason,
    erasure_reason,
)
from flightbook.domain.values import Fare, Money, Passenger
from flightbook.eventstore.applications import ContextApplication, retry_conflicts
from flightbook.eventstore.cache import AggregateCache
from flightbook.eventstore.customers import ErasureGuard
from flightbook.eventstore.inprogress import CapsGuard
from flightbook.eventstore.metadata import recording
from flightbook.eventstore.pii import LiveKeysGuard, SealedDataError, SealedUnderErasedKeyError

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from eventsourcing.persistence import Recording

    from flightbook.commands.idempotency import IdempotencyKeys
    from flightbook.commands.requests import BookingRequest, FlightRequest
    from flightbook.config.settings import Settings
    from flightbook.eventstore.applications import EventStore
    from flightbook.eventstore.pii import PersonalDataVault, Sealer
    from flightbook.eventstore.rows import Row
    from flightbook.http.tokens import Principal

__all__ = (
    "BOOKING_ID_NAMESPACE",
    "BookingResult",
    "CommandService",
    "ConcurrentChangeError",
    "ErasureResult",
    "FlightCancellationResult",
    "FlightScheduledResult",
    "IdempotencyKeyReusedError",
    "NotFoundError",
    "UnknownFlightError",
    "booking_id_for",
    "request_hash",
)

BOOKING_ID_NAMESPACE = uuid.UUID("0b6f3c2e-8d1a-5e4b-9c7f-2a5d8e1f4b3c")
"""Namespace of the uuid5 booking ids. Never change it: concurrent duplicates depend on it."""

T = TypeVar("T")

Positions = dict[str, int]
"""Positions of the events a command stored, per context (``{"booking": 42}``)."""


class NotFoundError(Exception):
    """No such resource, or one the caller may not see: both answer the same ``404``."""

    def __init__(self, resource: str, identifier: object) -> None:
        super().__init__(f"{resource} {identifier} not found")
        self.resource = resource
        self.identifier = identifier


class UnknownFlightError(DomainError):
    """A booking names a flight that was never scheduled."""

    default_code = "unknown_flight"

    def __init__(self, flight_id: uuid.UUID) -> None:
        super().__init__(f"there is no flight {flight_id}", field="flight_id")


class IdempotencyKeyReusedError(DomainError):
    """The idempotency key was used before with another request body."""

    default_code = "idempotency_key_reused"

    def __init__(self) -> None:
        super().__init__(
            "this Idempotency-Key was used for another request; use a new key for a new booking",
            field="Idempotency-Key",
        )


class ConcurrentChangeError(DomainError):
    """Other writers kept changing the aggregate; the command may be sent again."""

    default_code = "concurrent_change"

    def __init__(self, what: str) -> None:
        super().__init__(f"{what} was changed concurrently too often; try again")


_FLIGHT_MAX_AGE = 1.0
"""Seconds a flight read for a new booking serves later ones without a read."""


class FlightScheduledResult(NamedTuple):
    flight_id: uuid.UUID
    positions: Positions


class BookingResult(NamedTuple):
    booking_id: uuid.UUID
    status: BookingStatus
    positions: Positions
    repeated: bool = False
    """True when nothing was stored: an idempotent repeat of a command already done."""


class FlightCancellationResult(NamedTuple):
    flight_id: uuid.UUID
    status: FlightStatus
    positions: Positions
    repeated: bool = False


class ErasureResult(NamedTuple):
    bookings: int
    """Bookings whose personal data this erasure recorded as erased."""
    already: bool
    """True when nothing was stored: the customer's personal data was erased before."""
    positions: Positions
    """Where the erasure's events are (for an erasure done before: its latest one)."""


def booking_id_for(customer_id: str, idempotency_key: str) -> uuid.UUID:
    """The id of the booking a customer's request with this key creates (the same on a retry).

    The name hashed is the JSON array ``[customer_id, idempotency_key]``: two different
    pairs never give the same text (``"a:b" + "c"`` and ``"a" + "b:c"`` did when they were
    joined with ``":"``, issue 15). Pairs derived before that change got other ids; their
    retries still find the first booking through ``booking.idempotency_keys``.
    """
    name = msgspec.json.encode([customer_id, idempotency_key]).decode()
    return uuid.uuid5(BOOKING_ID_NAMESPACE, name)


def request_hash(request: BookingRequest) -> str:
    """SHA-256 of the canonical JSON of a request: same fields and values, same hash."""
    return hashlib.sha256(msgspec.json.encode(request, order="sorted")).hexdigest()


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class CommandService:
    """The write side's use cases.

    Args:
        store: the three context applications (owned by the caller).
        keys: the idempotency keys used so far.
        vault: seals passengers' personal data per customer.
        settings: the process settings.
        clock: the current UTC time (injected for tests).
    """

    def __init__(
        self,
        *,
        store: EventStore,
        keys: IdempotencyKeys,
        vault: PersonalDataVault,
        settings: Settings,
        clock: Callable[[], dt.datetime] = _utc_now,
    ) -> None:
        self.store = store
        self.bookings = store.bookings
        self.inventory = store.inventory
        self.flights = AggregateCache(store.inventory, maxsize=2_000)
        """The flights new bookings name, fast-forwarded (never replayed from the start)."""
        self.keys = keys
        self.vault = vault
        self.settings = settings
        self.clock = clock
        self.caps = BookingCaps(
            bookings_in_progress=settings.cap_bookings_in_progress,
            seats_held=settings.cap_seats_held,
            seats_held_per_flight=settings.cap_seats_held_per_flight,
        )

    # -- use cases ----------------------------------------------------------------------------

    def schedule_flight(
        self, request: FlightRequest, actor: str, *, correlation_id: str | None = None
    ) -> FlightScheduledResult:
        """Schedule a flight (role ``ops``); errors name the field (``fares[0].price.amount``)."""
        fares = [
            Fare.create(
                code=fare.code,
                cabin=fare.cabin,
                price=Money.create(
                    fare.price.amount, fare.price.currency, field=f"fares[{index}].price"
                ),
                seats=fare.seats,
                refundable=fare.refundable,
                overbooking=fare.overbooking,
                field=f"fares[{index}]",
            )
            for index, fare in enumerate(request.fares)
        ]
        flight = FlightInventory.schedule(
            flight_number=request.flight_number,
            origin=request.origin,
            destination=request.destination,
            departure=request.departure,
            arrival=request.arrival,
            fares=fares,
        )
        if flight.departure <= self.clock():
            raise InvalidValueError("departure", "departure must be in the future")
        with recording(actor=actor, correlation_id=correlation_id):
            recordings = self.inventory.record(flight)
        return FlightScheduledResult(flight.id, _positions("inventory", recordings))

    def request_booking(
        self,
        request: BookingRequest,
        customer_id: str,
        idempotency_key: str,
        actor: str,
        *,
        correlation_id: str | None = None,
    ) -> BookingResult:
        """Open a booking (the saga holds seats and takes payment next).

        Idempotent per ``(customer_id, idempotency_key)``: a repeat with the same body
        answers as the first time and stores nothing; another body raises
        :class:`IdempotencyKeyReusedError`. Concurrent duplicates store one booking: the
        key is inserted in the same transaction as the booking's first event.

        A booking that would take the customer past a business-flow cap raises
        :class:`~flightbook.domain.caps.CapExceededError` (checked in that transaction,
        under the customer's lock, so concurrent requests cannot all slip under a cap).
        """
        booking_id = booking_id_for(customer_id, idempotency_key)
        digest = request_hash(request)
        # No look-up first: the key's unique row (and the booking id derived from it)
        # refuse a repeat in the booking's own transaction, and only then is it read.
        key = IdempotencyRecord(customer_id, idempotency_key, digest, booking_id)
        try:
            booking, recordings = self._record_new_booking(
                request, booking_id, customer_id, key, actor, correlation_id
            )
        except DomainError:
            # Refused now (the flight since cancelled, a cap reached): a repeat of a request
            # that was accepted before still gets its first answer.
            earlier = self._earlier_answer(customer_id, idempotency_key, digest)
            if earlier is None:
                raise
            return earlier
        except IntegrityError:
            # A concurrent duplicate committed first (the key, or the booking id, exists).
            earlier = self._earlier_answer(customer_id, idempotency_key, digest)
            if earlier is None:
                raise ConcurrentChangeError(f"booking {booking_id}") from None
            return earlier
        return BookingResult(booking_id, booking.status, _positions("booking", recordings))

    def _record_new_booking(
        self,
        request: BookingRequest,
        booking_id: uuid.UUID,
        customer_id: str,
        key: IdempotencyRecord,
        actor: str,
        correlation_id: str | None,
    ) -> tuple[Booking, list[Recording[uuid.UUID]]]:
        """Seal and store the new booking with its key, under the caps and the live-key check.

        A new customer's data key is stored in the booking's transaction (``NewDataKey``).
        An erasure of the customer that commits between the sealing and the booking's
        transaction erased the key the booking was sealed under; the booking is then sealed
        again under the customer's new key (the erasure holds the same customer lock). So is
        a booking whose new key lost to one another request of the customer made meanwhile.
        """
        for _ in range(3):
            sealer = self._sealer(customer_id)
            booking = self._new_booking(request, booking_id, customer_id, sealer)
            caps = CapsGuard(
                caps=self.caps,
                customer_id=customer_id,
                booking_id=booking_id,
                flight_id=booking.flight_id,
                seats=booking.passenger_count,
            )
            live = LiveKeysGuard(() if sealer.new_key is not None else (sealer.key_id,))
            rows: list[Row] = [key] if sealer.new_key is None else [sealer.new_key, key]
            try:
                with recording(actor=actor, correlation_id=correlation_id):
                    recordings = self.bookings.record(booking, rows=rows, guards=[caps, live])
            except SealedUnderErasedKeyError:
                self.vault.forget(customer_id)  # erased since: seal again under a new key
                continue
            except IntegrityError:
                if sealer.new_key is None:
                    raise  # the idempotency key or the booking id: a concurrent duplicate
                # Or another request made the customer's key first: seal again under it.
                self.vault.forget(customer_id)
                continue
            self.vault.stored(sealer)
            return booking, recordings
        raise DomainError(
            "the customer's personal data is being erased; try again", code="personal_data_erased"
        )

    def cancel_booking(
        self, booking_id: uuid.UUID, principal: Principal, *, correlation_id: str | None = None
    ) -> BookingResult:
        """Cancel a booking: its owner or an ``agent`` may; anyone else gets NotFoundError.

        Cancelling a cancelled booking stores nothing (idempotent); a rejected one raises
        :class:`~flightbook.domain.errors.IllegalTransitionError`.
        """

        def attempt() -> BookingResult:
            booking = self._booking_visible_to(booking_id, principal)
            if booking.status is BookingStatus.CANCELLED:
                position = _position(self.bookings, booking_id)
                return BookingResult(booking_id, booking.status, position, repeated=True)
            owner = booking.customer_id == principal.subject
            reason = CancellationReason.CUSTOMER if owner else CancellationReason.AGENT
            booking.cancel(reason, by=principal.subject)
            recordings = self.bookings.record(booking)
            return BookingResult(booking_id, booking.status, _positions("booking", recordings))

        with recording(actor=principal.subject, correlation_id=correlation_id):
            return self._retrying(attempt, f"booking {booking_id}")

    def cancel_flight(
        self,
        flight_id: uuid.UUID,
        actor: str,
        *,
        reason: str = DEFAULT_CANCELLATION_REASON,
        correlation_id: str | None = None,
    ) -> FlightCancellationResult:
        """Cancel a flight (role ``ops``); the saga then cancels and refunds its bookings."""

        def attempt() -> FlightCancellationResult:
            flight = self._flight(flight_id)
            if flight is None:
                raise NotFoundError("flight", flight_id)
            if flight.status is FlightStatus.CANCELLED:
                position = _position(self.inventory, flight_id)
                return FlightCancellationResult(flight_id, flight.status, position, repeated=True)
            flight.cancel(reason)
            recordings = self.inventory.record(flight)
            self.flights.forget([flight_id])  # this process refuses new bookings at once
            positions = _positions("inventory", recordings)
            return FlightCancellationResult(flight_id, flight.status, positions)

        with recording(actor=actor, correlation_id=correlation_id):
            return self._retrying(attempt, f"flight {flight_id}")

    def erase_personal_data(
        self,
        customer_id: str,
        *,
        reason: ErasureReason | str,
        actor: str,
        correlation_id: str | None = None,
    ) -> ErasureResult:
        """Erase a customer's personal data (role ``privacy``): crypto-shredding, recorded.

        ONE transaction stores every booking's ``Booking.PassengersErased``, the
        ``DataSubject.Erased`` (who: ``actor``, why: ``reason``, a code) and the erasure
        of every key of the customer (``vault.erasure_row``); the vault's cached keys of the
        customer are then dropped. Refused with
        :class:`~flightbook.domain.subject.BookingsInProgressError` while a booking of
        theirs is in progress (checked again in that transaction, under the lock new
        bookings of the customer take). Idempotent: when nothing was added since the last
        erasure, nothing is stored and ``already`` is True. A customer erased may book
        again (the vault makes a new key); a later erasure erases those bookings too.
        """
        code = erasure_reason(reason)
        customer_id = _customer_id(customer_id)

        def attempt() -> ErasureResult:
            ids = self.bookings.customer_bookings(customer_id)
            bookings = [self.bookings.booking(booking_id) for booking_id in ids]
            in_progress = [b for b in bookings if b.status not in ERASABLE]
            if in_progress:
                raise BookingsInProgressError(customer_id, len(in_progress))
            pending = [b for b in bookings if not b.personal_data_erased]
            subject = self.bookings.find_data_subject(customer_id)
            if subject is not None and subject.erased and not pending:
                return ErasureResult(0, True, _position(self.bookings, subject.id))
            for booking in pending:
                booking.erase_personal_data(code)
            if subject is None:
                subject = DataSubject.open(customer_id)
            subject.erase(code, bookings=len(pending))
            recordings = self.bookings.record(
                *pending,
                subject,
                rows=[self.vault.erasure_row(customer_id)],
                guards=[ErasureGuard(customer_id, frozenset(ids))],
            )
            return ErasureResult(len(pending), False, _positions("booking", recordings))

        with recording(actor=actor, correlation_id=correlation_id):
            result = self._retrying(attempt, f"the bookings of customer {customer_id}")
        self.vault.forget(customer_id)  # this process; the others within the keys' TTL
        return result

    # -- helpers ------------------------------------------------------------------------------

    def _sealer(self, customer_id: str) -> Sealer:
        try:
            return self.vault.sealer(customer_id)
        except SealedDataError as exc:
            raise DomainError(str(exc), code="personal_data_erased") from None

    def _new_booking(
        self, request: BookingRequest, booking_id: uuid.UUID, customer_id: str, sealer: Sealer
    ) -> Booking:
        with self.flights.lock:  # read only: the saga decides on the seats
            # Up to a second old: this is an early refusal; the saga checks the flight
            # again (cancelled, departed, seats) when it holds the seats.
            flight = self.flights.find(request.flight_id, max_age=_FLIGHT_MAX_AGE)
            if not isinstance(flight, FlightInventory):
                raise UnknownFlightError(request.flight_id)
            fare = flight.fare(request.fare)  # UnknownFareError (field "fare")
            status, departure = flight.status, flight.departure
        if status is not FlightStatus.SCHEDULED:
            raise FlightNotBookableError("the flight is cancelled")
        if departure <= self.clock():
            raise FlightNotBookableError("the flight has departed")
        passengers = [
            Passenger.at(index, name=passenger.name, email=passenger.email)
            for index, passenger in enumerate(request.passengers)
        ]
        plaintext = msgspec.json.encode([p.to_dict() for p in passengers]).decode()
        sealed = sealer.seal(plaintext)
        token = sealer.seal(request.payment_token)  # opened by the saga
        price = fare.price.multiply(len(passengers))
        return Booking.request(
            booking_id=booking_id,
            customer_id=customer_id,
            flight_id=request.flight_id,
            fare=fare.code,
            passengers=sealed,
            passenger_count=len(passengers),
            price_amount=price.amount,
            currency=price.currency,
            refundable=fare.refundable,
            payment_token=token,
        )

    def _earlier_answer(
        self, customer_id: str, idempotency_key: str, digest: str
    ) -> BookingResult | None:
        """The first answer to this key, if it was used; raise if with another body."""
        first = self.keys.first_request(customer_id, idempotency_key)
        if first is None:
            return None
        if first.request_hash != digest:
            raise IdempotencyKeyReusedError
        position = _position(self.bookings, first.booking_id, version=1)
        # The first answer was "202 REQUESTED": answer the same, whatever happened since.
        return BookingResult(first.booking_id, BookingStatus.REQUESTED, position, repeated=True)

    def _booking_visible_to(self, booking_id: uuid.UUID, principal: Principal) -> Booking:
        booking = self.bookings.find_booking(booking_id)
        if booking is None:
            raise NotFoundError("booking", booking_id)
        if booking.customer_id != principal.subject and not principal.has("agent"):
            raise NotFoundError("booking", booking_id)  # the same answer as for no booking
        return booking

    def _flight(self, flight_id: uuid.UUID) -> FlightInventory | None:
        return self.inventory.find_flight(flight_id)

    @staticmethod
    def _retrying(attempt: Callable[[], T], what: str) -> T:
        try:
            return retry_conflicts(attempt)
        except IntegrityError:
            raise ConcurrentChangeError(what) from None


def _customer_id(value: object) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > 200:
        raise InvalidValueError("customer_id", "customer_id must be 1 to 200 characters")
    return value


def _positions(context: str, recordings: Sequence[Recording[uuid.UUID]]) -> Positions:
    position = ContextApplication.last_position(recordings)
    return {} if position is None else {context: position}


def _position(
    app: ContextApplication, aggregate_id: uuid.UUID, *, version: int | None = None
) -> Positions:
    """The position of an event stored earlier (for an idempotent repeat's token)."""
    position = app.position_of(aggregate_id, version)
    return {} if position is None else {app.spec.name: position}
