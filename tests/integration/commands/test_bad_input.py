"""Bad input on every command endpoint: a 4xx problem naming the field, and nothing stored."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec
import pytest

from flightbook.config.settings import Settings
from flightbook.eventstore.applications import Inventory
from flightbook.http.tokens import mint_token
from tests.support.api import Api, Headers, booking_body, edited, flight_body, without
from tests.support.builders import a_flight
from tests.support.tokens import foreign_key, signed_token

pytestmark = pytest.mark.integration

Body = dict[str, Any] | list[Any] | bytes | None
Edit = Callable[[dict[str, Any]], Body]

ROLES = {
    "schedule_flight": ("ops-1", "ops"),
    "cancel_flight": ("ops-1", "ops"),
    "request_booking": ("alice", "customer"),
    "cancel_booking": ("alice", "customer"),
}
WRONG_ROLE = {
    "schedule_flight": ("alice", "customer"),
    "cancel_flight": ("agent-7", "agent"),
    "request_booking": ("ops-1", "ops"),
    "cancel_booking": ("ops-1", "ops"),
}
TOO_BIG = b'{"padding": "' + b"x" * (70 * 1024) + b'"}'  # above the 64 KiB default


@dataclass(frozen=True)
class World:
    """A scheduled flight and a booking of alice's on it."""

    flight_id: str
    booking_id: str


@dataclass(frozen=True)
class Bad:
    endpoint: str
    status: int
    blamed: str | None
    """The problem's ``field``."""
    edit: Edit | None = None
    """Turns the endpoint's good body into the bad one."""
    token: str = "good"
    headers: dict[str, str | None] = field(default_factory=dict)
    target: str = "known"
    """Path id of the cancel endpoints: known, unknown or malformed."""


def put(*path: str | int, value: Any) -> Edit:
    """Set a nested value of the body (a copy)."""
    return lambda body: edited(body, *path, value=value)


def drop(*path: str | int) -> Edit:
    """Remove a nested member of the body (a copy)."""
    return lambda body: without(body, *path)


def raw(content: bytes) -> Edit:
    return lambda _body: content


def passengers(count: int) -> Edit:
    people = [{"name": f"P {i}", "email": f"p{i}@example.com"} for i in range(count)]
    return put("passengers", value=people)


LONG = "x" * 10_000

SCHEDULE = [
    Bad("schedule_flight", 400, "body", raw(b'{"flight_number": ')),
    Bad("schedule_flight", 400, "body", raw(b"")),
    Bad("schedule_flight", 400, "body", raw(b"[1, 2]")),
    Bad("schedule_flight", 400, "flight_number", drop("flight_number")),
    Bad("schedule_flight", 400, "fares[0].price.currency", drop("fares", 0, "price", "currency")),
    Bad("schedule_flight", 400, "gate", put("gate", value="A1")),
    Bad("schedule_flight", 400, "fares[0].meal", put("fares", 0, "meal", value="veg")),
    Bad("schedule_flight", 400, "fares[0].seats", put("fares", 0, "seats", value="many")),
    Bad("schedule_flight", 400, "fares[0].refundable", put("fares", 0, "refundable", value="no")),
    Bad("schedule_flight", 400, "departure", put("departure", value="tomorrow")),
    Bad("schedule_flight", 400, "departure", put("departure", value="2030-01-01T10:00:00")),
    Bad("schedule_flight", 400, "flight_number", put("flight_number", value=LONG)),
    Bad("schedule_flight", 400, "fares", put("fares", value=[])),
    Bad("schedule_flight", 400, "fares[0].cabin", put("fares", 0, "cabin", value="cargo")),
    Bad("schedule_flight", 400, "fares[0].seats", put("fares", 0, "seats", value=0)),
    Bad(
        "schedule_flight",
        400,
        "fares[0].price.amount",
        put("fares", 0, "price", "amount", value=-1),
    ),
    Bad(
        "schedule_flight",
        400,
        "fares[0].price.amount",
        put("fares", 0, "price", "amount", value=1.5),
    ),
    Bad("schedule_flight", 413, "body", raw(TOO_BIG)),
    Bad("schedule_flight", 400, "origin", put("origin", value="lhr")),
    Bad("schedule_flight", 400, "destination", put("destination", value="LH1")),
    Bad("schedule_flight", 422, "destination", put("destination", value="LHR")),
    Bad("schedule_flight", 400, "flight_number", put("flight_number", value="F")),
    Bad("schedule_flight", 422, "arrival", put("arrival", value="2020-01-01T10:00:00Z")),
    Bad(
        "schedule_flight",
        422,
        "departure",
        lambda b: {**b, "departure": "2020-01-01T10:00:00Z", "arrival": "2020-01-01T18:00:00Z"},
    ),
    Bad(
        "schedule_flight",
        400,
        "fares[0].price.currency",
        put("fares", 0, "price", "currency", value="eur"),
    ),
    Bad("schedule_flight", 400, "fares[0].code", put("fares", 0, "code", value="y")),
    Bad("schedule_flight", 422, "fares[1].code", lambda b: {**b, "fares": b["fares"] * 2}),
]

BOOK = [
    Bad("request_booking", 400, "body", raw(b"{not json")),
    Bad("request_booking", 400, "body", raw(b"")),
    Bad("request_booking", 400, "body", raw(b'"a string"')),
    Bad("request_booking", 400, "fare", drop("fare")),
    Bad("request_booking", 400, "passengers[0].email", drop("passengers", 0, "email")),
    Bad("request_booking", 400, "seat", put("seat", value="12A")),
    Bad("request_booking", 400, "passengers[0].age", put("passengers", 0, "age", value=36)),
    Bad("request_booking", 400, "flight_id", put("flight_id", value=5)),
    Bad("request_booking", 400, "flight_id", put("flight_id", value="not-a-uuid")),
    Bad("request_booking", 400, "passengers", put("passengers", value="Ada")),
    Bad("request_booking", 400, "passengers[0].name", put("passengers", 0, "name", value=LONG)),
    Bad("request_booking", 400, "payment_token", put("payment_token", value="")),
    Bad("request_booking", 400, "passengers", passengers(0)),
    Bad("request_booking", 400, "passengers", passengers(10)),
    Bad("request_booking", 413, "body", raw(TOO_BIG)),
    Bad("request_booking", 400, "Idempotency-Key", headers={"Idempotency-Key": None}),
    Bad("request_booking", 400, "Idempotency-Key", headers={"Idempotency-Key": "k" * 201}),
    Bad("request_booking", 400, "Idempotency-Key", headers={"Idempotency-Key": ""}),
    Bad("request_booking", 400, "X-Request-ID", headers={"X-Request-ID": "no spaces allowed"}),
    Bad("request_booking", 400, "X-Request-ID", headers={"X-Request-ID": "r" * 65}),
    Bad("request_booking", 422, "flight_id", put("flight_id", value=str(uuid.uuid4()))),
    Bad("request_booking", 422, "fare", put("fare", value="F")),
    Bad("request_booking", 400, "fare", put("fare", value="y")),
    Bad("request_booking", 400, "passengers[0].email", put("passengers", 0, "email", value="ada")),
    Bad("request_booking", 400, "passengers[0].name", put("passengers", 0, "name", value="   ")),
    Bad(
        "request_booking", 400, "passengers[0].name", put("passengers", 0, "name", value="n" * 150)
    ),
]

CANCEL_BOOKING = [
    Bad("cancel_booking", 404, None, target="unknown"),
    Bad("cancel_booking", 404, None, target="malformed"),
    Bad("cancel_booking", 404, None, token="other_customer"),
    Bad("cancel_booking", 400, "body", raw(b"{oops")),
    Bad("cancel_booking", 400, "body", raw(b'{"reason": "changed my mind"}')),
    Bad("cancel_booking", 413, "body", raw(TOO_BIG)),
    Bad("cancel_booking", 400, "X-Request-ID", headers={"X-Request-ID": "bad/id"}),
]

CANCEL_FLIGHT = [
    Bad("cancel_flight", 404, None, target="unknown"),
    Bad("cancel_flight", 404, None, target="malformed"),
    Bad("cancel_flight", 400, "body", raw(b"{oops")),
    Bad("cancel_flight", 400, "body", raw(b"[]")),
    Bad("cancel_flight", 400, "gate", put("gate", value="A1")),
    Bad("cancel_flight", 400, "reason", put("reason", value=5)),
    Bad("cancel_flight", 400, "reason", put("reason", value=LONG)),
    Bad("cancel_flight", 413, "body", raw(TOO_BIG)),
    Bad("cancel_flight", 400, "reason", put("reason", value="   ")),
    Bad("cancel_flight", 400, "X-Request-ID", headers={"X-Request-ID": "bad id"}),
]

AUTH = [
    Bad(endpoint, status, blamed, token=token)
    for endpoint in ROLES
    for token, status, blamed in [
        ("missing", 401, "Authorization"),
        ("garbage", 401, "Authorization"),
        ("not_bearer", 401, "Authorization"),
        ("expired", 401, "Authorization"),
        ("wrong_audience", 401, "Authorization"),
        ("wrong_issuer", 401, "Authorization"),
        ("wrong_key", 401, "Authorization"),
        ("wrong_role", 403, None),
    ]
]

CASES = SCHEDULE + BOOK + CANCEL_BOOKING + CANCEL_FLIGHT + AUTH


def case_id(case: Bad) -> str:
    detail = case.token if case.token != "good" else (case.blamed or case.target)
    return f"{case.endpoint}-{case.status}-{detail}"


@pytest.fixture
def world(api: Api, auth: Headers) -> World:
    flight = api.post("/flights", json=flight_body(), headers=auth("ops-1", "ops"))
    flight_id = flight.json()["flight_id"]
    booking = api.post(
        "/bookings",
        json=booking_body(flight_id),
        headers=auth("alice", "customer", **{"Idempotency-Key": "first"}),
    )
    assert booking.status_code == 202, booking.text
    return World(flight_id=flight_id, booking_id=booking.json()["booking_id"])


def authorization(settings: Settings, case: Bad) -> dict[str, str]:
    subject, role = ROLES[case.endpoint]
    variants: dict[str, tuple[Settings, int]] = {
        "expired": (settings, -60),
        "wrong_audience": (msgspec.structs.replace(settings, jwt_audience="someone-else"), 600),
        "wrong_issuer": (msgspec.structs.replace(settings, jwt_issuer="evil"), 600),
    }
    if case.token == "missing":
        return {}
    if case.token == "garbage":
        return {"Authorization": "Bearer not.a.jwt"}
    if case.token == "wrong_key":
        return {"Authorization": f"Bearer {signed_token(settings, key=foreign_key())}"}
    if case.token == "wrong_role":
        subject, role = WRONG_ROLE[case.endpoint]
    if case.token == "other_customer":
        subject = "bob"
    signer, ttl = variants.get(case.token, (settings, 600))
    token = mint_token(signer, subject=subject, roles=[role], ttl_seconds=ttl)
    if case.token == "not_bearer":
        return {"Authorization": f"Basic {token}"}
    return {"Authorization": f"Bearer {token}"}


def request_for(case: Bad, world: World) -> tuple[str, Body, dict[str, str | None]]:
    ids = {
        "known": world.booking_id if case.endpoint == "cancel_booking" else world.flight_id,
        "unknown": str(uuid.uuid4()),
        "malformed": "not-a-uuid",
    }
    good: dict[str, Any] | None
    if case.endpoint == "schedule_flight":
        path, good = "/flights", flight_body()
    elif case.endpoint == "request_booking":
        path, good = "/bookings", booking_body(world.flight_id)
    elif case.endpoint == "cancel_booking":
        path, good = f"/bookings/{ids[case.target]}/cancel", None
    else:
        path, good = f"/flights/{ids[case.target]}/cancel", {"reason": "storm"}
    body: Body = good
    if case.edit is not None:
        body = case.edit(good or {})
    headers: dict[str, str | None] = {}
    if case.endpoint == "request_booking":
        headers["Idempotency-Key"] = str(uuid.uuid4())
    headers.update(case.headers)
    return path, body, headers


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_bad_input_is_a_problem_that_stores_nothing(
    case: Bad,
    api: Api,
    settings: Settings,
    world: World,
    event_counts: Callable[[], dict[str, int]],
) -> None:
    path, body, extra = request_for(case, world)
    headers = {k: v for k, v in extra.items() if v is not None}
    headers.update(authorization(settings, case))
    before = event_counts()

    if isinstance(body, bytes):
        headers["Content-Type"] = "application/json"
        response = api.post(path, content=body, headers=headers)
    else:
        response = api.post(path, json=body, headers=headers)

    assert response.status_code == case.status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["status"] == case.status
    assert problem.get("field") == case.blamed, problem
    assert problem["detail"]
    if case.status == 401:
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert event_counts() == before


def test_a_departed_flight_cannot_be_booked(
    api: Api, auth: Headers, settings: Settings, event_counts: Callable[[], dict[str, int]]
) -> None:
    """Flights cannot be scheduled in the past through the API, so one departs by itself."""
    assert settings.postgres_url is not None
    flight = a_flight(
        seats=5,
        refundable=True,
        price=100,
        departure=dt.datetime.now(dt.UTC) - dt.timedelta(hours=1),
        flight_number="FB9",
        destination="CDG",
        hours=2,
    )
    inventory = Inventory(settings)
    try:
        inventory.record(flight)
    finally:
        inventory.close()
    before = event_counts()

    response = api.post(
        "/bookings",
        json=booking_body(str(flight.id)),
        headers=auth("alice", "customer", **{"Idempotency-Key": "late"}),
    )

    assert response.status_code == 409, response.text
    assert response.json()["field"] == "flight_id"
    assert response.json()["type"].endswith("/flight_not_bookable")
    assert event_counts() == before
