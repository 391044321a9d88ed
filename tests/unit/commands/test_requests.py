"""The command API's request bodies: what decodes, what is refused and where it is blamed."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import msgspec
import pytest

from flightbook.commands.requests import (
    DEFAULT_CANCELLATION_REASON,
    BookingRequest,
    FlightCancellationRequest,
    FlightRequest,
)
from flightbook.commands.service import booking_id_for, request_hash
from flightbook.domain.values import Cabin

pytestmark = pytest.mark.unit

FLIGHT_ID = "6f1c1b4e-2a54-4a8e-9d7c-1f5f2b8f9a11"

# The examples of DESIGN.md "HTTP contract", verbatim.
FLIGHT_JSON = b"""{"flight_number": "FB101", "origin": "LHR", "destination": "JFK",
    "departure": "2026-12-24T10:00:00Z", "arrival": "2026-12-24T18:00:00Z",
    "fares": [{"code": "Y", "cabin": "economy", "price": {"amount": 45000, "currency": "EUR"},
               "seats": 150, "refundable": false}]}"""
BOOKING_JSON = (
    b'{"flight_id": "%s", "fare": "Y", "passengers": [{"name": "Ada Lovelace",'
    b' "email": "ada@example.com"}], "payment_token": "tok_ok"}' % FLIGHT_ID.encode()
)


def flight(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = msgspec.json.decode(FLIGHT_JSON)
    body.update(changes)
    return body


def booking(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = msgspec.json.decode(BOOKING_JSON)
    body.update(changes)
    return body


def refusal(body: dict[str, Any], into: type[Any]) -> str:
    with pytest.raises(msgspec.ValidationError) as caught:
        msgspec.json.decode(msgspec.json.encode(body), type=into)
    return str(caught.value)


def test_the_design_examples_decode() -> None:
    scheduled = msgspec.json.decode(FLIGHT_JSON, type=FlightRequest)
    booked = msgspec.json.decode(BOOKING_JSON, type=BookingRequest)

    assert scheduled.departure == dt.datetime(2026, 12, 24, 10, tzinfo=dt.UTC)
    assert scheduled.fares[0].cabin is Cabin.ECONOMY
    assert scheduled.fares[0].price.amount == 45000
    assert scheduled.fares[0].overbooking == 0
    assert booked.flight_id == uuid.UUID(FLIGHT_ID)
    assert booked.passengers[0].email == "ada@example.com"


@pytest.mark.parametrize(
    ("body", "blamed"),
    [
        (flight(gate="A1"), "unknown field `gate`"),
        (flight(fares=[{**flight()["fares"][0], "meal": "veg"}]), "unknown field `meal`"),
        (flight(fares=[]), "$.fares"),
        (flight(fares=[flight()["fares"][0]] * 27), "$.fares"),
        (flight(departure="2026-12-24T10:00:00"), "$.departure"),
        (flight(departure="Christmas"), "$.departure"),
        (flight(flight_number="F" * 17), "$.flight_number"),
        (flight(origin=None), "$.origin"),
        (flight(fares=[{**flight()["fares"][0], "cabin": "cargo"}]), "$.fares[0].cabin"),
        (flight(fares=[{**flight()["fares"][0], "seats": 0}]), "$.fares[0].seats"),
        (flight(fares=[{**flight()["fares"][0], "seats": True}]), "$.fares[0].seats"),
        (flight(fares=[{**flight()["fares"][0], "refundable": "no"}]), "$.fares[0].refundable"),
        (
            flight(fares=[{**flight()["fares"][0], "price": {"amount": -1, "currency": "EUR"}}]),
            "$.fares[0].price.amount",
        ),
        (
            flight(fares=[{**flight()["fares"][0], "price": {"amount": 1.5, "currency": "EUR"}}]),
            "$.fares[0].price.amount",
        ),
    ],
)
def test_a_malformed_flight_is_refused_at_the_field(body: dict[str, Any], blamed: str) -> None:
    assert blamed in refusal(body, FlightRequest)


@pytest.mark.parametrize(
    ("body", "blamed"),
    [
        (booking(seat="12A"), "unknown field `seat`"),
        ({k: v for k, v in booking().items() if k != "fare"}, "missing required field `fare`"),
        (booking(flight_id="LHR-JFK"), "$.flight_id"),
        (booking(passengers=[]), "$.passengers"),
        (booking(passengers=[{"name": "A", "email": "a@example.com"}] * 10), "$.passengers"),
        (
            booking(passengers=[{"name": "A" * 201, "email": "a@example.com"}]),
            "$.passengers[0].name",
        ),
        (booking(passengers=[{"name": "A"}]), "missing required field `email`"),
        (booking(payment_token=""), "$.payment_token"),
        (booking(fare=7), "$.fare"),
    ],
)
def test_a_malformed_booking_is_refused_at_the_field(body: dict[str, Any], blamed: str) -> None:
    assert blamed in refusal(body, BookingRequest)


@pytest.mark.parametrize(
    ("changes", "blamed"),
    [
        ({"origin": "lhr"}, "$.origin"),
        ({"flight_number": "F"}, "$.flight_number"),
    ],
)
def test_a_rule_of_the_domain_that_a_schema_can_state_is_checked_at_the_schema(
    changes: dict[str, Any], blamed: str
) -> None:
    """The request states the domain's patterns (issue 15), so the OpenAPI document does."""
    assert blamed in refusal(flight(**changes), FlightRequest)


def test_a_flight_cancellation_has_a_default_reason() -> None:
    assert msgspec.json.decode(b"{}", type=FlightCancellationRequest).reason == (
        DEFAULT_CANCELLATION_REASON
    )
    assert "$.reason" in refusal({"reason": ""}, FlightCancellationRequest)


def test_requests_are_frozen() -> None:
    booked = msgspec.json.decode(BOOKING_JSON, type=BookingRequest)

    with pytest.raises(AttributeError):
        booked.fare = "J"  # type: ignore[misc]


def test_the_request_hash_ignores_key_order_and_layout_but_not_values() -> None:
    reordered = b"""{"payment_token": "tok_ok",
        "passengers": [{"email": "ada@example.com", "name": "Ada Lovelace"}],
        "fare": "Y", "flight_id": "%s"}""" % FLIGHT_ID.encode()

    first = request_hash(msgspec.json.decode(BOOKING_JSON, type=BookingRequest))
    same = request_hash(msgspec.json.decode(reordered, type=BookingRequest))
    other = request_hash(msgspec.convert(booking(payment_token="tok_declined"), BookingRequest))

    assert first == same
    assert first != other


def test_a_booking_id_is_the_same_for_a_retry_and_per_customer() -> None:
    assert booking_id_for("alice", "k1") == booking_id_for("alice", "k1")
    assert booking_id_for("alice", "k1") != booking_id_for("bob", "k1")
    assert booking_id_for("alice", "k1") != booking_id_for("alice", "k2")
    assert booking_id_for("alice", "k1").version == 5
