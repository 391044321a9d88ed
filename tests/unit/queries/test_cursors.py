"""Page cursors: round-trip exactly, and follow a grammar that a regex states exactly.

Before issue 15 a cursor was base64 of JSON, which no pattern in the OpenAPI document
could describe: schemathesis sent cursors the document allowed and got 400s.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flightbook.queries import cursors

pytestmark = pytest.mark.unit

ID = str(uuid.UUID("12345678-1234-5678-1234-567812345678"))


def test_a_time_key_round_trips_to_the_microsecond_in_utc() -> None:
    at = dt.datetime(2026, 11, 1, 9, 30, 0, 123456, tzinfo=dt.timezone(dt.timedelta(hours=2)))

    token = cursors.encode_time_key("bookings", (at, ID))

    assert cursors.decode_time_key("bookings", token) == (at, ID)
    assert cursors.decode_time_key("bookings", token)[0].tzinfo == dt.UTC


def test_a_sales_key_round_trips() -> None:
    token = cursors.encode_cursor("sales", "2026-11-01", "LHR", "JFK")

    assert re.fullmatch(cursors.CURSOR_PATTERNS["sales"], token)
    assert cursors.decode_cursor("sales", token, 3) == ("2026-11-01", "LHR", "JFK")


def test_a_cursor_of_another_list_is_refused() -> None:
    token = cursors.encode_time_key("flights", (dt.datetime(2026, 1, 1, tzinfo=dt.UTC), ID))

    with pytest.raises(cursors.CursorError):
        cursors.decode_time_key("bookings", token)


@pytest.mark.parametrize(
    "token",
    [
        "",
        "zzz",
        "b",
        "b1_",
        "b1_" + "0" * 31,
        "b1_" + "A" * 32,
        "b" + "9" * 18 + "_" + "0" * 32,
        "b-1_" + "0" * 32,
        "b1_" + "0" * 32 + "\n",
        " b1_" + "0" * 32,
        "WyJib29raW5ncyIsIjIwMjYtMDEtMDFUMDA6MDA6MDArMDA6MDAiLCJiLTEiXQ",  # the old shape
    ],
)
def test_anything_else_is_refused(token: str) -> None:
    with pytest.raises(cursors.CursorError):
        cursors.decode_time_key("bookings", token)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(["flights", "bookings"]), st.data())
def test_every_string_the_time_key_pattern_matches_is_a_cursor_that_decodes(
    kind: str, data: st.DataObject
) -> None:
    token = data.draw(st.from_regex(cursors.CURSOR_PATTERNS[kind], fullmatch=True))

    at, identifier = cursors.decode_time_key(kind, token)

    again = cursors.encode_time_key(kind, (at, identifier))
    assert cursors.decode_time_key(kind, again) == (at, identifier)


@settings(max_examples=200, deadline=None)
@given(st.from_regex(cursors.CURSOR_PATTERNS["sales"], fullmatch=True))
def test_every_string_the_sales_pattern_matches_is_a_cursor_that_decodes(token: str) -> None:
    day, origin, destination = cursors.decode_cursor("sales", token, 3)

    assert dt.date.fromisoformat(day).isoformat() == day
    assert len(origin) == len(destination) == 3


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(["flights", "bookings"]),
    st.datetimes(
        min_value=dt.datetime(1970, 1, 1),  # noqa: DTZ001 - hypothesis wants naive bounds
        max_value=dt.datetime(5000, 1, 1),  # noqa: DTZ001
        timezones=st.just(dt.UTC),
    ),
    st.uuids(),
)
def test_every_cursor_given_out_matches_its_pattern(
    kind: str, at: dt.datetime, identifier: uuid.UUID
) -> None:
    token = cursors.encode_time_key(kind, (at, str(identifier)))

    assert re.fullmatch(cursors.CURSOR_PATTERNS[kind], token)
    assert cursors.decode_time_key(kind, token) == (at, str(identifier))
