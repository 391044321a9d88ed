from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from uuid import UUID, uuid4

import pytest
from eventsourcing.persistence import (
    DatetimeAsISO,
    JSONTranscoder,
    Mapper,
    StoredEvent,
    UUIDAsHex,
)
from eventsourcing.utils import get_topic

from flightbook.domain.booking import (
    ALLOWED_TRANSITIONS,
    Booking,
    BookingStatus,
    CancellationReason,
    RejectionReason,
)
from flightbook.domain.errors import IllegalTransitionError, InvalidValueError
from flightbook.domain.payment import payment_id_for
from flightbook.domain.values import Money

if TYPE_CHECKING:
    from collections.abc import Callable

pytestmark = pytest.mark.unit

HOLD_DEADLINE = datetime(2026, 11, 24, 10, 15, tzinfo=UTC)
# the statuses a booking has before it is confirmed, rejected or cancelled
UNFINISHED = [BookingStatus.REQUESTED, BookingStatus.SEATS_HELD, BookingStatus.PAYMENT_AUTHORIZED]


def request_fields(**changes: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "booking_id": uuid4(),
        "customer_id": "alice",
        "flight_id": uuid4(),
        "fare": "Y",
        "passengers": "sealed:v1:Zm9vYmFy",
        "passenger_count": 2,
        "price_amount": 90000,
        "currency": "EUR",
        "refundable": False,
        "payment_token": "tok_ok",
    }
    fields.update(changes)
    return fields


def booking_in(status: BookingStatus, *, refundable: bool = False) -> Booking:
    """A booking brought to ``status`` along the happy path, events collected."""
    booking = Booking.request(**request_fields(refundable=refundable))
    if status is BookingStatus.REJECTED:
        booking.reject(RejectionReason.NO_SEATS)
    elif status is BookingStatus.CANCELLED:
        booking.cancel(CancellationReason.CUSTOMER, "alice")
    else:
        path = [
            BookingStatus.SEATS_HELD,
            BookingStatus.PAYMENT_AUTHORIZED,
            BookingStatus.CONFIRMED,
        ]
        for step in path[: path.index(status) + 1] if status in path else []:
            advance(booking, step)
    booking.collect_events()
    return booking


def advance(booking: Booking, target: BookingStatus) -> None:
    commands: dict[BookingStatus, Callable[[], None]] = {
        BookingStatus.SEATS_HELD: lambda: booking.mark_seats_held(HOLD_DEADLINE),
        BookingStatus.PAYMENT_AUTHORIZED: lambda: booking.mark_payment_authorized(
            payment_id_for(booking.id)
        ),
        BookingStatus.CONFIRMED: booking.confirm,
        BookingStatus.REJECTED: lambda: booking.reject(RejectionReason.PAYMENT_DECLINED),
        BookingStatus.CANCELLED: lambda: booking.cancel(CancellationReason.AGENT, "agent-7"),
    }
    commands[target]()


# -- requesting ----------------------------------------------------------------------------


def test_a_booking_is_requested_under_the_id_the_caller_gives() -> None:
    fields = request_fields()

    booking = Booking.request(**fields)

    (requested,) = booking.collect_events()
    assert isinstance(requested, Booking.Requested)
    assert booking.id == fields["booking_id"] == requested.originator_id
    assert booking.status is BookingStatus.REQUESTED
    assert booking.price == Money(90000, "EUR")
    assert booking.channel == "api"
    assert requested.passengers == "sealed:v1:Zm9vYmFy"
    assert booking.created_at == booking.updated_at == requested.timestamp
    assert booking.created_at.tzinfo is not None


def test_a_booking_records_the_channel_it_came_from() -> None:
    booking = Booking.request(**request_fields(channel="agent-desk"))

    assert booking.channel == "agent-desk"


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"booking_id": "abc"}, "booking_id"),
        ({"customer_id": " "}, "customer_id"),
        ({"flight_id": "abc"}, "flight_id"),
        ({"fare": "y"}, "fare"),
        ({"passengers": ""}, "passengers"),
        ({"passenger_count": 0}, "passengers"),
        ({"passenger_count": 10}, "passengers"),
        ({"passenger_count": True}, "passengers"),
        ({"price_amount": -1}, "price.amount"),
        ({"price_amount": 1.0}, "price.amount"),
        ({"currency": "euro"}, "price.currency"),
        ({"refundable": 1}, "refundable"),
        ({"payment_token": ""}, "payment_token"),
        ({"channel": ""}, "channel"),
    ],
)
def test_an_invalid_request_is_refused_naming_the_field(
    changes: dict[str, object], field: str
) -> None:
    with pytest.raises(InvalidValueError) as caught:
        Booking.request(**request_fields(**changes))

    assert caught.value.field == field


@pytest.mark.parametrize("count", [1, 9])
def test_one_to_nine_passengers_may_book_together(count: int) -> None:
    booking = Booking.request(**request_fields(passenger_count=count))

    assert booking.passenger_count == count


# -- the happy path ----------------------------------------------------------------------


def test_a_booking_goes_from_requested_to_confirmed_one_event_per_step() -> None:
    booking = booking_in(BookingStatus.REQUESTED)
    payment_id = payment_id_for(booking.id)

    booking.mark_seats_held(HOLD_DEADLINE)
    booking.mark_payment_authorized(payment_id)
    booking.confirm()

    events = booking.collect_events()
    assert [type(e).__name__ for e in events] == ["SeatsHeld", "PaymentAuthorized", "Confirmed"]
    assert booking.status is BookingStatus.CONFIRMED
    assert booking.hold_expires_at == HOLD_DEADLINE
    assert booking.payment_id == payment_id
    assert booking.updated_at == events[-1].timestamp


def test_a_hold_deadline_must_be_timezone_aware() -> None:
    booking = booking_in(BookingStatus.REQUESTED)

    with pytest.raises(InvalidValueError) as caught:
        booking.mark_seats_held(HOLD_DEADLINE.replace(tzinfo=None))

    assert caught.value.field == "hold_expires_at"
    assert booking.collect_events() == []


# -- rejecting ---------------------------------------------------------------------------


@pytest.mark.parametrize("status", UNFINISHED)
def test_an_unfinished_booking_can_be_rejected(status: BookingStatus) -> None:
    booking = booking_in(status)

    booking.reject(RejectionReason.HOLD_EXPIRED)

    (rejected,) = booking.collect_events()
    assert isinstance(rejected, Booking.Rejected)
    assert rejected.reason == "HOLD_EXPIRED"
    assert booking.status is BookingStatus.REJECTED
    assert booking.reason == RejectionReason.HOLD_EXPIRED
    assert booking.is_final


def test_a_rejection_needs_a_known_reason() -> None:
    booking = booking_in(BookingStatus.REQUESTED)

    with pytest.raises(InvalidValueError) as caught:
        booking.reject("bored")  # type: ignore[arg-type]

    assert caught.value.field == "reason"
    assert booking.collect_events() == []


# -- cancelling --------------------------------------------------------------------------


@pytest.mark.parametrize("status", UNFINISHED)
def test_cancelling_before_confirmation_refunds_nothing(status: BookingStatus) -> None:
    """Nothing was captured yet: the saga voids the authorization instead."""
    booking = booking_in(status, refundable=True)

    booking.cancel(CancellationReason.CUSTOMER, "alice")

    (cancelled,) = booking.collect_events()
    assert isinstance(cancelled, Booking.Cancelled)
    assert (cancelled.refund_amount, cancelled.was_confirmed) == (0, False)
    assert (cancelled.reason, cancelled.by) == ("CUSTOMER", "alice")
    assert booking.status is BookingStatus.CANCELLED


@pytest.mark.parametrize(
    ("refundable", "reason", "refund"),
    [
        (True, CancellationReason.CUSTOMER, 90000),
        (True, CancellationReason.AGENT, 90000),
        (True, CancellationReason.FLIGHT_CANCELLED, 90000),
        (False, CancellationReason.CUSTOMER, 0),
        (False, CancellationReason.AGENT, 0),
        (False, CancellationReason.FLIGHT_CANCELLED, 90000),
    ],
)
def test_cancelling_a_confirmed_booking_refunds_per_the_fare_rules(
    refundable: bool, reason: CancellationReason, refund: int
) -> None:
    booking = booking_in(BookingStatus.CONFIRMED, refundable=refundable)

    booking.cancel(reason, "someone")

    (cancelled,) = booking.collect_events()
    assert isinstance(cancelled, Booking.Cancelled)
    assert (cancelled.refund_amount, cancelled.was_confirmed) == (refund, True)
    assert booking.refund_amount == refund
    assert booking.cancelled_by == "someone"


@pytest.mark.parametrize(
    ("reason", "by", "field"),
    [("CUSTOMER", "alice", "reason"), (CancellationReason.CUSTOMER, " ", "by")],
)
def test_a_cancellation_needs_a_known_reason_and_who_asked(
    reason: object, by: str, field: str
) -> None:
    booking = booking_in(BookingStatus.CONFIRMED)

    with pytest.raises(InvalidValueError) as caught:
        booking.cancel(reason, by)  # type: ignore[arg-type]

    assert caught.value.field == field
    assert booking.collect_events() == []


# -- the status graph, exhaustively --------------------------------------------------------

ALL_PAIRS = [
    (s, t) for s in BookingStatus for t in BookingStatus if t is not BookingStatus.REQUESTED
]


@pytest.mark.parametrize(("status", "target"), ALL_PAIRS)
def test_every_transition_follows_the_status_graph(
    status: BookingStatus, target: BookingStatus
) -> None:
    """Allowed: one event. Into the current status: no-op. Anything else: refused."""
    booking = booking_in(status)
    before = booking.version

    if target in ALLOWED_TRANSITIONS[status]:
        advance(booking, target)
        assert booking.status is target
        assert len(booking.collect_events()) == 1
    elif target is status:
        advance(booking, target)
        assert booking.status is status
        assert booking.collect_events() == []
    else:
        with pytest.raises(IllegalTransitionError) as caught:
            advance(booking, target)
        assert (caught.value.from_state, caught.value.to_state) == (status, target)
        assert status.value in caught.value.message
        assert target.value in caught.value.message
        assert caught.value.code == "illegal_transition"
        assert booking.collect_events() == []
        assert booking.version == before


# -- versioned events -----------------------------------------------------------------------


def json_mapper() -> Mapper[UUID]:
    transcoder = JSONTranscoder()
    transcoder.register(UUIDAsHex())
    transcoder.register(DatetimeAsISO())
    return Mapper(transcoder=transcoder)


def test_a_version_1_requested_event_is_upcast_with_the_api_channel() -> None:
    """v1 events were stored before ``channel`` existed; they replay as channel "api"."""
    mapper = json_mapper()
    booking_id, flight_id = uuid4(), uuid4()
    v1_state = {  # what v1 stored: no "channel", and no "class_version" (implicitly 1)
        "timestamp": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        "originator_topic": get_topic(Booking),
        "customer_id": "alice",
        "flight_id": flight_id,
        "fare": "Y",
        "passengers": "sealed:v1:Zm9vYmFy",
        "passenger_count": 1,
        "price_amount": 45000,
        "currency": "EUR",
        "refundable": True,
        "payment_token": "tok_ok",
    }
    stored = StoredEvent(
        originator_id=booking_id,
        originator_version=1,
        topic=get_topic(Booking.Requested),
        state=mapper.transcoder.encode(v1_state),
    )

    requested = mapper.to_domain_event(stored)
    booking = requested.mutate(None)  # type: ignore[attr-defined]

    assert isinstance(requested, Booking.Requested)
    assert requested.channel == "api"
    assert isinstance(booking, Booking)
    assert (booking.id, booking.channel, booking.flight_id) == (booking_id, "api", flight_id)
    assert booking.status is BookingStatus.REQUESTED
    assert booking.created_at == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def test_new_requested_events_are_stored_as_version_2() -> None:
    mapper = json_mapper()
    booking = Booking.request(**request_fields(channel="web"))
    (requested,) = booking.collect_events()

    stored = mapper.to_stored_event(requested)

    state = mapper.transcoder.decode(stored.state)
    assert (state["class_version"], state["channel"]) == (2, "web")
    assert mapper.to_domain_event(stored) == requested


def test_stored_events_replay_into_the_same_booking() -> None:
    mapper = json_mapper()
    booking = Booking.request(**request_fields(refundable=True))
    booking.mark_seats_held(HOLD_DEADLINE + timedelta(minutes=1))
    booking.mark_payment_authorized(payment_id_for(booking.id))
    booking.confirm()
    booking.cancel(CancellationReason.CUSTOMER, "alice")
    events = booking.collect_events()

    replayed: Booking | None = None
    for stored in map(mapper.to_stored_event, events):
        replayed = mapper.to_domain_event(stored).mutate(replayed)  # type: ignore[attr-defined]

    assert replayed == booking
