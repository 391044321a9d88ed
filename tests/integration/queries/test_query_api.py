"""The query API built by ``build_query_api`` on the test's own MongoDB database and Redis."""

from __future__ import annotations

import datetime as dt
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import msgspec
import pytest
from litestar.testing import TestClient
from prometheus_client import CollectorRegistry
from structlog.testing import capture_logs

from flightbook.bootstrap import build_query_api
from flightbook.config.settings import Settings
from flightbook.projections.projectors import erased_booking
from tests.support import documents
from tests.support.api import Api, Headers, ops_metrics
from tests.support.readside import ServerReadSide

pytestmark = pytest.mark.integration

SEARCH = "/flights?origin=LHR&destination=JFK&date=2026-12-24"
# ids nothing has: fixed, so that every pytest-xdist worker collects the same test ids
UNKNOWN_FLIGHT = uuid.UUID("0b1d6e5e-0000-4000-8000-00000000f117")
UNKNOWN_BOOKING = uuid.UUID("0b1d6e5e-0000-4000-8000-0000000b0c11")


def body(response: Any) -> Any:
    return response.json()


def test_a_search_fills_the_cache_and_the_next_one_is_answered_from_it(
    query_api: Api, auth: Headers, servers: ServerReadSide, settings: Settings
) -> None:
    doc = documents.flight_doc(fares=[documents.fare_doc("Y", seats=150, sold=10)])
    servers.put_document("flights_v1", doc)
    key = f"{settings.redis_prefix}v1:search:LHR:JFK:2026-12-24"

    first = query_api.get(SEARCH, headers=auth("alice", "customer"))
    servers.put_document("flights_v1", {**doc, "flight_number": "FB999"})  # cache not told
    cached = query_api.get(SEARCH, headers=auth("ops-1", "ops"))
    servers.redis.delete(key)  # what the flights worker does on a change
    refreshed = query_api.get(SEARCH, headers=auth("ann", "analyst"))

    assert first.status_code == 200, first.text
    assert body(first) == {
        "items": [
            {
                "flight_id": doc["_id"],
                "flight_number": "FB101",
                "origin": "LHR",
                "destination": "JFK",
                "departure": "2026-12-24T10:00:00Z",
                "arrival": "2026-12-24T18:00:00Z",
                "status": "SCHEDULED",
                "fares": [
                    {
                        "code": "Y",
                        "cabin": "economy",
                        "price": {"amount": 45000, "currency": "EUR"},
                        "seats_left": 140,
                    }
                ],
            }
        ],
        "next_cursor": None,
    }
    assert body(cached) == body(first)
    assert 0 < servers.redis.ttl(key) <= 60
    assert body(refreshed)["items"][0]["flight_number"] == "FB999"


def test_seats_left_prefer_the_redis_hash_to_the_document(
    query_api: Api, auth: Headers, servers: ServerReadSide
) -> None:
    doc = documents.flight_doc(
        fares=[documents.fare_doc("Y", seats=150), documents.fare_doc("J", seats=8)]
    )
    servers.put_document("flights_v1", doc)
    servers.put_hash(f"v1:seats:{doc['_id']}", {"_v": 5, "Y": 147})
    headers = auth("alice", "customer")

    one = query_api.get(f"/flights/{doc['_id']}", headers=headers)
    found = query_api.get(SEARCH, headers=headers)

    assert one.status_code == 200, one.text
    assert [(f["code"], f["seats_left"]) for f in body(one)["fares"]] == [("Y", 147), ("J", 8)]
    assert body(found)["items"][0]["fares"] == body(one)["fares"]


def test_search_pages_by_departure_with_a_cursor(
    query_api: Api, auth: Headers, servers: ServerReadSide
) -> None:
    docs = [
        documents.flight_doc(departure=dt.datetime(2026, 12, 24, h, tzinfo=dt.UTC))
        for h in (18, 6, 12)
    ]
    for doc in docs:
        servers.put_document("flights_v1", doc)
    headers = auth("alice", "customer")

    first = query_api.get(f"{SEARCH}&limit=2", headers=headers)
    cursor = body(first)["next_cursor"]
    second = query_api.get(f"{SEARCH}&limit=2&cursor={cursor}", headers=headers)

    assert [f["departure"][11:13] for f in body(first)["items"]] == ["06", "12"]
    assert [f["departure"][11:13] for f in body(second)["items"]] == ["18"]
    assert body(second)["next_cursor"] is None


def test_an_unknown_flight_is_a_404_problem(query_api: Api, auth: Headers) -> None:
    response = query_api.get(f"/flights/{uuid.uuid4()}", headers=auth("alice", "customer"))

    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize(
    ("subject", "role"),
    [("alice", "customer"), ("agent-7", "agent"), ("audrey", "auditor")],
)
def test_a_booking_is_shown_to_its_owner_an_agent_and_an_auditor(
    query_api: Api, auth: Headers, servers: ServerReadSide, subject: str, role: str
) -> None:
    doc = documents.booking_doc(customer_id="alice", status="CONFIRMED")
    servers.put_document("bookings_v1", doc)

    response = query_api.get(f"/bookings/{doc['_id']}", headers=auth(subject, role))

    assert response.status_code == 200, response.text
    assert body(response) == {
        "booking_id": doc["_id"],
        "customer_id": "alice",
        "flight_id": doc["flight_id"],
        "fare": "Y",
        "status": "CONFIRMED",
        "passengers": [{"name": "Ada Lovelace", "email": "ada@example.com"}],
        "price": {"amount": 45000, "currency": "EUR"},
        "created_at": "2026-11-01T09:30:00.123000Z",
        "updated_at": "2026-11-01T09:30:02.123000Z",
        "reason": None,
        "refund": None,
        "personal_data_erased": False,
    }


@pytest.mark.parametrize(("subject", "role"), [("alice", "customer"), ("andy", "agent")])
def test_an_erased_booking_shows_erased_passengers_to_its_owner_and_an_agent(
    query_api: Api, auth: Headers, servers: ServerReadSide, subject: str, role: str
) -> None:
    doc = documents.booking_doc(customer_id="alice", status="CONFIRMED")
    erased = erased_booking(doc, documents.CREATED + dt.timedelta(minutes=5))
    servers.put_document("bookings_v1", erased)  # what the bookings worker writes

    response = query_api.get(f"/bookings/{doc['_id']}", headers=auth(subject, role))
    mine = query_api.get("/bookings", headers=auth("alice", "customer"))

    assert response.status_code == 200, response.text
    assert body(response)["passengers"] == [{"name": "[erased]", "email": "[erased]"}]
    assert body(response)["personal_data_erased"] is True
    assert body(response)["updated_at"] == "2026-11-01T09:35:00.123000Z"
    assert body(mine)["items"] == [body(response)]
    assert "Ada" not in response.text + mine.text


@pytest.mark.parametrize(
    ("subject", "role"), [("bob", "customer"), ("olga", "ops"), ("ann", "analyst")]
)
def test_anyone_else_gets_exactly_the_answer_for_a_booking_that_does_not_exist(
    query_api: Api, auth: Headers, servers: ServerReadSide, subject: str, role: str
) -> None:
    doc = documents.booking_doc(customer_id="alice")
    servers.put_document("bookings_v1", doc)
    headers = auth(subject, role, **{"X-Request-ID": "probe-1"})

    not_yours = query_api.get(f"/bookings/{doc['_id']}", headers=headers)
    unknown = query_api.get(f"/bookings/{uuid.uuid4()}", headers=headers)

    assert not_yours.status_code == unknown.status_code == 404
    assert not_yours.content == unknown.content
    assert not_yours.headers["content-type"] == "application/problem+json"
    without_date = [
        {k: v for k, v in r.headers.items() if k.lower() != "date"} for r in (not_yours, unknown)
    ]
    assert without_date[0] == without_date[1]


def test_my_bookings_are_newest_first_paged_and_b_never_sees_as(
    query_api: Api, auth: Headers, servers: ServerReadSide
) -> None:
    alices = [
        documents.booking_doc(
            customer_id="alice", created_at=documents.CREATED + dt.timedelta(minutes=m)
        )
        for m in (0, 3, 1, 2, 3)
    ]
    for doc in alices:
        servers.put_document("bookings_v1", doc)
    bobs = documents.booking_doc(customer_id="bob")
    servers.put_document("bookings_v1", bobs)
    newest_first = [
        d["_id"] for d in sorted(alices, key=lambda d: (d["created_at"], d["_id"]), reverse=True)
    ]

    seen: list[str] = []
    url = "/bookings?limit=2"
    pages = 0
    while url:
        page = query_api.get(url, headers=auth("alice", "customer"))
        assert page.status_code == 200, page.text
        seen += [b["booking_id"] for b in body(page)["items"]]
        cursor = body(page)["next_cursor"]
        url = f"/bookings?limit=2&cursor={cursor}" if cursor else ""
        pages += 1
    bob = query_api.get("/bookings", headers=auth("bob", "customer"))

    assert seen == newest_first
    assert pages == 3
    assert [b["booking_id"] for b in body(bob)["items"]] == [bobs["_id"]]
    assert body(bob)["next_cursor"] is None


def test_analysts_read_sales_load_factor_and_funnel(
    query_api: Api, auth: Headers, servers: ServerReadSide
) -> None:
    flight_id = str(uuid.uuid4())
    servers.put_document("sales_daily_v1", documents.sales_doc("2026-11-01", confirmed=2))
    servers.put_document("sales_daily_v1", documents.sales_doc("2026-11-01", "CDG", "JFK"))
    servers.put_document(
        "load_factor_v1", documents.load_factor_doc(flight_id, "Y", seats=10, sold=4)
    )
    servers.put_document("funnel_daily_v1", documents.funnel_doc("2026-11-01"))
    headers = auth("ann", "analyst")

    sales = query_api.get(
        "/analytics/sales?from=2026-11-01&to=2026-11-30&origin=LHR", headers=headers
    )
    load = query_api.get(f"/analytics/load-factor?flight_id={flight_id}", headers=headers)
    funnel = query_api.get("/analytics/funnel?from=2026-11-01&to=2026-11-30", headers=headers)
    none = query_api.get(f"/analytics/load-factor?flight_id={uuid.uuid4()}", headers=headers)

    assert sales.status_code == 200, sales.text
    assert body(sales) == {
        "items": [
            {
                "date": "2026-11-01",
                "origin": "LHR",
                "destination": "JFK",
                "bookings_confirmed": 2,
                "seats_sold": 2,
                "revenue": {"amount": 90000, "currency": "EUR"},
                "cancellations": 0,
                "refunds": {"amount": 0, "currency": "EUR"},
            }
        ],
        "next_cursor": None,
    }
    assert load.status_code == 200, load.text
    assert (body(load)["seats"], body(load)["sold"], body(load)["load_factor"]) == (10, 4, 0.4)
    assert funnel.status_code == 200, funnel.text
    assert body(funnel)["totals"]["requested"] == 3
    assert [d["date"] for d in body(funnel)["items"]] == ["2026-11-01"]
    assert none.status_code == 404


@pytest.mark.parametrize(
    "url",
    [
        "/analytics/sales?from=2026-11-01&to=2026-11-30",
        "/analytics/funnel?from=2026-11-01&to=2026-11-30",
        f"/analytics/load-factor?flight_id={UNKNOWN_FLIGHT}",
    ],
)
def test_analytics_are_for_analysts_only(query_api: Api, auth: Headers, url: str) -> None:
    response = query_api.get(url, headers=auth("alice", "customer"))

    assert response.status_code == 403
    assert response.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize(
    "url",
    [SEARCH, f"/flights/{UNKNOWN_FLIGHT}", "/bookings", f"/bookings/{UNKNOWN_BOOKING}"],
)
def test_without_a_valid_token_it_is_401(query_api: Api, settings: Settings, url: str) -> None:
    missing = query_api.get(url)
    bad = query_api.get(url, headers={"Authorization": "Bearer not-a-jwt"})

    for response in (missing, bad):
        assert response.status_code == 401
        assert response.headers["content-type"] == "application/problem+json"
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert body(response)["field"] == "Authorization"


def later(seconds: float, action: Callable[[], None]) -> threading.Thread:
    def run() -> None:
        time.sleep(seconds)
        action()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_a_read_your_writes_query_waits_for_the_marker(
    query_api: Api, auth: Headers, servers: ServerReadSide
) -> None:
    doc = documents.booking_doc(customer_id="alice")

    def apply() -> None:  # as the bookings worker would: the document, then the marker
        servers.put_document("bookings_v1", doc)
        servers.put_document(
            "applied_events", {"_id": "bookings:booking:42", "at": documents.CREATED}
        )

    thread = later(0.3, apply)
    headers = auth("alice", "customer", **{"X-Flightbook-After": "booking:42,payment:900"})

    started = time.monotonic()
    response = query_api.get(f"/bookings/{doc['_id']}", headers=headers)
    waited = time.monotonic() - started
    thread.join()

    assert response.status_code == 200, response.text
    assert body(response)["booking_id"] == doc["_id"]
    assert waited >= 0.3


def test_a_read_model_caught_up_by_its_watermark_answers_at_once(
    query_api: Api, auth: Headers, servers: ServerReadSide
) -> None:
    servers.put_document("projection_checkpoints", {"_id": "flights:inventory", "low_watermark": 9})
    servers.put_document("flights_v1", documents.flight_doc())
    headers = auth("alice", "customer", **{"X-Flightbook-After": "inventory:9,booking:77"})

    response = query_api.get(SEARCH, headers=headers)

    assert response.status_code == 200, response.text
    assert len(body(response)["items"]) == 1


@pytest.fixture
def impatient_api(settings: Settings, servers: ServerReadSide) -> Iterator[Api]:
    """The query API waiting at most 0.3 s for a read model."""
    quick = msgspec.structs.replace(settings, query_wait_seconds=0.3)
    with TestClient(build_query_api(quick)) as client:
        yield client


@pytest.mark.parametrize(
    "url", [SEARCH, f"/flights/{UNKNOWN_FLIGHT}", "/bookings", f"/bookings/{UNKNOWN_BOOKING}"]
)
def test_without_the_marker_it_is_503_with_retry_after(
    impatient_api: Api, auth: Headers, url: str
) -> None:
    headers = auth("alice", "customer", **{"X-Flightbook-After": "booking:5,inventory:5"})

    response = impatient_api.get(url, headers=headers)

    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == "1"
    assert response.headers["content-type"] == "application/problem+json"
    assert "has not caught up" in body(response)["detail"]


@pytest.mark.parametrize(
    ("url", "headers", "field"),
    [
        ("/flights?origin=lhr&destination=JFK&date=2026-12-24", {}, "origin"),
        ("/flights?origin=LHR&destination=JFKX&date=2026-12-24", {}, "destination"),
        ("/flights?origin=LHR&date=2026-12-24", {}, "destination"),
        ("/flights?origin=LHR&destination=JFK&date=2026-13-01", {}, "date"),
        ("/flights?origin=LHR&destination=JFK&date=24.12.2026", {}, "date"),
        ("/flights?origin=LHR&destination=JFK", {}, "date"),
        (f"{SEARCH}&limit=0", {}, "limit"),
        (f"{SEARCH}&limit=101", {}, "limit"),
        (f"{SEARCH}&limit=ten", {}, "limit"),
        (f"{SEARCH}&cursor=bogus", {}, "cursor"),
        ("/bookings?cursor=bogus", {}, "cursor"),
        ("/bookings?limit=-1", {}, "limit"),
        ("/bookings", {"X-Flightbook-After": "booking:x"}, "X-Flightbook-After"),
        (SEARCH, {"X-Flightbook-After": "orders:1"}, "X-Flightbook-After"),
        (SEARCH, {"X-Request-ID": "has spaces"}, "X-Request-ID"),
        ("/analytics/sales?to=2026-11-01", {}, "from"),
        ("/analytics/sales?from=2026-11-01&to=2026-11-02&cursor=x", {}, "cursor"),
        ("/analytics/sales?from=2026-11-01&to=2026-11-02&origin=paris", {}, "origin"),
        ("/analytics/funnel?from=2026-11-01&to=nope", {}, "to"),
        ("/analytics/load-factor?flight_id=nope", {}, "flight_id"),
        ("/analytics/load-factor", {}, "flight_id"),
    ],
)
def test_bad_input_is_a_400_problem_naming_the_field(
    query_api: Api, auth: Headers, url: str, headers: dict[str, str], field: str
) -> None:
    response = query_api.get(url, headers=auth("ann", "analyst", "customer", **headers))

    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert body(response)["field"] == field


def test_a_malformed_id_in_the_path_is_a_404_problem_not_a_500(
    query_api: Api, auth: Headers
) -> None:
    response = query_api.get("/bookings/not-a-uuid", headers=auth("alice", "customer"))

    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"


def test_each_request_is_logged_once_counted_and_timed(
    query_api: Api, auth: Headers, servers: ServerReadSide, registry: CollectorRegistry
) -> None:
    with capture_logs() as logs:
        response = query_api.get(
            SEARCH, headers=auth("alice", "customer", **{"X-Request-ID": "q-1"})
        )
        query_api.get("/bookings?limit=0", headers=auth("alice", "customer"))
    with ops_metrics(registry) as fetch:
        metrics = fetch()
    assert query_api.get("/metrics").status_code == 404  # on the ops port only

    handled = [line for line in logs if line["event"] == "query.handled"]
    assert response.headers["x-request-id"] == "q-1"
    assert [(h["endpoint"], h["status"]) for h in handled] == [
        ("search_flights", 200),
        ("list_bookings", 400),
    ]
    assert handled[0]["correlation_id"] == "q-1"
    assert handled[0]["duration_ms"] >= 0
    assert 'flightbook_queries_total{endpoint="search_flights",status="200"} 1.0' in metrics
    assert (
        'flightbook_query_duration_seconds_count{endpoint="list_bookings",status="400"} 1.0'
        in metrics
    )


def test_ready_when_mongodb_and_redis_answer(query_api: Api) -> None:
    response = query_api.get("/health/ready")

    assert response.status_code == 200, response.text
    assert body(response)["checks"] == {"mongo": "ok", "redis": "ok"}


def test_the_openapi_document_describes_the_answers(query_api: Api) -> None:
    schema = body(query_api.get("/schema/openapi.json"))

    booking = schema["paths"]["/bookings/{booking_id}"]["get"]
    assert set(booking["responses"]) >= {"200", "400", "401", "404", "503"}
    ok = booking["responses"]["200"]["content"]["application/json"]["schema"]
    assert ok["$ref"].endswith("BookingView")
    properties = schema["components"]["schemas"]["BookingView"]["properties"]
    assert {"booking_id", "customer_id", "status", "passengers", "price"} <= set(properties)
    assert "bearer" in schema["components"]["securitySchemes"]
    params = {p["name"] for p in schema["paths"]["/flights"]["get"]["parameters"]}
    assert {"origin", "destination", "date", "cursor", "limit", "X-Flightbook-After"} <= params
    assert {"from", "to"} <= {
        p["name"] for p in schema["paths"]["/analytics/sales"]["get"]["parameters"]
    }
