"""Read-model documents -> API responses: public fields only, times in UTC, erasure shown."""

from __future__ import annotations

import datetime as dt
import uuid

import msgspec
import pytest

from flightbook.queries.models import (
    FunnelDay,
    booking_from_document,
    flight_from_document,
    funnel_from_document,
    funnel_totals,
    load_factor_from_documents,
    with_seats_left,
)
from tests.support import documents

pytestmark = pytest.mark.unit


def test_a_booking_shows_the_contract_fields_and_nothing_internal() -> None:
    doc = documents.booking_doc(
        status="CANCELLED", reason="CUSTOMER", refund=documents.money(45000)
    )

    body = msgspec.json.decode(msgspec.json.encode(booking_from_document(doc)))

    assert set(body) == {
        "booking_id",
        "customer_id",
        "flight_id",
        "fare",
        "status",
        "passengers",
        "price",
        "created_at",
        "updated_at",
        "reason",
        "refund",
        "personal_data_erased",
    }
    assert body["personal_data_erased"] is False
    assert body["booking_id"] == doc["_id"]
    assert body["passengers"] == [{"name": "Ada Lovelace", "email": "ada@example.com"}]
    assert body["price"] == {"amount": 45000, "currency": "EUR"}
    assert body["refund"] == {"amount": 45000, "currency": "EUR"}
    assert body["created_at"] == "2026-11-01T09:30:00.123000Z"
    assert body["reason"] == "CUSTOMER"


def test_erased_passengers_show_as_erased_without_email() -> None:
    doc = documents.booking_doc(passengers=["[erased]", {"name": None, "email": None}])

    booking = booking_from_document(doc)

    assert [(p.name, p.email) for p in booking.passengers] == [
        ("[erased]", None),
        ("[erased]", None),
    ]


def test_a_booking_whose_personal_data_was_erased_says_so_and_shows_only_erased_fields() -> None:
    doc = documents.booking_doc(
        status="CONFIRMED", passengers=[{"name": "[erased]", "email": "[erased]"}] * 2
    )
    doc["personal_data_erased"] = True

    body = msgspec.json.decode(msgspec.json.encode(booking_from_document(doc)))

    assert body["passengers"] == [{"name": "[erased]", "email": "[erased]"}] * 2
    assert (body["personal_data_erased"], body["status"]) == (True, "CONFIRMED")


def test_naive_and_offset_times_come_out_in_utc() -> None:
    naive = documents.CREATED.replace(tzinfo=None)
    doc = documents.booking_doc(created_at=naive)
    doc["updated_at"] = documents.CREATED.astimezone(dt.timezone(dt.timedelta(hours=-5)))

    booking = booking_from_document(doc)

    assert booking.created_at == documents.CREATED
    assert booking.created_at.tzinfo == dt.UTC
    assert booking.updated_at.tzinfo == dt.UTC


def test_a_flight_shows_seats_left_per_fare_and_not_the_counters() -> None:
    doc = documents.flight_doc(
        fares=[documents.fare_doc("Y", seats=10, held=2, sold=3), documents.fare_doc("J", seats=4)]
    )

    body = msgspec.to_builtins(flight_from_document(doc))

    assert body["fares"] == [
        {"code": "Y", "cabin": "economy", "price": documents.money(45000), "seats_left": 5},
        {"code": "J", "cabin": "business", "price": documents.money(45000), "seats_left": 4},
    ]
    assert body["departure"] == "2026-12-24T10:00:00Z"
    assert body["flight_id"] == doc["_id"]


def test_fresh_seats_replace_only_the_fares_they_name_and_never_go_negative() -> None:
    flight = flight_from_document(
        documents.flight_doc(fares=[documents.fare_doc("Y"), documents.fare_doc("J", seats=4)])
    )

    fresher = with_seats_left(flight, {"Y": -2, "F": 9})

    assert [(f.code, f.seats_left) for f in fresher.fares] == [("Y", 0), ("J", 4)]
    assert with_seats_left(flight, {}) is flight


def test_load_factor_sums_the_fares_of_a_flight() -> None:
    flight_id = str(uuid.uuid4())
    docs = [
        documents.load_factor_doc(flight_id, "Y", seats=100, sold=50),
        documents.load_factor_doc(flight_id, "J", seats=20, sold=20),
    ]

    report = load_factor_from_documents(docs)

    assert report is not None
    assert [(f.fare, f.load_factor) for f in report.fares] == [("J", 1.0), ("Y", 0.5)]
    assert (report.seats, report.sold, report.held) == (120, 70, 2)
    assert report.load_factor == pytest.approx(70 / 120, abs=1e-4)
    assert load_factor_from_documents([]) is None


def test_funnel_totals_add_days_and_reasons() -> None:
    days = [
        funnel_from_document(documents.funnel_doc("2026-11-01")),
        funnel_from_document(documents.funnel_doc("2026-11-02", requested=5)),
    ]

    totals = funnel_totals(days, dt.date(2026, 11, 1))

    assert totals == FunnelDay(
        date=dt.date(2026, 11, 1),
        requested=8,
        seats_held=6,
        payment_authorized=6,
        confirmed=4,
        rejected={"NO_SEATS": 2},
        cancelled={"CUSTOMER": 2},
    )
