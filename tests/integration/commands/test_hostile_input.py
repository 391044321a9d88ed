"""Hostile and careless bodies (issue 15, findings 1 and 10): a 400 naming what is wrong.

Before the fix, a body nested a thousand deep or not valid UTF-8 was a 500, a number or
boolean sent as a string (``"amount": "100"``, ``"refundable": "true"``) or a boolean
sent as ``1`` was coerced and accepted, and passenger names and emails took NUL, control
characters, ANSI escapes and invisible-only strings.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any, NamedTuple

import pytest

from tests.support.api import Api, Headers, booking_body, edited, flight_body

pytestmark = pytest.mark.integration

DEEP = b"[" * 1000 + b"]" * 1000
"""A 2 KB body nested a thousand deep."""


def nested_in(field: str) -> bytes:
    return b'{"' + field.encode() + b'": ' + DEEP + b"}"


def customer(auth: Headers) -> dict[str, str]:
    """alice's headers for a booking request, with a new ``Idempotency-Key``."""
    return auth("alice", "customer", **{"Idempotency-Key": str(uuid.uuid4())})


class Route(NamedTuple):
    """A command endpoint that takes a body, and the headers of a caller allowed on it."""

    name: str
    path: str
    headers: dict[str, str]


@pytest.fixture(params=["schedule_flight", "cancel_flight", "request_booking"])
def route(request: pytest.FixtureRequest, flight_id: str, auth: Headers) -> Route:
    path, headers = {
        "schedule_flight": ("/flights", auth("ops-1", "ops")),
        "cancel_flight": (f"/flights/{flight_id}/cancel", auth("ops-1", "ops")),
        "request_booking": ("/bookings", customer(auth)),
    }[request.param]
    return Route(request.param, path, headers)


def post(api: Api, route: Route, body: bytes) -> tuple[int, dict[str, Any]]:
    headers = {**route.headers, "Content-Type": "application/json"}
    response = api.post(route.path, content=body, headers=headers)
    assert response.headers["content-type"].startswith("application/problem+json"), response.text
    return response.status_code, response.json()


@pytest.mark.parametrize("body", [DEEP, nested_in("fares"), nested_in("passengers")])
def test_a_body_nested_a_thousand_deep_is_a_400_not_a_500(
    body: bytes, route: Route, api: Api, event_counts: Callable[[], dict[str, int]]
) -> None:
    before = event_counts()

    status, problem = post(api, route, body)

    assert status == 400, problem
    assert problem["type"].endswith("/malformed_body") or problem["type"].endswith(
        "/invalid_request"
    ), problem
    assert problem["field"] in {"body", "fares", "passengers"}, problem
    assert event_counts() == before


def test_a_body_that_is_not_utf8_is_a_400_not_a_500(
    route: Route, api: Api, flight_id: str, event_counts: Callable[[], dict[str, int]]
) -> None:
    good: dict[str, Any] = {
        "schedule_flight": flight_body(flight_number="FB102"),
        "cancel_flight": {"reason": "Orage à Zoë"},
        "request_booking": booking_body(
            flight_id, passengers=[{"name": "Zoë Noël", "email": "zoe@example.com"}]
        ),
    }[route.name]
    if route.name == "schedule_flight":
        good["fares"][0]["cabin"] = "économie"
    latin1 = json.dumps(good, ensure_ascii=False).encode("latin-1")
    before = event_counts()

    status, problem = post(api, route, latin1)

    assert status == 400, problem
    assert problem["type"].endswith("/malformed_body"), problem
    assert problem["field"] == "body"
    assert "UTF-8" in problem["detail"]
    assert event_counts() == before


COERCIONS = [
    (("fares", 0, "price", "amount"), "100"),
    (("fares", 0, "price", "amount"), "1e3"),
    (("fares", 0, "price", "amount"), 1.5),
    (("fares", 0, "seats"), "50"),
    (("fares", 0, "overbooking"), "0"),
    (("fares", 0, "refundable"), "true"),
    (("fares", 0, "refundable"), 1),
    (("fares", 0, "refundable"), 0),
]


@pytest.mark.parametrize(("path", "value"), COERCIONS, ids=repr)
def test_a_number_or_boolean_sent_as_a_string_or_number_is_refused_not_coerced(
    path: tuple[str | int, ...],
    value: object,
    api: Api,
    auth: Headers,
    event_counts: Callable[[], dict[str, int]],
) -> None:
    before = event_counts()

    response = api.post(
        "/flights", json=edited(flight_body(), *path, value=value), headers=auth("ops-1", "ops")
    )

    assert response.status_code == 400, response.text
    field = ".".join(str(p) for p in path).replace(".0.", "[0].")
    assert response.json()["field"] == field
    assert event_counts() == before


JUNK = {
    "nul": "Ada\x00Lovelace",
    "bell": "Ada\x07",
    "ansi": "\x1b[31mAda\x1b[0m",
    "c1": "Ada\x9bLovelace",
    "newline": "Ada\nLovelace",
    "trailing_newline": "Ada\n",
    "zero_width_only": "\u200b\u200c\u200d",
    "bom_only": "\ufeff",
    "blank": "   ",
    "nbsp_only": "\u00a0\u3000",
    "empty": "",
    "bidi_override": "Ada\u202eecalevoL",
}


@pytest.mark.parametrize("junk", JUNK.values(), ids=JUNK.keys())
@pytest.mark.parametrize("field", ["name", "email"])
def test_a_passenger_name_or_email_with_control_or_only_invisible_characters_is_refused(
    junk: str,
    field: str,
    api: Api,
    auth: Headers,
    flight_id: str,
    event_counts: Callable[[], dict[str, int]],
) -> None:
    value = junk if field == "name" else junk.replace("Ada", "ada@example.com")
    body = edited(booking_body(flight_id), "passengers", 0, field, value=value)
    before = event_counts()

    response = api.post(
        "/bookings",
        json=body,
        headers=customer(auth),
    )

    assert response.status_code in {400, 422}, response.text
    assert response.json()["field"] == f"passengers[0].{field}"
    assert event_counts() == before


@pytest.mark.parametrize(
    "name", ["Zoë Noël", "Zoe\u0308 No\u0308el", "José Ñandú", "李小龍", "Ana-María O'Neil"]
)
def test_real_names_are_still_accepted(name: str, api: Api, auth: Headers, flight_id: str) -> None:
    body = edited(booking_body(flight_id), "passengers", 0, "name", value=name)

    response = api.post(
        "/bookings",
        json=body,
        headers=customer(auth),
    )

    assert response.status_code == 202, response.text


def test_an_integral_json_number_is_an_integer_as_json_schema_reads_it(
    api: Api, auth: Headers
) -> None:
    body = edited(flight_body(), "fares", 0, "price", "amount", value=1e3)
    body = edited(body, "fares", 0, "seats", value=50.0)

    response = api.post("/flights", json=body, headers=auth("ops-1", "ops"))

    assert response.status_code == 201, response.text


def closed(document: dict[str, Any], schema: dict[str, Any], seen: set[str]) -> list[str]:
    """The object schemas reachable from ``schema`` that allow extra properties."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[1]
        if name in seen:
            return []
        seen.add(name)
        schema = document["components"]["schemas"][name]
    found = []
    if schema.get("type") == "object" and schema.get("additionalProperties") is not False:
        found.append(str(schema.get("title")))
    for child in [
        *schema.get("properties", {}).values(),
        *schema.get("oneOf", []),
        *schema.get("anyOf", []),
        *([schema["items"]] if "items" in schema else []),
    ]:
        found += closed(document, child, seen)
    return found


def test_the_openapi_document_states_the_rules_of_every_request_body(api: Api) -> None:
    """Before the fix: no ``additionalProperties: false`` (extra fields are refused), and no
    pattern for the currency, airports, fare codes, flight numbers, names and emails."""
    document = api.get("/schema/openapi.json").json()
    bodies = [
        operation["requestBody"]["content"]["application/json"]["schema"]
        for item in document["paths"].values()
        for operation in item.values()
        if "requestBody" in operation
    ]
    schemas = document["components"]["schemas"]

    assert len(bodies) == 4  # flights, flight cancellation, bookings, erasure (issue 17)
    assert [name for body in bodies for name in closed(document, body, set())] == []
    assert schemas["MoneyRequest"]["properties"]["currency"]["pattern"] == "^[A-Z]{3}$"
    for struct, field in [
        ("FlightRequest", "origin"),
        ("FlightRequest", "destination"),
        ("FlightRequest", "flight_number"),
        ("FareRequest", "code"),
        ("BookingRequest", "fare"),
        ("PassengerRequest", "name"),
        ("PassengerRequest", "email"),
    ]:
        assert schemas[struct]["properties"][field]["pattern"].startswith("^"), (struct, field)
