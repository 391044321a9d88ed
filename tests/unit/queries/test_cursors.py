"""Page cursors: opaque, round-trip exactly, and refuse anything they did not produce."""

from __future__ import annotations

import base64
import datetime as dt
import json

import pytest

from flightbook.queries import cursors

pytestmark = pytest.mark.unit


def b64(value: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()


def test_a_time_key_round_trips_to_the_microsecond_in_utc() -> None:
    at = dt.datetime(2026, 11, 1, 9, 30, 0, 123456, tzinfo=dt.timezone(dt.timedelta(hours=2)))

    token = cursors.encode_time_key("bookings", (at, "b-1"))

    assert cursors.decode_time_key("bookings", token) == (at, "b-1")
    assert cursors.decode_time_key("bookings", token)[0].tzinfo == dt.UTC


def test_a_cursor_is_url_safe_and_unpadded() -> None:
    token = cursors.encode_cursor("sales", "2026-11-01:LHR-JFK" * 3)

    assert "=" not in token
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    assert cursors.decode_cursor("sales", token, 1) == ("2026-11-01:LHR-JFK" * 3,)


def test_a_cursor_of_another_list_is_refused() -> None:
    token = cursors.encode_time_key("flights", (dt.datetime(2026, 1, 1, tzinfo=dt.UTC), "f-1"))

    with pytest.raises(cursors.CursorError):
        cursors.decode_time_key("bookings", token)


@pytest.mark.parametrize(
    "token",
    [
        "",
        "zzz",
        "!!!!",
        "x" * 600,
        b64({"k": "bookings"}),
        b64(["bookings", "2026-01-01T00:00:00+00:00"]),
        b64(["bookings", "2026-01-01T00:00:00+00:00", 7]),
        b64(["bookings", "not a time", "b-1"]),
        b64(["bookings", "2026-01-01T00:00:00", "b-1"]),  # no offset
        b64(["bookings", "2026-01-01T00:00:00+00:00", ""]),
        base64.urlsafe_b64encode(b"\xff\xfe").decode(),
    ],
)
def test_anything_else_is_refused(token: str) -> None:
    with pytest.raises(cursors.CursorError):
        cursors.decode_time_key("bookings", token)
