"""``flightbook privacy erase``: confirmation, what it prints, one-line errors, what it stores."""

from __future__ import annotations

import io
import sys
import uuid
from collections.abc import Callable, Iterator

import pytest

from flightbook.config.settings import Settings
from flightbook.domain.booking import Booking
from flightbook.domain.subject import DataSubject
from tests.support.api import Api, Headers, booking_body
from tests.support.cli import run_cli, use_settings
from tests.support.saga import SagaHarness, make_harness
from tests.support.writeside import WriteSide

pytestmark = pytest.mark.integration


class Terminal(io.StringIO):
    """Standard input that is a terminal, with what the user types."""

    def isatty(self) -> bool:
        return True


@pytest.fixture
def harness(settings: Settings, write_side: WriteSide) -> Iterator[SagaHarness]:
    yield from make_harness(settings, write_side)


@pytest.fixture
def cli_env(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    return use_settings(settings, monkeypatch)


@pytest.fixture
def booked(api: Api, auth: Headers, flight_id: str, harness: SagaHarness) -> uuid.UUID:
    """A confirmed booking of alice's."""
    response = api.post(
        "/bookings",
        json=booking_body(flight_id),
        headers=auth("alice", "customer", **{"Idempotency-Key": "key-1"}),
    )
    assert response.status_code == 202, response.text
    harness.settle()
    return uuid.UUID(response.json()["booking_id"])


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    return run_cli(capsys, "privacy", "erase", *args)


Erase = Callable[[io.StringIO], tuple[int, str, str]]


@pytest.fixture
def erase_answering(
    cli_env: Settings, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Erase:
    """``privacy erase alice`` without ``--yes``, with standard input holding the answer."""

    def erase(stdin: io.StringIO) -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "stdin", stdin)
        return run(capsys, "alice")

    return erase


def erasures(harness: SagaHarness) -> list[tuple[object, str]]:
    stored = [
        harness.bookings.metadata_mapper.decode(n)
        for n in harness.bookings.recorder.select_notifications(start=1, limit=1000)
    ]
    return [
        (e, m.actor)
        for e, m in stored
        if isinstance(e, Booking.PassengersErased | DataSubject.Erased)
    ]


def test_erase_with_yes_erases_and_prints_what_it_erased(
    booked: uuid.UUID,
    harness: SagaHarness,
    cli_env: Settings,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = run(capsys, "alice", "--yes", "--reason", "retention", "--actor", "dpo-9")

    assert code == 0, err
    assert out.strip() == (
        "customer alice: personal data erased (every key; 1 booking(s) marked erased; "
        "reason retention; recorded as dpo-9)"
    )
    assert "erasing the personal data of customer alice" in err
    assert {actor for _, actor in erasures(harness)} == {"dpo-9"}
    assert harness.booking(booked).personal_data_erased


def test_erase_again_says_it_was_erased_before(
    booked: uuid.UUID, cli_env: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    run(capsys, "alice", "--yes")

    code, out, _ = run(capsys, "alice", "--yes")

    assert code == 0
    assert out.strip() == "customer alice: erased before, nothing more to erase"


def test_without_yes_and_without_a_terminal_nothing_is_erased(
    booked: uuid.UUID, harness: SagaHarness, erase_answering: Erase
) -> None:
    code, out, err = erase_answering(io.StringIO("yes\n"))  # piped, not typed

    assert code == 1
    assert out == ""
    assert err.strip().splitlines() == [
        "flightbook: error: not erased: confirm with --yes (there is no terminal to ask on)"
    ]
    assert erasures(harness) == []


@pytest.mark.parametrize("answer", ["no\n", "\n", "y\n"])
def test_a_confirmation_refused_at_the_terminal_erases_nothing(
    answer: str, booked: uuid.UUID, harness: SagaHarness, erase_answering: Erase
) -> None:
    code, _, err = erase_answering(Terminal(answer))

    assert code == 1
    assert "Type 'yes' to erase" in err
    assert (
        err.strip()
        .splitlines()[-1]
        .endswith("flightbook: error: not erased: the erasure was not confirmed")
    )
    assert erasures(harness) == []


def test_yes_typed_at_the_terminal_erases(
    booked: uuid.UUID, harness: SagaHarness, erase_answering: Erase
) -> None:
    code, out, _ = erase_answering(Terminal("yes\n"))

    assert code == 0
    assert "1 booking(s) marked erased" in out
    assert len(erasures(harness)) == 2


def test_a_customer_with_a_booking_in_progress_is_refused_in_one_line(
    api: Api,
    auth: Headers,
    flight_id: str,
    harness: SagaHarness,
    cli_env: Settings,
    capsys: pytest.CaptureFixture[str],
    event_counts: Callable[[], dict[str, int]],
) -> None:
    response = api.post(
        "/bookings",
        json=booking_body(flight_id),
        headers=auth("alice", "customer", **{"Idempotency-Key": "key-1"}),
    )
    assert response.status_code == 202
    before = event_counts()
    capsys.readouterr()  # the API's log line

    code, out, err = run(capsys, "alice", "--yes")

    assert code == 1
    assert out == ""
    (line,) = [line for line in err.strip().splitlines() if line.startswith("flightbook:")]
    assert "has 1 booking(s) in progress" in line
    assert event_counts() == before


def test_an_unknown_reason_is_a_usage_error_in_one_line(
    cli_env: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "alice", "--yes", "--reason", "because")

    assert code == 2
    assert len(err.strip().splitlines()) == 1
    assert "--reason" in err
