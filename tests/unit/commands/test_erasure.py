"""Erasing a customer's personal data, on the in-memory store (issue 17).

The command side and the saga share one store and one vault (:class:`MemorySaga`), so a
booking goes all the way to CONFIRMED with its sealed payment token before it is erased.
"""

from __future__ import annotations

import uuid

import pytest

from flightbook.commands.service import CommandService, ErasureResult
from flightbook.domain.booking import Booking, BookingStatus
from flightbook.domain.errors import InvalidValueError
from flightbook.domain.subject import (
    BookingsInProgressError,
    DataSubject,
    ErasureReason,
    data_subject_id,
)
from flightbook.eventstore.pii import ERASED
from tests.support.memory import MemorySaga, command_service, event_counts, stored
from tests.unit.commands.test_service import booking_request

pytestmark = pytest.mark.unit

REQUEST = ErasureReason.CUSTOMER_REQUEST


@pytest.fixture
def saga() -> MemorySaga:
    return MemorySaga()


@pytest.fixture
def service(saga: MemorySaga) -> CommandService:
    return command_service(saga.store, saga.clock, vault=saga.vault)


@pytest.fixture
def flight_id(saga: MemorySaga) -> uuid.UUID:
    return saga.schedule_flight(seats=20)


def book(
    service: CommandService,
    flight_id: uuid.UUID,
    key: str,
    *,
    customer: str = "alice",
    token: str = "tok_ok",  # noqa: S107 - a test card token
) -> uuid.UUID:
    request = booking_request(flight_id, token=token)
    return service.request_booking(request, customer, key, customer).booking_id


def erase(service: CommandService, customer: str = "alice", **kwargs: object) -> ErasureResult:
    options: dict[str, object] = {"reason": REQUEST, "actor": "dpo-1", **kwargs}
    return service.erase_personal_data(customer, **options)  # type: ignore[arg-type]


def opened(service: CommandService, booking: Booking) -> str:
    return service.vault.open(booking.customer_id, booking.passengers)


def test_a_booking_authorizes_with_its_sealed_payment_token(
    saga: MemorySaga, service: CommandService, flight_id: uuid.UUID
) -> None:
    booking_id = book(service, flight_id, "key-1", token="tok_ok_9911")

    saga.settle()

    assert saga.booking(booking_id).status is BookingStatus.CONFIRMED
    assert saga.booking(booking_id).payment_token.startswith("pii2:")


def test_an_erasure_records_every_booking_and_the_subject_and_shreds_the_keys(
    saga: MemorySaga, service: CommandService, flight_id: uuid.UUID
) -> None:
    confirmed = book(service, flight_id, "key-1")
    declined = book(service, flight_id, "key-2", token="tok_declined")
    bobs = book(service, flight_id, "key-3", customer="bob")
    saga.settle()
    assert saga.booking(declined).status is BookingStatus.REJECTED

    result = erase(service, correlation_id="req-erase-1")

    assert (result.bookings, result.already) == (2, False)
    assert [type(e) for e, _ in stored(saga.store.bookings)[-4:]] == [
        Booking.PassengersErased,
        Booking.PassengersErased,
        DataSubject.Opened,
        DataSubject.Erased,
    ]
    erased_events = [
        (e, m)
        for e, m in stored(saga.store.bookings)
        if isinstance(e, Booking.PassengersErased | DataSubject.Erased)
    ]
    assert {e.originator_id for e, _ in erased_events} == {
        confirmed,
        declined,
        data_subject_id("alice"),
    }
    assert {(m.actor, m.correlation_id) for _, m in erased_events} == {("dpo-1", "req-erase-1")}
    subject_event = next(e for e, _ in erased_events if isinstance(e, DataSubject.Erased))
    assert (subject_event.customer_id, subject_event.reason, subject_event.bookings) == (
        "alice",
        "customer_request",
        2,
    )
    assert result.positions == {"booking": saga.store.bookings.recorder.max_notification_id()}
    for booking_id in (confirmed, declined):
        booking = saga.booking(booking_id)
        assert booking.personal_data_erased
        assert opened(service, booking) == ERASED
        assert service.vault.open("alice", booking.payment_token) == ERASED
    assert opened(service, saga.booking(bobs)) != ERASED  # another customer keeps theirs


def test_an_erasure_is_refused_while_a_booking_is_in_progress_and_stores_nothing(
    saga: MemorySaga, service: CommandService, flight_id: uuid.UUID
) -> None:
    book(service, flight_id, "key-1")
    saga.settle()
    waiting = book(service, flight_id, "key-2")
    before = event_counts(saga.store)

    with pytest.raises(BookingsInProgressError) as refused:
        erase(service)

    assert refused.value.code == "bookings_in_progress"
    assert refused.value.count == 1
    assert event_counts(saga.store) == before
    assert opened(service, saga.booking(waiting)) != ERASED


def test_an_erasure_again_stores_nothing_and_says_it_was_done_before(
    saga: MemorySaga, service: CommandService, flight_id: uuid.UUID
) -> None:
    book(service, flight_id, "key-1")
    saga.settle()
    first = erase(service)
    before = event_counts(saga.store)

    again = erase(service, reason=ErasureReason.RETENTION)

    assert (again.bookings, again.already) == (0, True)
    assert again.positions == first.positions
    assert event_counts(saga.store) == before


def test_an_erased_customer_books_again_and_a_second_erasure_takes_only_the_new_booking(
    saga: MemorySaga, service: CommandService, flight_id: uuid.UUID
) -> None:
    old = book(service, flight_id, "key-1")
    saga.settle()
    erase(service)

    new = book(service, flight_id, "key-2", token="tok_ok_5151")
    saga.settle()

    assert saga.booking(new).status is BookingStatus.CONFIRMED  # its token opened: a new key
    assert opened(service, saga.booking(new)) != ERASED
    assert opened(service, saga.booking(old)) == ERASED
    second = erase(service, reason=ErasureReason.RETENTION)
    assert (second.bookings, second.already) == (1, False)
    assert opened(service, saga.booking(new)) == ERASED
    subject = saga.store.bookings.find_data_subject("alice")
    assert subject is not None
    assert (subject.erasures, subject.bookings_erased, subject.reason) == (2, 2, "retention")


def test_a_customer_without_bookings_is_erased_too(service: CommandService) -> None:
    result = erase(service, "carol")

    assert (result.bookings, result.already) == (0, False)
    assert erase(service, "carol").already


@pytest.mark.parametrize(
    ("customer", "reason", "field"),
    [
        ("alice", "because", "reason"),
        ("", REQUEST, "customer_id"),
        ("x" * 201, REQUEST, "customer_id"),
    ],
)
def test_an_erasure_with_a_bad_value_is_refused_naming_the_field(
    saga: MemorySaga, service: CommandService, customer: str, reason: object, field: str
) -> None:
    before = event_counts(saga.store)

    with pytest.raises(InvalidValueError) as refused:
        erase(service, customer, reason=reason)

    assert refused.value.field == field
    assert event_counts(saga.store) == before


def test_a_booking_stored_while_the_erasure_decided_makes_it_start_again(
    saga: MemorySaga,
    service: CommandService,
    flight_id: uuid.UUID,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The transaction's guard sees the customer's bookings as they are, not as read."""
    first = book(service, flight_id, "key-1")
    late = book(service, flight_id, "key-2")
    saga.settle()
    bookings = saga.store.bookings
    reads: list[int] = []
    real = bookings.customer_bookings

    def stale_once(customer_id: str) -> list[uuid.UUID]:
        reads.append(1)
        found = real(customer_id)
        return [b for b in found if b != late] if len(reads) == 1 else found

    monkeypatch.setattr(bookings, "customer_bookings", stale_once)

    result = erase(service)

    assert len(reads) == 2
    assert result.bookings == 2
    assert saga.booking(first).personal_data_erased
    assert saga.booking(late).personal_data_erased


def test_the_saga_answers_nothing_of_an_erasure(
    saga: MemorySaga, service: CommandService, flight_id: uuid.UUID
) -> None:
    book(service, flight_id, "key-1")
    saga.settle()
    erase(service)
    before = event_counts(saga.store)
    notes = list(saga.notes)

    saga.settle()

    assert event_counts(saga.store) == before
    assert saga.notes == notes
