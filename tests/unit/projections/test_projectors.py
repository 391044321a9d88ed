"""The projectors: one envelope and the current document in, the next document out."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest

from flightbook.contracts import payloads
from flightbook.projections.projectors import (
    ProjectionError,
    booking_hash,
    evolve_booking,
    evolve_flight,
    funnel_daily_documents,
    load_factor_documents,
    ms,
    sales_daily_documents,
    search_keys,
    seats_hash,
)
from tests.support.projections import DEPARTURE, FakeLookups, Log, scheduled

pytestmark = pytest.mark.unit

FLIGHT = uuid.UUID("11111111-2222-4333-8444-555555555555")
LOOKUPS = FakeLookups({str(FLIGHT): ("LHR", "JFK")})
CHANGED_BY_ERASURE = {"passengers", "personal_data_erased", "updated_at", "_v", "_pos"}


class ErasedLookups(FakeLookups):
    """The customer's key is gone: every passenger opens as erased."""

    def __init__(self) -> None:
        super().__init__({str(FLIGHT): ("LHR", "JFK")})

    def passengers(self, customer_id: str, sealed: str, count: int) -> list[dict[str, str]]:
        return [{"name": "[erased]", "email": "[erased]"} for _ in range(count)]


def requested(passengers: int = 2, price: int = 90000) -> payloads.BookingRequested:
    return payloads.BookingRequested(
        customer_id="alice",
        flight_id=FLIGHT,
        fare="Y",
        passenger_count=passengers,
        passengers="sealed",
        price=payloads.Money(amount=price, currency="EUR"),
        refundable=True,
    )


def test_a_requested_booking_becomes_a_whole_document_with_its_route_and_passengers(
    booking_log: Log,
) -> None:
    booking = uuid.uuid4()
    envelope = booking_log.add(booking, requested())

    doc = evolve_booking(None, envelope, LOOKUPS)

    at = ms(envelope.occurred_at)
    assert doc == {
        "_id": str(booking),
        "booking_id": str(booking),
        "customer_id": "alice",
        "flight_id": str(FLIGHT),
        "fare": "Y",
        "status": "REQUESTED",
        "passengers": [
            {"name": "sealed-0", "email": "alice@example.com"},
            {"name": "sealed-1", "email": "alice@example.com"},
        ],
        "passenger_count": 2,
        "price": {"amount": 90000, "currency": "EUR"},
        "refundable": True,
        "channel": "api",
        "reason": None,
        "refund": None,
        "hold_expires_at": None,
        "payment_id": None,
        "cancelled_by": None,
        "created_at": at,
        "updated_at": at,
        "reached": {
            "REQUESTED": at,
            "SEATS_HELD": None,
            "PAYMENT_AUTHORIZED": None,
            "CONFIRMED": None,
            "REJECTED": None,
            "CANCELLED": None,
        },
        "date": "2031-03-01",
        "route": "LHR-JFK",
        "_v": 1,
        "_pos": 1,
    }
    assert at.microsecond % 1000 == 0  # what MongoDB keeps


def test_each_booking_event_moves_the_status_and_records_when_it_was_reached(
    booking_log: Log,
) -> None:
    booking = uuid.uuid4()
    payment = uuid.uuid4()
    doc = evolve_booking(None, booking_log.add(booking, requested()), LOOKUPS)
    deadline = dt.datetime(2031, 3, 1, 10, 0, 0, 999999, tzinfo=dt.UTC)

    doc = evolve_booking(
        doc, booking_log.add(booking, payloads.BookingSeatsHeld(hold_expires_at=deadline)), LOOKUPS
    )
    assert (doc["status"], doc["hold_expires_at"]) == ("SEATS_HELD", ms(deadline))
    doc = evolve_booking(
        doc,
        booking_log.add(booking, payloads.BookingPaymentAuthorized(payment_id=payment)),
        LOOKUPS,
    )
    assert (doc["status"], doc["payment_id"]) == ("PAYMENT_AUTHORIZED", str(payment))
    confirmed = booking_log.add(booking, payloads.BookingConfirmed())
    doc = evolve_booking(doc, confirmed, LOOKUPS)
    cancelled = booking_log.add(
        booking,
        payloads.BookingCancelled(
            reason="CUSTOMER", cancelled_by="alice", refund_amount=90000, was_confirmed=True
        ),
    )
    doc = evolve_booking(doc, cancelled, LOOKUPS)

    assert doc["status"] == "CANCELLED"
    assert (doc["reason"], doc["cancelled_by"]) == ("CUSTOMER", "alice")
    assert doc["refund"] == {"amount": 90000, "currency": "EUR"}
    assert doc["reached"]["CONFIRMED"] == ms(confirmed.occurred_at)
    assert doc["reached"]["CANCELLED"] == ms(cancelled.occurred_at)
    assert doc["updated_at"] == ms(cancelled.occurred_at)
    assert (doc["_v"], doc["_pos"]) == (5, 5)
    assert booking_hash(doc) == {
        "_v": "5",
        "status": "CANCELLED",
        "customer_id": doc["customer_id"],
        **{f"at:{status}": at.isoformat() for status, at in doc["reached"].items() if at},
    }
    assert booking_hash(doc)["at:CANCELLED"] == ms(cancelled.occurred_at).isoformat()


def test_a_rejected_booking_keeps_its_reason(booking_log: Log) -> None:
    booking = uuid.uuid4()
    doc = evolve_booking(None, booking_log.add(booking, requested()), LOOKUPS)

    doc = evolve_booking(
        doc, booking_log.add(booking, payloads.BookingRejected(reason="NO_SEATS")), LOOKUPS
    )

    assert (doc["status"], doc["reason"], doc["_v"]) == ("REJECTED", "NO_SEATS", 2)
    assert doc["reached"]["REJECTED"] is not None


def test_an_erasure_redacts_every_passenger_field_and_keeps_the_status(booking_log: Log) -> None:
    booking = uuid.uuid4()
    doc = evolve_booking(None, booking_log.add(booking, requested(passengers=2)), LOOKUPS)
    doc = evolve_booking(doc, booking_log.add(booking, payloads.BookingConfirmed()), LOOKUPS)
    erasure = booking_log.add(
        booking, payloads.PassengersErased(booking_id=booking, reason="customer_request")
    )

    erased = evolve_booking(doc, erasure, LOOKUPS)

    assert erased["passengers"] == [{"name": "[erased]", "email": "[erased]"}] * 2
    assert erased["personal_data_erased"] is True
    assert (erased["status"], erased["reached"]) == ("CONFIRMED", doc["reached"])
    assert (erased["updated_at"], erased["_v"], erased["_pos"]) == (ms(erasure.occurred_at), 3, 3)
    assert {k: v for k, v in erased.items() if k not in CHANGED_BY_ERASURE} == {
        k: v for k, v in doc.items() if k not in CHANGED_BY_ERASURE
    }
    assert "personal_data_erased" not in doc  # absent until an erasure (older documents too)
    erased_hash = booking_hash(erased)  # no personal data: the statuses, and whose it is
    reached = [status for status, at in erased["reached"].items() if at]
    assert set(erased_hash) == {"_v", "status", "customer_id", *(f"at:{s}" for s in reached)}
    assert erased_hash["customer_id"] == doc["customer_id"]


def test_an_erased_booking_is_the_same_whether_it_was_opened_before_or_after_the_erasure(
    booking_log: Log,
) -> None:
    """Live, the names were opened and then erased; rebuilt, they open as erased: one result."""
    booking = uuid.uuid4()
    envelopes = [
        booking_log.add(booking, requested(passengers=3)),
        booking_log.add(booking, payloads.BookingRejected(reason="NO_SEATS")),
        booking_log.add(booking, payloads.PassengersErased(booking_id=booking, reason="retention")),
    ]

    live = rebuilt = None
    for envelope in envelopes:
        live = evolve_booking(live, envelope, LOOKUPS)
        rebuilt = evolve_booking(rebuilt, envelope, ErasedLookups())

    assert live == rebuilt


def test_a_booking_of_an_unknown_flight_has_no_route(booking_log: Log) -> None:
    doc = evolve_booking(None, booking_log.add(uuid.uuid4(), requested()), FakeLookups())

    assert doc["route"] is None


def test_a_second_request_for_the_same_booking_is_refused(booking_log: Log) -> None:
    booking = uuid.uuid4()
    created = evolve_booking(None, booking_log.add(booking, requested()), LOOKUPS)
    again = booking_log.add(booking, requested())

    with pytest.raises(ProjectionError, match="already requested"):
        evolve_booking(created, again, LOOKUPS)


def test_a_change_of_a_booking_never_requested_is_refused(booking_log: Log) -> None:
    confirmed = booking_log.add(uuid.uuid4(), payloads.BookingConfirmed())

    with pytest.raises(ProjectionError, match="not requested"):
        evolve_booking(None, confirmed, LOOKUPS)


def test_an_event_of_another_context_is_refused(booking_log: Log) -> None:
    booking = uuid.uuid4()
    doc = evolve_booking(None, booking_log.add(booking, requested()), LOOKUPS)

    with pytest.raises(ProjectionError, match="not a booking event"):
        evolve_booking(
            doc, booking_log.add(booking, payloads.PaymentCaptured(gateway_ref="g")), LOOKUPS
        )


def test_a_scheduled_flight_lists_every_fare_with_its_seats_left(inventory_log: Log) -> None:
    flight = uuid.uuid4()

    doc = evolve_flight(None, inventory_log.add(flight, scheduled(seats=10, overbooking=2)))

    assert doc["date"] == "2031-12-24"
    assert doc["departure"] == DEPARTURE
    assert (doc["origin"], doc["destination"], doc["status"]) == ("LHR", "JFK", "SCHEDULED")
    assert doc["fares"][0] == {
        "code": "Y",
        "cabin": "economy",
        "price": {"amount": 45000, "currency": "EUR"},
        "seats": 10,
        "overbooking": 2,
        "refundable": False,
        "held": 0,
        "sold": 0,
        "seats_left": 12,
    }
    assert seats_hash(doc) == {"_v": "1", "Y": "12", "J": "2"}
    assert search_keys(doc) == ["search:LHR:JFK:2031-12-24"]


def test_holds_sales_releases_expiries_and_returns_move_the_seat_counts(
    inventory_log: Log,
) -> None:
    flight, a, b, c = uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    doc = evolve_flight(None, inventory_log.add(flight, scheduled(seats=10)))
    later = DEPARTURE - dt.timedelta(days=1)
    steps: list[tuple[payloads.AnyPayload, int, int]] = [
        (payloads.SeatsHeld(booking_id=a, fare_code="Y", seats=3, expires_at=later), 3, 0),
        (payloads.SeatsHeld(booking_id=b, fare_code="Y", seats=2, expires_at=later), 5, 0),
        (payloads.SeatsHeld(booking_id=c, fare_code="Y", seats=1, expires_at=later), 6, 0),
        (payloads.HoldConfirmed(booking_id=a, fare_code="Y", seats=3), 3, 3),
        (
            payloads.HoldReleased(booking_id=b, fare_code="Y", seats=2, reason="PAYMENT_DECLINED"),
            1,
            3,
        ),
        (payloads.HoldExpired(booking_id=c, fare_code="Y", seats=1, expired_at=later), 0, 3),
        (payloads.SoldSeatsReturned(booking_id=a, fare_code="Y", seats=3, reason="CUSTOMER"), 0, 0),
    ]
    for payload, held, sold in steps:
        doc = evolve_flight(doc, inventory_log.add(flight, payload))
        fare = doc["fares"][0]
        assert (fare["held"], fare["sold"], fare["seats_left"]) == (held, sold, 10 - held - sold)
    assert doc["_v"] == 8
    assert doc["fares"][1]["seats_left"] == 2  # the other fare never moved


def test_a_fare_change_takes_the_new_terms_and_seats_left_never_goes_below_zero(
    inventory_log: Log,
) -> None:
    flight = uuid.uuid4()
    doc = evolve_flight(None, inventory_log.add(flight, scheduled(seats=4)))
    doc = evolve_flight(
        doc,
        inventory_log.add(
            flight,
            payloads.SeatsHeld(
                booking_id=uuid.uuid4(), fare_code="Y", seats=4, expires_at=DEPARTURE
            ),
        ),
    )

    doc = evolve_flight(
        doc,
        inventory_log.add(
            flight,
            payloads.FareChanged(
                fare_code="Y",
                price=payloads.Money(amount=50000, currency="EUR"),
                seats=3,
                overbooking=0,
            ),
        ),
    )

    fare = doc["fares"][0]
    assert (fare["price"]["amount"], fare["seats"], fare["seats_left"]) == (50000, 3, 0)


def test_a_cancelled_flight_says_why(inventory_log: Log) -> None:
    flight = uuid.uuid4()
    doc = evolve_flight(None, inventory_log.add(flight, scheduled()))

    doc = evolve_flight(doc, inventory_log.add(flight, payloads.FlightCancelled(reason="weather")))

    assert (doc["status"], doc["cancellation_reason"], doc["_v"]) == ("CANCELLED", "weather", 2)


def test_an_unknown_fare_is_refused(inventory_log: Log) -> None:
    flight = uuid.uuid4()
    doc = evolve_flight(None, inventory_log.add(flight, scheduled()))

    with pytest.raises(ProjectionError, match="no fare 'F'"):
        evolve_flight(
            doc,
            inventory_log.add(
                flight, payloads.HoldConfirmed(booking_id=flight, fare_code="F", seats=1)
            ),
        )


def test_load_factor_is_sold_over_seats_per_fare(inventory_log: Log) -> None:
    flight = uuid.uuid4()
    booking = uuid.uuid4()
    doc = evolve_flight(None, inventory_log.add(flight, scheduled(seats=8)))
    for payload in (
        payloads.SeatsHeld(booking_id=booking, fare_code="Y", seats=4, expires_at=DEPARTURE),
        payloads.HoldConfirmed(booking_id=booking, fare_code="Y", seats=3),
    ):
        doc = evolve_flight(doc, inventory_log.add(flight, payload))

    rows = load_factor_documents(doc)

    assert rows[0] == {
        "_id": f"{flight}:Y",
        "flight_id": str(flight),
        "flight_number": "FB101",
        "date": "2031-12-24",
        "fare": "Y",
        "seats": 8,
        "sold": 3,
        "held": 1,
        "load_factor": 0.375,
    }
    assert rows[1]["load_factor"] == 0.0


def _booking(day: str, route: str | None, status: str, **extra: object) -> dict[str, object]:
    reached = dict.fromkeys(
        ("REQUESTED", "SEATS_HELD", "PAYMENT_AUTHORIZED", "CONFIRMED", "REJECTED", "CANCELLED")
    )
    for name in extra.pop("reached", ("REQUESTED",)):  # type: ignore[attr-defined]
        reached[name] = dt.datetime(2031, 1, 1, tzinfo=dt.UTC)
    return {
        "date": day,
        "route": route,
        "status": status,
        "reason": extra.pop("reason", None),
        "reached": reached,
        "passenger_count": extra.pop("passengers", 1),
        "price": {"amount": extra.pop("price", 100), "currency": "EUR"},
        "refund": extra.pop("refund", None),
    }


def test_daily_sales_and_funnel_are_computed_from_the_booking_documents() -> None:
    confirmed = ("REQUESTED", "SEATS_HELD", "PAYMENT_AUTHORIZED", "CONFIRMED")
    bookings = [
        _booking("2031-01-01", "LHR-JFK", "CONFIRMED", reached=confirmed, passengers=2, price=200),
        _booking(
            "2031-01-01",
            "LHR-JFK",
            "CANCELLED",
            reached=(*confirmed, "CANCELLED"),
            reason="CUSTOMER",
            price=100,
            refund={"amount": 100, "currency": "EUR"},
        ),
        _booking(
            "2031-01-01",
            "LHR-JFK",
            "REJECTED",
            reached=("REQUESTED", "SEATS_HELD", "REJECTED"),
            reason="PAYMENT_DECLINED",
        ),
        _booking("2031-01-01", "LHR-CDG", "REQUESTED"),
        _booking("2031-01-02", None, "REQUESTED"),
    ]

    sales = sales_daily_documents(bookings)
    funnel = funnel_daily_documents(bookings)

    assert [s["_id"] for s in sales] == ["2031-01-01:LHR-CDG", "2031-01-01:LHR-JFK"]
    assert sales[1] == {
        "_id": "2031-01-01:LHR-JFK",
        "date": "2031-01-01",
        "origin": "LHR",
        "destination": "JFK",
        "bookings_confirmed": 2,
        "seats_sold": 3,
        "revenue": {"amount": 300, "currency": "EUR"},
        "cancellations": 1,
        "refunds": {"amount": 100, "currency": "EUR"},
        "revenue_by_currency": {"EUR": 300},
        "refunds_by_currency": {"EUR": 100},
    }
    assert funnel == [
        {
            "_id": "2031-01-01",
            "date": "2031-01-01",
            "requested": 4,
            "seats_held": 3,
            "payment_authorized": 2,
            "confirmed": 2,
            "rejected": {"PAYMENT_DECLINED": 1},
            "cancelled": {"CUSTOMER": 1},
        },
        {
            "_id": "2031-01-02",
            "date": "2031-01-02",
            "requested": 1,
            "seats_held": 0,
            "payment_authorized": 0,
            "confirmed": 0,
            "rejected": {},
            "cancelled": {},
        },
    ]
