"""``flightbook audit``: history, state as of a moment, export, trace, integrity, on real data."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg_pool import ConnectionPool

from flightbook.config.settings import Settings
from flightbook.domain.booking import BookingStatus, CancellationReason
from flightbook.eventstore.metadata import recording
from flightbook.eventstore.pii import build_vault
from flightbook.http.tokens import mint_token
from tests.support.builders import a_booking
from tests.support.cli import run_cli, use_settings
from tests.support.saga import SagaHarness, make_harness
from tests.support.writeside import WriteSide

pytestmark = pytest.mark.integration


class History:
    def __init__(self, harness: SagaHarness) -> None:
        self.h = harness
        self.flight = harness.schedule_flight(seats=2, refundable=True)
        self.confirmed = harness.request_booking(
            self.flight, refundable=True, correlation_id="req-confirmed"
        )
        self.declined = harness.request_booking(self.flight, token="tok_declined")
        harness.settle()
        self.no_seats_flight = harness.schedule_flight(seats=1)
        self.cancelled = harness.request_booking(self.no_seats_flight)
        self.rejected = harness.request_booking(self.no_seats_flight)
        harness.settle()
        booking = harness.booking(self.cancelled)
        booking.cancel(CancellationReason.CUSTOMER, by="alice")
        with recording(actor="alice", correlation_id="req-cancel"):
            harness.bookings.record(booking)
        harness.settle()
        doomed = harness.schedule_flight(seats=3)
        self.on_cancelled_flight = harness.request_booking(doomed)
        harness.settle()
        flight = harness.flight(doomed)
        flight.cancel("weather")
        with recording(actor="ops"):
            harness.inventory.record(flight)
        harness.settle()


@pytest.fixture
def history(settings: Settings, write_side: WriteSide) -> Iterator[History]:
    for harness in make_harness(settings, write_side):
        yield History(harness)


@pytest.fixture
def cli_env(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    return use_settings(settings, monkeypatch)


def test_history_lists_every_event_of_a_booking_with_its_metadata(
    history: History, cli_env: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run_cli(capsys, "audit", "history", str(history.confirmed), "--format", "json")

    records = [json.loads(line) for line in out.splitlines()]
    assert code == 0
    assert [r["type"] for r in records] == [
        "Booking.Requested",
        "Booking.SeatsHeld",
        "Booking.PaymentAuthorized",
        "Booking.Confirmed",
    ]
    assert [r["aggregate_version"] for r in records] == [1, 2, 3, 4]
    assert {r["correlation_id"] for r in records} == {"req-confirmed"}
    assert [r["actor"] for r in records] == ["alice", "saga", "saga", "saga"]
    assert all(r["event_id"] and r["causation_id"] and r["occurred_at"] for r in records)


def test_personal_data_shows_only_with_the_flag_and_an_auditors_token(
    settings: Settings,
    write_side: WriteSide,
    cli_env: Settings,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert settings.postgres_url is not None
    with ConnectionPool(settings.postgres_url, min_size=1, max_size=1) as pool:
        sealed = build_vault(settings, pool).seal("carol", '[{"name": "Ada Lovelace"}]')
    booking = a_booking(uuid.uuid4(), customer="carol", sealed=sealed, price=100)
    write_side.bookings.record(booking)
    auditor = mint_token(settings, subject="audrey", roles=["auditor"])
    agent = mint_token(settings, subject="andy", roles=["agent"])

    _, hidden, hidden_err = run_cli(capsys, "audit", "history", str(booking.id), "--format", "json")
    assert hidden_err == ""
    code, shown, _ = run_cli(
        capsys,
        "audit",
        "history",
        str(booking.id),
        "--format",
        "json",
        "--show-personal-data",
        "--token",
        auditor,
    )
    refused, _, err = run_cli(
        capsys, "audit", "history", str(booking.id), "--show-personal-data", "--token", agent
    )

    assert "Ada" not in hidden
    assert "[sealed personal data]" in hidden
    assert code == 0
    assert "Ada Lovelace" in shown
    assert refused == 1
    assert err.count("\n") == 1
    assert "auditor" in err


def test_state_as_of_shows_the_status_the_booking_had_at_each_moment(
    history: History, cli_env: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    _, out, _ = run_cli(capsys, "audit", "history", str(history.confirmed), "--format", "json")
    records = [json.loads(line) for line in out.splitlines()]
    before = dt.datetime.fromisoformat(records[0]["occurred_at"]) - dt.timedelta(seconds=1)

    seen = []
    for record in records:
        code, state, _ = run_cli(
            capsys, "audit", "state", str(history.confirmed), "--as-of", record["occurred_at"]
        )
        assert code == 0
        seen.append(json.loads(state)["status"])
    by_position = json.loads(
        run_cli(
            capsys, "audit", "state", str(history.confirmed), "--as-of", str(records[1]["position"])
        )[1]
    )["status"]
    too_early = run_cli(
        capsys, "audit", "state", str(history.confirmed), "--as-of", before.isoformat()
    )

    assert seen == ["REQUESTED", "SEATS_HELD", "PAYMENT_AUTHORIZED", "CONFIRMED"]
    assert by_position == "SEATS_HELD"
    assert too_early[0] == 1
    assert "did not exist yet" in too_early[2]


def test_export_streams_every_event_as_json_lines_with_position_filters(
    history: History, cli_env: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_cli(capsys, "audit", "export")
    everything = [json.loads(line) for line in out.splitlines()]
    _, some, _ = run_cli(
        capsys,
        "audit",
        "export",
        "--context",
        "booking",
        "--from-position",
        "2",
        "--to-position",
        "5",
    )

    heads = {
        c: getattr(history.h, a).recorder.max_notification_id()
        for c, a in (("booking", "bookings"), ("inventory", "inventory"), ("payment", "payments"))
    }
    assert code == 0
    assert len(everything) == sum(heads.values())
    assert "exported" in err
    assert [json.loads(line)["position"] for line in some.splitlines()] == [2, 3, 4, 5]


def test_trace_shows_everything_one_request_caused_across_contexts(
    history: History, cli_env: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run_cli(capsys, "audit", "trace", "req-cancel", "--format", "json")

    records = [json.loads(line) for line in out.splitlines()]
    assert code == 0
    assert records[0]["type"] == "Booking.Cancelled"
    assert {r["context"] for r in records} >= {"booking", "inventory"}
    assert any(r["type"] == "FlightInventory.SoldSeatsReturned" for r in records)


def test_cancelled_flight_history_is_visible_to_auditors(history: History) -> None:
    booking = history.h.booking(history.on_cancelled_flight)

    assert booking.status is BookingStatus.CANCELLED
    assert booking.reason == "FLIGHT_CANCELLED"


def test_unknown_ids_and_bad_times_are_one_line_errors(
    history: History, cli_env: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    unknown = run_cli(capsys, "audit", "history", str(uuid.uuid4()))
    not_a_uuid = run_cli(capsys, "audit", "history", "nope")
    bad_time = run_cli(capsys, "audit", "state", str(history.confirmed), "--as-of", "yesterday")

    for code, _, err in (unknown, not_a_uuid, bad_time):
        assert code != 0
        assert err.count("\n") == 1, err


def _integrity(capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str]:
    code, out, _ = run_cli(capsys, "audit", "integrity", *extra)
    return code, out


def test_integrity_passes_on_an_untouched_log(
    history: History, cli_env: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = _integrity(capsys, "--seal")

    assert code == 0
    assert out.count(": ok") == 3


def _sql(settings: Settings, statement: str, *params: object) -> None:
    assert settings.postgres_url is not None
    with psycopg.connect(settings.postgres_url, autocommit=True) as conn:
        conn.execute(statement, params)


@pytest.mark.parametrize(
    ("statement", "broken"),
    [
        pytest.param(
            "UPDATE booking.bookings_events SET state = "
            "replace(convert_from(state, 'UTF8'), 'tok_ok', 'tok_XX')::bytea "
            "WHERE notification_id = 1",
            "booking: BROKEN at position 1 (altered)",
            id="altered",
        ),
        pytest.param(
            "DELETE FROM inventory.inventory_events WHERE notification_id = 3",
            "inventory: BROKEN at position 3 (removed)",
            id="deleted",
        ),
    ],
)
def test_integrity_names_the_position_of_an_altered_or_deleted_event(
    statement: str,
    broken: str,
    history: History,
    cli_env: Settings,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert _integrity(capsys, "--seal")[0] == 0
    _sql(cli_env, statement)

    code, out = _integrity(capsys)

    assert code == 1
    assert broken in out


def test_integrity_names_the_position_of_an_inserted_event(
    history: History, cli_env: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    """A back-dated insert into a gap of the sequence (left by a rolled-back transaction)."""
    assert cli_env.postgres_url is not None
    with psycopg.connect(cli_env.postgres_url) as conn:  # take a position, then roll back
        conn.execute(
            "INSERT INTO payment.payments_events (originator_id, originator_version, "
            "topic, state) VALUES (%s, 1, 'x:y', '\\x7b7d')",
            (uuid.uuid4(),),
        )
        conn.rollback()
    history.h.request_booking(history.flight, token="tok_declined")
    history.h.settle()  # more payments after the gap
    assert _integrity(capsys, "--seal")[0] == 0
    with psycopg.connect(cli_env.postgres_url) as conn:
        gap = conn.execute(
            "SELECT s.i FROM generate_series(1, (SELECT max(notification_id) FROM "
            "payment.payments_events)) s(i) WHERE s.i NOT IN (SELECT notification_id FROM "
            "payment.payments_events) LIMIT 1"
        ).fetchone()
    assert gap is not None
    _sql(
        cli_env,
        "INSERT INTO payment.payments_events (originator_id, originator_version, "
        "topic, state, notification_id) VALUES (%s, 1, 'x:y', '\\x7b7d', %s)",
        uuid.uuid4(),
        gap[0],
    )

    code, out = _integrity(capsys)

    assert code == 1
    assert f"payment: BROKEN at position {gap[0]} (inserted)" in out
