"""Page cursors: the sort key of the last item a page showed, in a grammar a regex states.

Each list has its own cursor grammar, :data:`CURSOR_PATTERNS`, which the OpenAPI document
states for that list's ``cursor`` parameter. The grammar is exact: a string it matches
always decodes to a key (so a schema-valid cursor is never refused), any other string is
refused (:class:`CursorError`), and a cursor of one list never matches another's:

=========  =================================  =============================================
list       cursor                             key
=========  =================================  =============================================
flights    ``f<µs>_<32 hex>``                 ``(departure, flight_id)``
bookings   ``b<µs>_<32 hex>``                 ``(created_at, booking_id)``
sales      ``s<days>_<origin><destination>``  ``(day, origin, destination)``
=========  =================================  =============================================

``<µs>`` is microseconds since 1970-01-01T00:00Z (at most 17 digits: before the year
5138), ``<days>`` days since 1970-01-01 (at most 6 digits: before the year 4707), the id
a UUID's 32 lowercase hex digits. Clients must treat cursors as opaque: the shape may
change.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from typing import Final

__all__ = (
    "CURSOR_PATTERNS",
    "MAX_CURSOR_LENGTH",
    "CursorError",
    "TimeKey",
    "decode_cursor",
    "decode_time_key",
    "encode_cursor",
    "encode_time_key",
)

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MICROSECOND = dt.timedelta(microseconds=1)
_PREFIX: Final = {"flights": "f", "bookings": "b", "sales": "s"}
_TIME_KEY = r"[0-9]{1,17}_[0-9a-f]{32}"
CURSOR_PATTERNS: Final = {
    "flights": f"^f{_TIME_KEY}$",
    "bookings": f"^b{_TIME_KEY}$",
    "sales": "^s[0-9]{1,6}_[A-Z]{6}$",
}
"""Each list's cursor grammar (anchored; the same string in the OpenAPI document)."""
MAX_CURSOR_LENGTH = 1 + 17 + 1 + 32
_COMPILED = {kind: re.compile(pattern) for kind, pattern in CURSOR_PATTERNS.items()}
TimeKey = tuple[dt.datetime, str]
"""A ``(time, id)`` sort key: a booking's ``(created_at, booking_id)``, a flight's
``(departure, flight_id)``; the id is a UUID's canonical string."""


class CursorError(ValueError):
    """The cursor is not one this list gives out."""


def _refused() -> CursorError:
    return CursorError("the cursor is not one this list gave out")


def _checked(kind: str, token: str) -> str:
    """The token without its list prefix, if it matches the list's grammar."""
    pattern = _COMPILED.get(kind)
    if pattern is None or pattern.fullmatch(token) is None:
        raise _refused()
    return token[1:]


def encode_time_key(kind: str, key: TimeKey) -> str:
    """The cursor of list ``kind`` (``flights``, ``bookings``) after ``key``."""
    at, identifier = key
    micros = (at - _EPOCH) // _MICROSECOND
    return f"{_PREFIX[kind]}{micros}_{uuid.UUID(identifier).hex}"


def decode_time_key(kind: str, token: str) -> TimeKey:
    """The ``(time, id)`` of a cursor of list ``kind`` (the time aware, in UTC).

    Raises:
        CursorError: the token does not match the list's grammar.
    """
    micros, _, identifier = _checked(kind, token).partition("_")
    return _EPOCH + int(micros) * _MICROSECOND, str(uuid.UUID(hex=identifier))


def encode_cursor(kind: str, *values: str) -> str:
    """The cursor of list ``sales`` after ``(day, origin, destination)`` (ISO day, IATA codes)."""
    day, origin, destination = values
    days = (dt.date.fromisoformat(day) - _EPOCH.date()).days
    token = f"{_PREFIX[kind]}{days}_{origin}{destination}"
    _checked(kind, token)
    return token


def decode_cursor(kind: str, token: str, arity: int) -> tuple[str, ...]:
    """The ``(day, origin, destination)`` of a ``sales`` cursor, as encoded.

    Raises:
        CursorError: the token does not match the list's grammar.
    """
    days, _, route = _checked(kind, token).partition("_")
    if arity != 3:  # pragma: no cover - a wiring mistake
        raise ValueError("a sales cursor holds three values")
    day = _EPOCH.date() + dt.timedelta(days=int(days))
    return day.isoformat(), route[:3], route[3:]
