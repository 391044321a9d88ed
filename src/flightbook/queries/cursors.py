"""Opaque page cursors: base64url of the sort key of the last item a page showed.

A cursor is ``base64url(JSON [kind, value...])`` without padding; ``kind`` names the list it
belongs to (``bookings``, ``flights``, ``sales``) so that a cursor of one list is refused by
another. Clients must treat cursors as opaque: the shape may change.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json

__all__ = (
    "MAX_CURSOR_LENGTH",
    "CursorError",
    "TimeKey",
    "decode_cursor",
    "decode_time_key",
    "encode_cursor",
    "encode_time_key",
)

MAX_CURSOR_LENGTH = 512
TimeKey = tuple[dt.datetime, str]
"""A ``(time, id)`` sort key: a booking's ``(created_at, booking_id)``, a flight's
``(departure, flight_id)``."""


class CursorError(ValueError):
    """The cursor is not one this list gave out."""


def encode_cursor(kind: str, *values: str) -> str:
    raw = json.dumps([kind, *values], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def decode_cursor(kind: str, token: str, arity: int) -> tuple[str, ...]:
    """The ``arity`` values of a cursor of list ``kind``.

    Raises:
        CursorError: the token is not such a cursor.
    """
    if not token or len(token) > MAX_CURSOR_LENGTH:
        raise CursorError("the cursor is not one this list gave out")
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        decoded = json.loads(raw)
    except (binascii.Error, ValueError):
        raise CursorError("the cursor is not one this list gave out") from None
    if (
        not isinstance(decoded, list)
        or len(decoded) != arity + 1
        or decoded[0] != kind
        or not all(isinstance(value, str) for value in decoded[1:])
    ):
        raise CursorError("the cursor is not one this list gave out")
    return tuple(decoded[1:])


def encode_time_key(kind: str, key: TimeKey) -> str:
    at, identifier = key
    return encode_cursor(kind, at.astimezone(dt.UTC).isoformat(), identifier)


def decode_time_key(kind: str, token: str) -> TimeKey:
    """The ``(time, id)`` of a cursor of list ``kind`` (the time aware, in UTC).

    Raises:
        CursorError: the token is not such a cursor.
    """
    at, identifier = decode_cursor(kind, token, 2)
    try:
        moment = dt.datetime.fromisoformat(at)
    except ValueError:
        raise CursorError("the cursor is not one this list gave out") from None
    if moment.tzinfo is None or not identifier:
        raise CursorError("the cursor is not one this list gave out")
    return moment.astimezone(dt.UTC), identifier
