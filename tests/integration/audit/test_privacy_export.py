"""``flightbook privacy export`` and the auditors' commands around an erasure, on real data."""

from __future__ import annotations

import json
import os
import stat
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from psycopg_pool import ConnectionPool

from flightbook.config.settings import Settings
from flightbook.domain.subject import data_subject_id
from flightbook.eventstore.pii import PersonalDataVault, build_vault
from flightbook.http.tokens import mint_token
from tests.support.cli import run_cli, use_settings
from tests.support.erasure import book_sealed, record_erasure
from tests.support.saga import SagaHarness, make_harness
from tests.support.writeside import WriteSide

pytestmark = pytest.mark.integration

GRACE = [{"name": "Grace Hopper", "email": "grace@example.org"}]
ERIN = [
    {"name": "Erin Erasable-Xq", "email": "erin.xq@example.org"},
    {"name": "Eric Erasable-Xq", "email": "eric.xq@example.org"},
]
ERIN_TOKEN = "tok_ok_erin_secret_7781"


@dataclass
class People:
    harness: SagaHarness
    vault: PersonalDataVault
    flight: uuid.UUID
    grace: list[uuid.UUID]
    erin: uuid.UUID
    bob: uuid.UUID


@pytest.fixture
def people(settings: Settings, write_side: WriteSide) -> Iterator[People]:
    assert settings.postgres_url is not None
    with ConnectionPool(settings.postgres_url, min_size=1, max_size=2) as pool:
        vault = build_vault(settings, pool)
        for harness in make_harness(settings, write_side):
            flight = harness.schedule_flight(seats=10, refundable=True)
            grace = [
                book_sealed(harness, vault, flight, "grace", passengers=GRACE),
                book_sealed(
                    harness, vault, flight, "grace", passengers=GRACE, token="tok_declined"
                ),
            ]
            erin = book_sealed(harness, vault, flight, "erin", passengers=ERIN, token=ERIN_TOKEN)
            bob = book_sealed(
                harness, vault, flight, "bob", passengers=[{"name": "Bob", "email": "b@x"}]
            )
            harness.settle()
            record_erasure(harness, vault, "erin")
            yield People(harness, vault, flight, grace, erin, bob)


@pytest.fixture
def cli_env(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    return use_settings(settings, monkeypatch)


def test_an_export_holds_every_booking_and_personal_datum_of_the_customer_and_no_one_elses(
    people: People, cli_env: Settings, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    target = tmp_path / "grace.json"

    code, out, err = run_cli(capsys, "privacy", "export", "grace", "--output", str(target))

    assert (code, out) == (0, "")
    assert "2 booking(s) found" in err
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o600  # it holds personal data
    document = json.loads(target.read_text())
    assert document["format"] == "flightbook.data-subject-export/1"
    assert (document["customer_id"], document["erasures"]) == ("grace", [])
    bookings = {b["booking_id"]: b for b in document["bookings"]}
    assert set(bookings) == {str(b) for b in people.grace}
    confirmed, rejected = (bookings[str(b)] for b in people.grace)
    assert (confirmed["status"], rejected["status"]) == ("CONFIRMED", "REJECTED")
    assert rejected["reason"] == "PAYMENT_DECLINED"
    for booking in (confirmed, rejected):
        assert booking["passengers"] == GRACE
        assert booking["personal_data_erased"] is False
        assert booking["flight"]["flight_id"] == str(people.flight)
        assert (booking["flight"]["origin"], booking["flight"]["destination"]) == ("LHR", "JFK")
        assert booking["flight"]["departure"] < booking["flight"]["arrival"]
        assert booking["price"] == {"amount": 45000, "currency": "EUR"}
        assert booking["created_at"] <= booking["updated_at"]
        assert booking["events"][0]["type"] == "Booking.Requested"
        assert booking["events"][0]["actor"] == "grace"
    assert confirmed["payment_token"] == "****k_ok"  # a credential: its last 4 only
    assert rejected["payment_token"] == "****ined"
    assert confirmed["payment"]["status"] == "CAPTURED"
    assert "Bob" not in target.read_text()


def test_an_erased_customers_export_shows_erased_data_and_the_erasure(
    people: People, cli_env: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run_cli(capsys, "privacy", "export", "erin")

    assert code == 0
    document = json.loads(out)
    (booking,) = document["bookings"]
    assert booking["booking_id"] == str(people.erin)
    assert booking["passengers"] == [{"name": "[erased]", "email": "[erased]"}] * 2
    assert booking["payment_token"] == "[erased]"
    assert booking["personal_data_erased"] is True
    assert booking["events"][-1]["type"] == "Booking.PassengersErased"
    (erasure,) = document["erasures"]
    assert (erasure["reason"], erasure["bookings"], erasure["actor"]) == (
        "customer_request",
        1,
        "dpo",
    )
    for secret in ("Erin Erasable-Xq", "erin.xq@example.org", ERIN_TOKEN, "7781"):
        assert secret not in out


def test_without_the_customer_bookings_table_the_bookings_are_found_in_the_log(
    settings: Settings, people: People, cli_env: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    assert settings.postgres_url is not None
    with psycopg.connect(settings.postgres_url, autocommit=True) as conn:
        conn.execute("ALTER TABLE booking.customer_bookings RENAME TO customer_bookings_away")

    code, out, _ = run_cli(capsys, "privacy", "export", "grace")

    assert code == 0
    assert {b["booking_id"] for b in json.loads(out)["bookings"]} == {str(b) for b in people.grace}


def test_an_unknown_customer_has_an_empty_export(
    people: People, cli_env: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_cli(capsys, "privacy", "export", "nobody")

    assert code == 0
    assert (json.loads(out)["bookings"], json.loads(out)["erasures"]) == ([], [])
    assert "0 booking(s) found" in err


def test_the_auditors_see_the_erasure_and_never_the_erased_data_or_a_whole_token(
    settings: Settings, people: People, cli_env: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    auditor = mint_token(settings, subject="audrey", roles=["auditor"])

    _, hidden, _ = run_cli(capsys, "audit", "history", str(people.erin), "--format", "json")
    _, shown, _ = run_cli(
        capsys,
        "audit",
        "history",
        str(people.erin),
        "--format",
        "json",
        "--show-personal-data",
        "--token",
        auditor,
    )
    _, grace, _ = run_cli(
        capsys,
        "audit",
        "history",
        str(people.grace[0]),
        "--format",
        "json",
        "--show-personal-data",
        "--token",
        auditor,
    )
    _, subject, _ = run_cli(
        capsys, "audit", "history", str(data_subject_id("erin")), "--format", "json"
    )
    code, exported, _ = run_cli(capsys, "audit", "export")

    shown_records = [json.loads(line) for line in shown.splitlines()]
    requested = shown_records[0]["payload"]
    assert requested["passengers"] == "[erased]"
    assert requested["payment_token"] == "[erased]"
    assert shown_records[-1]["type"] == "Booking.PassengersErased"
    assert shown_records[-1]["payload"] == {"reason": "customer_request"}
    assert shown_records[-1]["actor"] == "dpo"
    hidden_requested = json.loads(hidden.splitlines()[0])["payload"]
    assert (hidden_requested["passengers"], hidden_requested["payment_token"]) == (
        "[erased]",
        "[erased]",
    )  # erased shows as erased without opening anything; a live value stays hidden:
    _, grace_hidden, _ = run_cli(
        capsys, "audit", "history", str(people.grace[0]), "--format", "json"
    )
    assert json.loads(grace_hidden.splitlines()[0])["payload"]["passengers"] == (
        "[sealed personal data]"
    )
    grace_requested = json.loads(grace.splitlines()[0])["payload"]
    assert grace_requested["passengers"] == GRACE
    assert grace_requested["payment_token"] == "****k_ok"
    assert [json.loads(line)["type"] for line in subject.splitlines()] == [
        "DataSubject.Opened",
        "DataSubject.Erased",
    ]
    assert code == 0
    for secret in ("Erin Erasable-Xq", "erin.xq@example.org", ERIN_TOKEN, "Grace Hopper"):
        assert secret not in exported + hidden + shown
