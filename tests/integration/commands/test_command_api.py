"""The command API against a real PostgreSQL: what it answers and what it stores."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import psycopg
import pytest
from prometheus_client import CollectorRegistry
from structlog.testing import capture_logs

from flightbook.config.settings import Settings
from flightbook.domain.booking import Booking, RejectionReason
from flightbook.domain.inventory import FlightInventory
from flightbook.eventstore.applications import Bookings, ContextApplication, Inventory
from flightbook.eventstore.metadata import EventMetadata, recording
from flightbook.http.positions import decode_positions
from tests.support.api import Api, Headers, booking_body, flight_body, ops_metrics
from tests.support.threads import at_once
from tests.support.writeside import WriteSide

pytestmark = pytest.mark.integration


@pytest.fixture
def bookings(write_side: WriteSide) -> Bookings:
    return write_side.bookings


@pytest.fixture
def inventory(write_side: WriteSide) -> Inventory:
    return write_side.inventory


def stored(app: ContextApplication) -> list[tuple[Any, EventMetadata]]:
    """Every event of the application's log, with its metadata."""
    notifications = app.recorder.select_notifications(start=None, limit=1000)
    return [app.metadata_mapper.decode(n) for n in notifications]


def book(api: Api, auth: Headers, flight_id: str, key: str, **changes: Any) -> httpx.Response:
    return api.post(
        "/bookings",
        json=booking_body(flight_id, **changes),
        headers=auth("alice", "customer", **{"Idempotency-Key": key}),
    )


def assert_answered_as_before(again: httpx.Response, first: httpx.Response) -> None:
    """A repeated command answers what its first time did: 202, the same body and position."""
    assert again.status_code == 202, again.text
    assert again.json() == first.json()
    assert again.headers["X-Flightbook-Position"] == first.headers["X-Flightbook-Position"]


def test_ops_schedules_a_flight(api: Api, auth: Headers, inventory: Inventory) -> None:
    response = api.post(
        "/flights",
        json=flight_body(),
        headers=auth("ops-1", "ops", **{"X-Request-ID": "req-flight-1"}),
    )

    assert response.status_code == 201, response.text
    assert set(response.json()) == {"flight_id"}
    flight_id = uuid.UUID(response.json()["flight_id"])
    assert decode_positions(response.headers["X-Flightbook-Position"]) == {"inventory": 1}
    assert response.headers["X-Request-ID"] == "req-flight-1"
    flight: object = inventory.repository.get(flight_id)
    assert isinstance(flight, FlightInventory)
    assert (flight.flight_number, flight.origin, flight.destination) == ("FB101", "LHR", "JFK")
    assert flight.fare("Y").price.amount == 45000


def test_a_booking_is_accepted_as_requested_with_its_position(
    api: Api, auth: Headers, flight_id: str, bookings: Bookings
) -> None:
    passengers = [
        {"name": "Ada Lovelace", "email": "ada@example.com"},
        {"name": "Charles Babbage", "email": "charles@example.com"},
    ]

    response = book(api, auth, flight_id, "key-1", passengers=passengers)

    assert response.status_code == 202, response.text
    body = response.json()
    assert set(body) == {"booking_id", "status"}
    assert body["status"] == "REQUESTED"
    assert decode_positions(response.headers["X-Flightbook-Position"]) == {"booking": 1}
    assert response.headers["X-Request-ID"]
    booking: object = bookings.repository.get(uuid.UUID(body["booking_id"]))
    assert isinstance(booking, Booking)
    assert booking.customer_id == "alice"
    assert (booking.price_amount, booking.currency) == (90000, "EUR")
    assert booking.passenger_count == 2
    assert booking.refundable is False
    assert booking.passengers.startswith("pii2:")
    assert "ada@example.com" not in booking.passengers


def test_a_new_customers_data_key_is_stored_in_the_transaction_of_its_first_booking(
    api: Api, auth: Headers, flight_id: str, settings: Settings
) -> None:
    """No transaction of its own: the key row and the booking's event share one ``xmin``."""
    first = book(api, auth, flight_id, "key-1")
    second = book(api, auth, flight_id, "key-2")

    assert (first.status_code, second.status_code) == (202, 202), (first.text, second.text)
    assert settings.postgres_url is not None
    with psycopg.connect(settings.postgres_url) as conn:
        keys = conn.execute(
            "SELECT xmin::text FROM pii.data_keys WHERE subject_id = 'alice'"
        ).fetchall()
        events = conn.execute(
            "SELECT originator_id::text, xmin::text FROM booking.bookings_events"
            " WHERE originator_id = ANY(%s::uuid[])",
            ([first.json()["booking_id"], second.json()["booking_id"]],),
        ).fetchall()
    by_booking: dict[str, str] = dict(events)
    assert len(keys) == 1  # the second booking was sealed under the first one's key
    assert keys[0][0] == by_booking[first.json()["booking_id"]]
    assert keys[0][0] != by_booking[second.json()["booking_id"]]


def test_the_same_key_and_body_answer_the_first_answer_and_store_nothing(
    api: Api, auth: Headers, flight_id: str, event_counts: Callable[[], dict[str, int]]
) -> None:
    first = book(api, auth, flight_id, "key-1")
    before = event_counts()

    again = book(api, auth, flight_id, "key-1")

    assert_answered_as_before(again, first)
    assert event_counts() == before


def test_the_same_key_with_another_body_is_refused(
    api: Api, auth: Headers, flight_id: str, event_counts: Callable[[], dict[str, int]]
) -> None:
    book(api, auth, flight_id, "key-1")
    before = event_counts()

    response = book(api, auth, flight_id, "key-1", payment_token="tok_declined")

    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["field"] == "Idempotency-Key"
    assert event_counts() == before


def test_the_same_key_of_another_customer_is_another_booking(
    api: Api, auth: Headers, flight_id: str
) -> None:
    alice = book(api, auth, flight_id, "key-1")

    bob = api.post(
        "/bookings",
        json=booking_body(flight_id),
        headers=auth("bob", "customer", **{"Idempotency-Key": "key-1"}),
    )

    assert bob.status_code == 202
    assert bob.json()["booking_id"] != alice.json()["booking_id"]


def test_customers_whose_subject_and_key_join_to_the_same_text_each_get_their_own_booking(
    api: Api, auth: Headers, flight_id: str
) -> None:
    """Review finding 3: ``erin:x`` + ``1`` and ``erin`` + ``x:1`` (the second got 409)."""
    first = api.post(
        "/bookings",
        json=booking_body(flight_id),
        headers=auth("erin:x", "customer", **{"Idempotency-Key": "1"}),
    )

    second = api.post(
        "/bookings",
        json=booking_body(flight_id),
        headers=auth("erin", "customer", **{"Idempotency-Key": "x:1"}),
    )

    assert (first.status_code, second.status_code) == (202, 202), second.text
    assert second.json()["booking_id"] != first.json()["booking_id"]


def test_a_booking_past_a_cap_is_refused_with_a_problem_naming_the_cap(
    api: Api, auth: Headers, flight_id: str, bookings: Bookings
) -> None:
    nine = [{"name": f"Passenger {n}", "email": f"p{n}@example.com"} for n in range(9)]
    assert book(api, auth, flight_id, "key-1", passengers=nine).status_code == 202

    refused = book(api, auth, flight_id, "key-2")

    assert refused.status_code == 409, refused.text
    assert refused.headers["content-type"].startswith("application/problem+json")
    problem = refused.json()
    assert problem["type"].endswith("/cap_exceeded")
    assert (problem["cap"], problem["limit"], problem["current"], problem["requested"]) == (
        "seats_held_per_flight",
        9,
        9,
        1,
    )
    assert "Ada" not in refused.text
    assert len(stored(bookings)) == 1


def test_twenty_parallel_bookings_of_one_customer_store_no_more_than_the_cap(
    api: Api, auth: Headers, flight_id: str, bookings: Bookings
) -> None:
    responses = at_once(20, lambda n: book(api, auth, flight_id, f"key-{n}"))

    statuses = sorted(r.status_code for r in responses)
    assert statuses == [202] * 5 + [409] * 15, [r.text for r in responses]
    assert {r.json()["cap"] for r in responses if r.status_code == 409} == {"bookings_in_progress"}
    assert len(stored(bookings)) == 5


def test_concurrent_duplicates_make_one_booking(
    api: Api, auth: Headers, flight_id: str, bookings: Bookings
) -> None:
    """Eight clients retry the same request at once: one booking, one answer for all."""
    responses = at_once(8, lambda _: book(api, auth, flight_id, "same-key"))

    assert [r.status_code for r in responses] == [202] * 8, [r.text for r in responses]
    assert len({r.json()["booking_id"] for r in responses}) == 1
    events = [event for event, _ in stored(bookings)]
    assert [type(e) for e in events] == [Booking.Requested]


def test_the_owner_cancels_a_booking_once(
    api: Api, auth: Headers, flight_id: str, event_counts: Callable[[], dict[str, int]]
) -> None:
    booking_id = book(api, auth, flight_id, "key-1").json()["booking_id"]

    response = api.post(f"/bookings/{booking_id}/cancel", headers=auth("alice", "customer"))
    before = event_counts()
    again = api.post(f"/bookings/{booking_id}/cancel", headers=auth("alice", "customer"))

    assert response.status_code == 202, response.text
    assert response.json() == {"booking_id": booking_id, "status": "CANCELLED"}
    assert decode_positions(response.headers["X-Flightbook-Position"]) == {"booking": 2}
    assert_answered_as_before(again, response)
    assert event_counts() == before


def test_another_customer_cannot_tell_a_booking_exists(
    api: Api, auth: Headers, flight_id: str, event_counts: Callable[[], dict[str, int]]
) -> None:
    booking_id = book(api, auth, flight_id, "key-1").json()["booking_id"]
    unknown_id = str(uuid.uuid4())
    before = event_counts()

    someone_elses = api.post(f"/bookings/{booking_id}/cancel", headers=auth("bob", "customer"))
    unknown = api.post(f"/bookings/{unknown_id}/cancel", headers=auth("bob", "customer"))

    assert someone_elses.status_code == unknown.status_code == 404
    mine, theirs = someone_elses.json(), unknown.json()
    assert mine["detail"].replace(booking_id, "ID") == theirs["detail"].replace(unknown_id, "ID")
    assert {**mine, "detail": ""} == {**theirs, "detail": ""}
    assert event_counts() == before


def test_an_agent_cancels_a_customers_booking(
    api: Api, auth: Headers, flight_id: str, bookings: Bookings
) -> None:
    booking_id = book(api, auth, flight_id, "key-1").json()["booking_id"]

    response = api.post(f"/bookings/{booking_id}/cancel", headers=auth("agent-7", "agent"))

    assert response.status_code == 202, response.text
    assert response.json()["status"] == "CANCELLED"
    cancelled, meta = stored(bookings)[-1]
    assert isinstance(cancelled, Booking.Cancelled)
    assert (cancelled.reason, cancelled.by) == ("AGENT", "agent-7")
    assert meta.actor == "agent-7"


def test_a_rejected_booking_cannot_be_cancelled(
    api: Api,
    auth: Headers,
    flight_id: str,
    bookings: Bookings,
    event_counts: Callable[[], dict[str, int]],
) -> None:
    booking_id = book(api, auth, flight_id, "key-1").json()["booking_id"]
    booking: Booking = bookings.repository.get(uuid.UUID(booking_id))
    booking.reject(RejectionReason.NO_SEATS)
    with recording(actor="saga"):
        bookings.record(booking)
    before = event_counts()

    response = api.post(f"/bookings/{booking_id}/cancel", headers=auth("alice", "customer"))

    assert response.status_code == 409, response.text
    assert response.json()["type"].endswith("/illegal_transition")
    assert event_counts() == before


def test_ops_cancels_a_flight_and_then_it_cannot_be_booked(
    api: Api, auth: Headers, flight_id: str, inventory: Inventory
) -> None:
    response = api.post(
        f"/flights/{flight_id}/cancel",
        json={"reason": "storm"},
        headers=auth("ops-1", "ops", **{"X-Request-ID": "req-cancel-1"}),
    )
    repeat = api.post(f"/flights/{flight_id}/cancel", headers=auth("ops-1", "ops"))
    booking = book(api, auth, flight_id, "key-1")

    assert response.status_code == 202, response.text
    assert response.json() == {"flight_id": flight_id, "status": "CANCELLED"}
    assert decode_positions(response.headers["X-Flightbook-Position"]) == {"inventory": 2}
    cancelled, meta = stored(inventory)[-1]
    assert isinstance(cancelled, FlightInventory.FlightCancelled)
    assert cancelled.reason == "storm"
    assert (meta.actor, meta.correlation_id) == ("ops-1", "req-cancel-1")
    assert repeat.status_code == 202
    assert repeat.headers["X-Flightbook-Position"] == response.headers["X-Flightbook-Position"]
    assert len(stored(inventory)) == 2
    assert booking.status_code == 409
    assert booking.json()["field"] == "flight_id"


def test_cancelling_an_unknown_flight_is_not_found(api: Api, auth: Headers) -> None:
    response = api.post(f"/flights/{uuid.uuid4()}/cancel", headers=auth("ops-1", "ops"))

    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/problem+json")


def test_stored_events_carry_the_actor_and_the_request_id(
    api: Api, auth: Headers, flight_id: str, bookings: Bookings
) -> None:
    api.post(
        "/bookings",
        json=booking_body(flight_id),
        headers=auth("alice", "customer", **{"Idempotency-Key": "k", "X-Request-ID": "r-42"}),
    )

    [(event, meta)] = stored(bookings)

    assert isinstance(event, Booking.Requested)
    assert meta.actor == "alice"
    assert meta.correlation_id == "r-42"
    assert meta.event_id
    assert meta.schema_version == 2


def test_without_a_request_id_a_new_correlation_id_is_stored_and_echoed(
    api: Api, auth: Headers, flight_id: str, bookings: Bookings
) -> None:
    response = book(api, auth, flight_id, "key-1")

    [(_, meta)] = stored(bookings)

    assert uuid.UUID(response.headers["X-Request-ID"]).version == 4
    assert meta.correlation_id == response.headers["X-Request-ID"]


def test_each_request_is_logged_once(api: Api, auth: Headers, flight_id: str) -> None:
    with capture_logs() as logs:
        response = api.post(
            "/bookings",
            json=booking_body(flight_id),
            headers=auth("alice", "customer", **{"Idempotency-Key": "k", "X-Request-ID": "r-7"}),
        )

    handled = [line for line in logs if line["event"] == "command.handled"]
    assert len(handled) == 1
    line = handled[0]
    assert line["correlation_id"] == "r-7"
    assert line["endpoint"] == "request_booking"
    assert line["status"] == 202
    assert line["outcome"] == "accepted"
    assert line["booking_id"] == response.json()["booking_id"]
    assert line["duration_ms"] >= 0


def test_commands_are_counted_by_endpoint_and_outcome_on_the_ops_port(
    api: Api, auth: Headers, flight_id: str, registry: CollectorRegistry
) -> None:
    book(api, auth, flight_id, "key-1")
    book(api, auth, flight_id, "key-1")
    api.post("/bookings", json=booking_body(flight_id), headers={"Idempotency-Key": "x"})

    with ops_metrics(registry) as fetch:
        metrics = fetch()
    on_the_public_port = api.get("/metrics")

    assert 'flightbook_commands_total{endpoint="schedule_flight",outcome="created"} 1.0' in metrics
    assert 'flightbook_commands_total{endpoint="request_booking",outcome="accepted"} 1.0' in metrics
    assert 'flightbook_commands_total{endpoint="request_booking",outcome="repeated"} 1.0' in metrics
    assert (
        'flightbook_commands_total{endpoint="request_booking",outcome="unauthorized"} 1.0'
        in metrics
    )
    assert 'flightbook_command_duration_seconds_count{endpoint="request_booking"} 3.0' in metrics
    assert on_the_public_port.status_code == 404


def test_the_openapi_document_describes_the_four_commands(api: Api) -> None:
    document = api.get("/schema/openapi.json").json()

    schemas = document["components"]["schemas"]
    expected = {
        "/flights": ("FlightRequest", "201", "FlightScheduled"),
        "/bookings": ("BookingRequest", "202", "BookingAccepted"),
        "/bookings/{booking_id}/cancel": (None, "202", "BookingAccepted"),
        "/flights/{flight_id}/cancel": ("FlightCancellationRequest", "202", "FlightCancellation"),
    }
    for path, (request, status, response) in expected.items():
        operation = document["paths"][path]["post"]
        if request is not None:
            body = json.dumps(operation["requestBody"])
            assert f"#/components/schemas/{request}" in body, path
        answer = operation["responses"][status]
        assert answer["content"]["application/json"]["schema"] == {
            "$ref": f"#/components/schemas/{response}"
        }
        assert "X-Flightbook-Position" in answer["headers"], path
        problem = operation["responses"]["401"]["content"]["application/problem+json"]
        assert problem["schema"] == {"$ref": "#/components/schemas/ProblemDocument"}
        assert operation["security"] == [{"bearer": []}]
    booking = schemas["BookingRequest"]
    assert set(booking["required"]) == {"flight_id", "fare", "passengers", "payment_token"}
    assert booking["properties"]["passengers"]["maxItems"] == 9
    parameters = {p["name"]: p for p in document["paths"]["/bookings"]["post"]["parameters"]}
    assert parameters["Idempotency-Key"]["required"] is True
    assert document["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
