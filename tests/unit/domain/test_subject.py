"""The data subject and the erasure of a booking's personal data (issue 17)."""

from __future__ import annotations

from uuid import UUID

import pytest

from flightbook.domain.booking import (
    ERASABLE,
    Booking,
    BookingStatus,
    CancellationReason,
    RejectionReason,
)
from flightbook.domain.errors import IllegalTransitionError, InvalidValueError
from flightbook.domain.subject import (
    DataSubject,
    ErasureReason,
    data_subject_id,
    erasure_reason,
)
from tests.unit.domain.test_booking import booking_in, json_mapper, request_fields

pytestmark = pytest.mark.unit

IN_PROGRESS = [s for s in BookingStatus if s not in ERASABLE]


def test_a_customer_has_one_data_subject_id_distinct_per_customer() -> None:
    assert data_subject_id("alice") == data_subject_id("alice")
    assert data_subject_id("alice") != data_subject_id("bob")
    assert DataSubject.open("alice").id == data_subject_id("alice")


def test_an_erasure_records_the_reason_code_and_the_bookings_count_only() -> None:
    subject = DataSubject.open("alice")

    subject.erase(ErasureReason.CUSTOMER_REQUEST, bookings=3)

    opened, erased = subject.collect_events()
    assert isinstance(opened, DataSubject.Opened)
    assert isinstance(erased, DataSubject.Erased)
    assert (erased.customer_id, erased.reason, erased.bookings) == ("alice", "customer_request", 3)
    assert subject.erased
    assert (subject.erasures, subject.bookings_erased) == (1, 3)


def test_a_subject_can_be_erased_again_after_booking_again() -> None:
    subject = DataSubject.open("alice")
    subject.erase(ErasureReason.CUSTOMER_REQUEST, bookings=2)

    subject.erase(ErasureReason.RETENTION, bookings=1)

    assert (subject.erasures, subject.bookings_erased, subject.reason) == (2, 3, "retention")


@pytest.mark.parametrize("reason", ["because I said so", "", None, 3])
def test_an_erasure_reason_is_one_of_the_codes(reason: object) -> None:
    subject = DataSubject.open("alice")
    subject.collect_events()

    with pytest.raises(InvalidValueError) as raised:
        subject.erase(reason, bookings=0)  # type: ignore[arg-type]

    assert raised.value.field == "reason"
    assert subject.collect_events() == []


def test_a_reason_code_given_as_text_is_accepted() -> None:
    assert erasure_reason("legal_order") is ErasureReason.LEGAL_ORDER


@pytest.mark.parametrize("bookings", [-1, True, 1.5])
def test_the_bookings_count_is_a_natural_number(bookings: object) -> None:
    with pytest.raises(InvalidValueError):
        DataSubject.open("alice").erase(ErasureReason.RETENTION, bookings=bookings)  # type: ignore[arg-type]


def test_a_subject_needs_a_customer_id() -> None:
    with pytest.raises(InvalidValueError):
        DataSubject.open("  ")


@pytest.mark.parametrize("status", sorted(ERASABLE))
def test_a_finished_booking_records_that_its_passengers_were_erased(status: BookingStatus) -> None:
    booking = booking_in(status)

    booking.erase_personal_data(ErasureReason.CUSTOMER_REQUEST)

    (erased,) = booking.collect_events()
    assert isinstance(erased, Booking.PassengersErased)
    assert erased.reason == "customer_request"
    assert booking.personal_data_erased
    assert booking.status is status
    assert booking.passengers == "sealed:v1:Zm9vYmFy"  # the sealed text stays (unreadable)


def test_erasing_a_booking_twice_records_it_once() -> None:
    booking = booking_in(BookingStatus.CONFIRMED)
    booking.erase_personal_data(ErasureReason.CUSTOMER_REQUEST)
    booking.collect_events()

    booking.erase_personal_data(ErasureReason.RETENTION)

    assert booking.collect_events() == []


@pytest.mark.parametrize("status", IN_PROGRESS)
def test_a_booking_in_progress_keeps_its_personal_data(status: BookingStatus) -> None:
    booking = booking_in(status)

    with pytest.raises(IllegalTransitionError):
        booking.erase_personal_data(ErasureReason.CUSTOMER_REQUEST)

    assert booking.collect_events() == []
    assert not booking.personal_data_erased


def test_an_erased_confirmed_booking_can_still_be_cancelled_and_refunded() -> None:
    """The flight may still be cancelled: the saga refunds by the payment, not the token."""
    booking = booking_in(BookingStatus.CONFIRMED)
    booking.erase_personal_data(ErasureReason.CUSTOMER_REQUEST)

    booking.cancel(CancellationReason.FLIGHT_CANCELLED, "system")

    assert booking.status is BookingStatus.CANCELLED
    assert booking.refund_amount == booking.price_amount
    assert booking.personal_data_erased


def test_stored_erasure_events_replay_into_the_same_state() -> None:
    mapper = json_mapper()
    booking = Booking.request(**request_fields())
    booking.reject(RejectionReason.NO_SEATS)
    booking.erase_personal_data(ErasureReason.LEGAL_ORDER)
    history = [mapper.to_stored_event(e) for e in booking.collect_events()]
    subject = DataSubject.open("alice")
    subject.erase(ErasureReason.LEGAL_ORDER, bookings=1)
    subject_history = [mapper.to_stored_event(e) for e in subject.collect_events()]

    replayed: Booking | None = None
    for stored in history:
        replayed = mapper.to_domain_event(stored).mutate(replayed)  # type: ignore[attr-defined]
    replayed_subject: DataSubject | None = None
    for stored in subject_history:
        replayed_subject = mapper.to_domain_event(stored).mutate(replayed_subject)  # type: ignore[attr-defined]

    assert replayed is not None
    assert replayed_subject is not None
    assert replayed.personal_data_erased
    assert isinstance(replayed_subject.id, UUID)
    assert (replayed_subject.erasures, replayed_subject.customer_id) == (1, "alice")
