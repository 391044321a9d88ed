"""The business-flow caps decide on a customer's bookings in progress, nothing else."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from flightbook.domain.caps import BookingCaps, Cap, CapExceededError, InProgress, check_caps

pytestmark = pytest.mark.unit

CAPS = BookingCaps(bookings_in_progress=5, seats_held=18, seats_held_per_flight=9)
FLIGHT = uuid.uuid4()
OTHER = uuid.uuid4()


def held(seats: int, flight: uuid.UUID = FLIGHT) -> InProgress:
    return InProgress(booking_id=uuid.uuid4(), flight_id=flight, seats=seats)


def refused(in_progress: list[InProgress], *, seats: int, flight: uuid.UUID = FLIGHT) -> Cap:
    with pytest.raises(CapExceededError) as caught:
        check_caps(CAPS, in_progress, flight_id=flight, seats=seats)
    assert caught.value.code == "cap_exceeded"
    return caught.value.cap


def test_a_customer_with_nothing_in_progress_may_book_the_largest_booking() -> None:
    check_caps(CAPS, [], flight_id=FLIGHT, seats=9)


def test_the_bookings_in_progress_cap_counts_bookings_whatever_their_size() -> None:
    four = [held(1, uuid.uuid4()) for _ in range(4)]
    check_caps(CAPS, four, flight_id=FLIGHT, seats=1)

    assert refused([*four, held(1, uuid.uuid4())], seats=1) is Cap.BOOKINGS_IN_PROGRESS


def test_the_per_flight_cap_counts_only_the_seats_on_that_flight() -> None:
    check_caps(CAPS, [held(8), held(9, OTHER)], flight_id=FLIGHT, seats=1)

    assert refused([held(8), held(9, OTHER)], seats=2) is Cap.SEATS_HELD_PER_FLIGHT
    assert refused([held(9)], seats=1) is Cap.SEATS_HELD_PER_FLIGHT


def test_the_seats_held_cap_counts_every_flight() -> None:
    flights = [uuid.uuid4() for _ in range(3)]
    check_caps(CAPS, [held(9, flights[0]), held(8, flights[1])], flight_id=flights[2], seats=1)

    two_flights = [held(9, flights[0]), held(9, flights[1])]
    assert refused(two_flights, seats=1, flight=flights[2]) is Cap.SEATS_HELD


def test_the_refusal_names_the_cap_its_limit_what_is_held_and_what_was_asked() -> None:
    with pytest.raises(CapExceededError) as caught:
        check_caps(CAPS, [held(6)], flight_id=FLIGHT, seats=4)

    error = caught.value
    assert (error.cap, error.limit, error.current, error.requested) == (
        Cap.SEATS_HELD_PER_FLIGHT,
        9,
        6,
        4,
    )
    assert "seats_held_per_flight" in error.message


@hypothesis_settings(max_examples=200, deadline=None)
@given(
    existing=st.lists(
        st.tuples(st.integers(0, 2), st.integers(1, 9)), max_size=8
    ),  # (flight index, seats)
    flight=st.integers(0, 2),
    seats=st.integers(1, 9),
)
def test_a_booking_is_allowed_exactly_when_every_cap_still_holds_after_it(
    existing: list[tuple[int, int]], flight: int, seats: int
) -> None:
    flights = [FLIGHT, OTHER, uuid.UUID(int=7)]
    in_progress = [held(n, flights[f]) for f, n in existing]
    after = [*in_progress, held(seats, flights[flight])]
    within = (
        len(after) <= CAPS.bookings_in_progress
        and sum(b.seats for b in after) <= CAPS.seats_held
        and sum(b.seats for b in after if b.flight_id == flights[flight])
        <= CAPS.seats_held_per_flight
    )

    try:
        check_caps(CAPS, in_progress, flight_id=flights[flight], seats=seats)
    except CapExceededError:
        allowed = False
    else:
        allowed = True

    assert allowed is within
