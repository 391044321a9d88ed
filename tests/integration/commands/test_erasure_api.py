"""``POST /customers/{id}/erasure`` against a real PostgreSQL, with the saga driven by hand.

The bookings go through the real command API and the real saga (its job runner opens the
sealed payment token with the vault of the same key-encryption key file), so what is
asserted is what a deployment does: who may erase, what is refused, what is stored.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
from psycopg_pool import ConnectionPool

from flightbook.cli import main
from flightbook.config.settings import Settings
from flightbook.domain.booking import Booking, BookingStatus
from flightbook.domain.subject import DataSubject, data_subject_id
from flightbook.eventstore.customers import bookings_of
from flightbook.eventstore.pii import ERASED, PersonalDataVault, build_vault
from flightbook.http.positions import decode_positions
from tests.support.api import Api, Headers, booking_body
from tests.support.saga import SagaHarness, make_harness
from tests.support.writeside import WriteSide

pytestmark = pytest.mark.integration

TOKEN = "tok_ok_erasure-7731"
MIGRATION = Path(__file__).resolve().parents[3] / "migrations/postgres/0008_customer_bookings.sql"


@pytest.fixture
def harness(settings: Settings, write_side: WriteSide) -> Iterator[SagaHarness]:
    yield from make_harness(settings, write_side)


@pytest.fixture
def vault(settings: Settings) -> Iterator[PersonalDataVault]:
    assert settings.postgres_url is not None
    with ConnectionPool(settings.postgres_url, min_size=1, max_size=2) as pool:
        yield build_vault(settings, pool)


def book(api: Api, auth: Headers, flight_id: str, key: str, token: str = TOKEN) -> str:
    response = api.post(
        "/bookings",
        json=booking_body(flight_id, payment_token=token),
        headers=auth("alice", "customer", **{"Idempotency-Key": key}),
    )
    assert response.status_code == 202, response.text
    return str(response.json()["booking_id"])


def erase(
    api: Api, auth: Headers, *roles: str, body: object = None, customer: str = "alice"
) -> httpx.Response:
    return api.post(
        f"/customers/{customer}/erasure",
        json={"reason": "customer_request"} if body is None else body,
        headers=auth("dpo-1", *(roles or ("privacy",)), **{"X-Request-ID": "req-erasure-1"}),
    )


def status(harness: SagaHarness, booking_id: str) -> BookingStatus:
    return harness.booking(uuid.UUID(booking_id)).status


def opened(vault: PersonalDataVault, harness: SagaHarness, booking_id: str) -> str:
    booking = harness.booking(uuid.UUID(booking_id))
    vault.forget("alice")  # the test's vault must see what the API did, not its cache
    return vault.open("alice", booking.passengers)


def test_a_privacy_officer_erases_a_customer_and_the_keys_are_gone(
    api: Api, auth: Headers, flight_id: str, harness: SagaHarness, vault: PersonalDataVault
) -> None:
    booking_id = book(api, auth, flight_id, "key-1")
    harness.settle()
    assert status(harness, booking_id) is BookingStatus.CONFIRMED  # authorized with the token

    response = erase(api, auth)

    assert response.status_code == 200, response.text
    assert response.json() == {
        "customer_id": "alice",
        "bookings_erased": 1,
        "already_erased": False,
    }
    assert decode_positions(response.headers["X-Flightbook-Position"])["booking"] > 0
    booking = harness.booking(uuid.UUID(booking_id))
    assert booking.personal_data_erased
    assert opened(vault, harness, booking_id) == ERASED
    assert vault.open("alice", booking.payment_token) == ERASED


@pytest.mark.parametrize("role", ["customer", "agent", "ops", "analyst", "auditor"])
def test_only_the_privacy_role_may_erase(
    api: Api, auth: Headers, role: str, event_counts: Callable[[], dict[str, int]]
) -> None:
    before = event_counts()

    response = erase(api, auth, role)

    assert response.status_code == 403, response.text
    assert event_counts() == before


def test_an_erasure_without_a_token_is_unauthorized(api: Api) -> None:
    response = api.post("/customers/alice/erasure", json={"reason": "customer_request"})

    assert response.status_code == 401


def test_an_erasure_while_a_booking_is_in_progress_is_a_conflict_and_stores_nothing(
    api: Api,
    auth: Headers,
    flight_id: str,
    harness: SagaHarness,
    vault: PersonalDataVault,
    event_counts: Callable[[], dict[str, int]],
) -> None:
    booking_id = book(api, auth, flight_id, "key-1")  # the saga has not answered it yet
    before = event_counts()

    response = erase(api, auth)

    assert response.status_code == 409, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["type"].endswith("/bookings_in_progress")
    assert event_counts() == before
    harness.settle()
    assert status(harness, booking_id) is BookingStatus.CONFIRMED  # its token still opened
    assert opened(vault, harness, booking_id) != ERASED


def test_erasing_twice_answers_already_erased_and_stores_nothing_more(
    api: Api,
    auth: Headers,
    flight_id: str,
    harness: SagaHarness,
    event_counts: Callable[[], dict[str, int]],
) -> None:
    book(api, auth, flight_id, "key-1")
    harness.settle()
    first = erase(api, auth)
    before = event_counts()

    again = erase(api, auth)

    assert again.status_code == 200, again.text
    assert again.json() == {"customer_id": "alice", "bookings_erased": 0, "already_erased": True}
    assert again.headers["X-Flightbook-Position"] == first.headers["X-Flightbook-Position"]
    assert event_counts() == before


def test_an_erased_customer_books_again_and_only_the_new_booking_opens(
    api: Api, auth: Headers, flight_id: str, harness: SagaHarness, vault: PersonalDataVault
) -> None:
    old = book(api, auth, flight_id, "key-1")
    harness.settle()
    assert erase(api, auth).status_code == 200

    new = book(api, auth, flight_id, "key-2", token="tok_ok_second-card")
    harness.settle()

    assert status(harness, new) is BookingStatus.CONFIRMED  # a new key sealed its token
    assert json.loads(opened(vault, harness, new))[0]["name"] == "Ada Lovelace"
    assert opened(vault, harness, old) == ERASED


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"reason": "I asked nicely"}, "reason"),
        ({"reason": "customer_request", "note": "x"}, "note"),
        ({}, "reason"),
        ([], "body"),
    ],
)
def test_a_bad_erasure_body_is_refused_naming_the_field(
    api: Api,
    auth: Headers,
    body: object,
    field: str,
    event_counts: Callable[[], dict[str, int]],
) -> None:
    before = event_counts()

    response = erase(api, auth, body=body)

    assert response.status_code == 400, response.text
    assert response.json()["field"] == field
    assert event_counts() == before


def test_an_overlong_customer_id_is_refused_naming_it(api: Api, auth: Headers) -> None:
    response = erase(api, auth, customer="c" * 201)

    assert response.status_code == 422, response.text
    assert response.json()["field"] == "customer_id"


def test_the_payment_token_is_never_in_plain_text_in_the_events_table(
    api: Api, auth: Headers, flight_id: str, harness: SagaHarness, settings: Settings
) -> None:
    """The saga still authorizes with it: it opens the sealed token just before the call."""
    booking_id = book(api, auth, flight_id, "key-1")
    harness.settle()
    assert status(harness, booking_id) is BookingStatus.CONFIRMED
    assert settings.postgres_url is not None

    with psycopg.connect(settings.postgres_url) as conn:
        rows = conn.execute(
            "SELECT topic, state FROM booking.bookings_events ORDER BY notification_id"
        ).fetchall()

    assert rows
    raw = b"".join(bytes(state) for _topic, state in rows)
    assert TOKEN.encode() not in raw
    assert b"erasure-7731" not in raw


def test_the_erasure_events_carry_who_and_why_and_no_personal_data(
    api: Api, auth: Headers, flight_id: str, harness: SagaHarness, settings: Settings
) -> None:
    booking_id = book(api, auth, flight_id, "key-1")
    harness.settle()

    erase(api, auth)

    stored = [
        harness.bookings.metadata_mapper.decode(n)
        for n in harness.bookings.recorder.select_notifications(start=1, limit=1000)
    ]
    erasures = [
        (e, m) for e, m in stored if isinstance(e, Booking.PassengersErased | DataSubject.Erased)
    ]
    assert {e.originator_id for e, _ in erasures} == {
        uuid.UUID(booking_id),
        data_subject_id("alice"),
    }
    assert {(m.actor, m.correlation_id) for _, m in erasures} == {("dpo-1", "req-erasure-1")}
    assert settings.postgres_url is not None
    with psycopg.connect(settings.postgres_url) as conn:
        states = conn.execute(
            "SELECT state FROM booking.bookings_events WHERE topic LIKE %s OR topic LIKE %s",
            ("%PassengersErased", "%DataSubject.Erased"),
        ).fetchall()
    assert len(states) == 2
    for (state,) in states:
        fields = set(json.loads(bytes(state))) - {"timestamp", "originator_topic", "__meta__"}
        assert fields <= {"reason", "customer_id", "bookings"}


def test_audit_history_and_trace_show_the_erasure_with_its_actor(
    api: Api,
    auth: Headers,
    flight_id: str,
    harness: SagaHarness,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    booking_id = book(api, auth, flight_id, "key-1")
    harness.settle()
    erase(api, auth)
    for key, value in settings.to_env().items():
        monkeypatch.setenv(key, value)
    capsys.readouterr()

    code = main(["audit", "history", booking_id, "--format", "json"])
    subject_code = main(["audit", "history", str(data_subject_id("alice")), "--format", "json"])

    assert (code, subject_code) == (0, 0)
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    erased = [r for r in records if r["type"].endswith(("PassengersErased", "DataSubject.Erased"))]
    assert len(erased) == 2
    assert {(r["actor"], r["correlation_id"]) for r in erased} == {("dpo-1", "req-erasure-1")}
    assert {r["payload"]["reason"] for r in erased} == {"customer_request"}
    assert main(["audit", "trace", "req-erasure-1", "--format", "json"]) == 0
    traced = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["type"].rsplit(".", 1)[-1] for r in traced] == [
        "PassengersErased",
        "Opened",
        "Erased",
    ]
    assert {r["actor"] for r in traced} == {"dpo-1"}


def test_the_table_of_customer_bookings_is_what_migration_0008_derives_from_the_log(
    api: Api, auth: Headers, flight_id: str, harness: SagaHarness, settings: Settings
) -> None:
    ids = {uuid.UUID(book(api, auth, flight_id, f"key-{n}")) for n in range(3)}
    harness.settle()
    assert set(harness.bookings.customer_bookings("alice")) == ids
    assert settings.postgres_url is not None

    with psycopg.connect(settings.postgres_url) as conn:
        conn.execute("TRUNCATE booking.customer_bookings")
        conn.execute(MIGRATION.read_text())

    assert set(bookings_of(harness.bookings.recorder, "alice")) == ids
    assert bookings_of(harness.bookings.recorder, "bob") == []


def test_the_erasure_route_is_documented(api: Api) -> None:
    document = api.get("/schema/openapi.json").json()

    operation = document["paths"]["/customers/{customer_id}/erasure"]["post"]
    assert {"200", "403", "409"} <= set(operation["responses"])
    assert "privacy" in operation["tags"]
