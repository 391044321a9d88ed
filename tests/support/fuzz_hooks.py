"""Schemathesis hooks of the API fuzz test (``SCHEMATHESIS_HOOKS=tests.support.fuzz_hooks``).

The OpenAPI documents state every rule a JSON Schema can state. A few rules of the domain
cannot be stated in one (they relate two fields, or the request to the stored state):

- ``POST /flights``: destination differs from origin, departure is in the future, arrival
  is after departure, fare codes are unique;
- ``POST /bookings``: the flight exists and has the fare; an ``Idempotency-Key`` already
  used with another body is a 422 (the key names one booking), so every valid key is
  made a fresh one;
- ``POST /auth/register``: the password is not a common one, a pattern or a sequence, and
  contains neither the email nor the name (SP 800-63B: rules a schema cannot state).

The server answers a body that breaks one of them with a 422 naming the field, which
schemathesis' ``positive_data_acceptance`` counts as "a schema-valid request rejected".
So, for positive cases only, :func:`before_call` makes a generated body respect those
rules (and nothing else), as a real client does; negative cases go out untouched.
"""

from __future__ import annotations

import datetime as dt
import os
import string
import uuid
from collections.abc import MutableMapping
from typing import Any

import schemathesis

FLIGHT_ID_VARIABLE = "FLIGHTBOOK_FUZZ_FLIGHT_ID"
FARE_VARIABLE = "FLIGHTBOOK_FUZZ_FARE"
IDEMPOTENCY_KEY = "Idempotency-Key"
MAX_KEY_LENGTH = 200


def _time(value: object) -> dt.datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = dt.datetime.fromisoformat(value.replace("z", "Z"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def _rfc3339(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def _flight(body: dict[str, Any]) -> None:
    if body.get("origin") == body.get("destination") and isinstance(body.get("origin"), str):
        body["destination"] = "AAA" if body["origin"] != "AAA" else "BBB"
    departure, arrival = _time(body.get("departure")), _time(body.get("arrival"))
    if departure is not None and arrival is not None:
        soon = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
        if departure <= soon:
            departure = soon
            body["departure"] = _rfc3339(departure)
        if arrival <= departure:
            body["arrival"] = _rfc3339(departure + dt.timedelta(hours=1))
    fares = body.get("fares")
    if isinstance(fares, list):
        codes = iter(string.ascii_uppercase)
        seen: set[object] = set()
        for fare in fares:
            if isinstance(fare, dict) and "code" in fare:
                if fare["code"] in seen:
                    fare["code"] = next(c for c in codes if c not in seen)
                seen.add(fare["code"])


def _booking(body: dict[str, Any]) -> None:
    flight_id = os.environ.get(FLIGHT_ID_VARIABLE)
    if flight_id:
        body["flight_id"] = flight_id
        body["fare"] = os.environ.get(FARE_VARIABLE, "Y")


def _registration(body: dict[str, Any]) -> None:
    from flightbook.identity.passwords import WeakPasswordError, check_password

    password, email, name = body.get("password"), body.get("email"), body.get("name")
    if not isinstance(password, str):
        return
    context = [part for part in (str(email).split("@")[0], str(name)) if part]
    try:
        check_password(password, context=context)
    except WeakPasswordError:
        body["password"] = f"fuzzed passphrase {uuid.uuid4().hex}"[: max(len(password), 30)]


def _fresh_idempotency_key(headers: MutableMapping[str, Any]) -> None:
    """A valid key (1-200 characters) made unused; an invalid one stays as generated."""
    key = headers.get(IDEMPOTENCY_KEY)
    if isinstance(key, str) and 1 <= len(key) <= MAX_KEY_LENGTH:
        headers[IDEMPOTENCY_KEY] = str(uuid.uuid4())


@schemathesis.hook
def before_call(context: Any, case: Any, **kwargs: Any) -> None:
    if case.method.upper() != "POST":
        return
    if case.path == "/bookings" and isinstance(case.headers, MutableMapping):
        # In every mode: a negative case the server accepts (say, for an extra header)
        # stores its key, which a later positive case must not meet with another body.
        _fresh_idempotency_key(case.headers)
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive or not isinstance(case.body, dict):
        return
    if case.path == "/flights":
        _flight(case.body)
    elif case.path == "/bookings":
        _booking(case.body)
    elif case.path == "/auth/register":
        _registration(case.body)
