"""Value objects and validation rules of the domain.

Build values from untrusted input with their ``create`` (or ``from_dict``) class
methods: they validate and raise :class:`InvalidValueError` naming the offending
field, under a caller-given prefix (``"passengers[0]"``, ``"fares[2]"``) so that an
error points at the exact place in a request. The plain constructors do not
validate: they are for data already known to be valid, such as values rebuilt
from stored events, which must replay even after a rule becomes stricter.
None of these types goes into an event: events carry primitive fields.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import msgspec

from flightbook.domain.errors import CurrencyMismatchError, InvalidValueError

__all__ = (
    "CURRENCY_PATTERN",
    "EMAIL_PATTERN",
    "FARE_CODE_PATTERN",
    "FLIGHT_NUMBER_PATTERN",
    "IATA_PATTERN",
    "MAX_EMAIL_LENGTH",
    "MAX_NAME_LENGTH",
    "NAME_PATTERN",
    "TEXT_PATTERN",
    "Cabin",
    "Fare",
    "Money",
    "Passenger",
    "check_schedule",
    "fare_code",
    "flight_number",
    "iata_code",
    "utc_datetime",
)

# Every pattern here is anchored (``^...$``) and written in the subset of regular
# expressions that Python and ECMA-262 (JSON Schema, the OpenAPI documents) read alike:
# character classes spelled out with \x and \u escapes, no \s, no \w, no flags. The
# command API's request schema states the same strings, so what the documents promise is
# what the server checks.

IATA_PATTERN = r"^[A-Z]{3}$"
"""An IATA airport code: three capital letters."""
CURRENCY_PATTERN = r"^[A-Z]{3}$"
"""An ISO 4217 currency code: three capital letters."""
FARE_CODE_PATTERN = re.compile(r"^[A-Z][A-Z0-9]{0,7}$")
"""A fare class code: an uppercase letter, then up to 7 uppercase letters or digits."""
FLIGHT_NUMBER_PATTERN = re.compile(r"^[A-Z0-9]{2}[0-9]{1,4}[A-Z]?$")
"""A flight number: 2-character airline designator, 1-4 digits, optional suffix letter."""

_CONTROL = r"\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069"
"""C0 and C1 controls (NUL, ESC of ANSI escapes, CR, LF...), DEL, line and paragraph
separators, and the bidirectional embeddings, overrides and isolates."""
_BLANK = r"\x20\xa0\u1680\u2000-\u200a\u202f\u205f\u3000"
"""The spaces that are not controls: what ``str.strip`` trims besides controls."""
_INVISIBLE = (
    r"\xad\u034f\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f\u2060-\u2064"
    r"\u206a-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0"
)
"""Characters that show nothing: zero-width spaces and joiners, marks, fillers, BOM."""
_TEXT = f"[^{_CONTROL}]"
_UNSEEN = f"[{_BLANK}{_INVISIBLE}]"
_VISIBLE = f"[^{_CONTROL}{_BLANK}{_INVISIBLE}]"
_LABEL = f"[^@.{_CONTROL}{_BLANK}{_INVISIBLE}]+"

TEXT_PATTERN = f"^{_UNSEEN}*{_VISIBLE}{_TEXT}*$"
"""Free text (a reason): no control character, and at least one visible character.

(Written so that no two parts can match the same character: linear time, no backtracking.)"""
NAME_PATTERN = TEXT_PATTERN
"""A passenger's name: no control character (NUL, ANSI escapes...), at least one visible
character (not blank, not zero-width only). Surrounding blanks are trimmed."""
EMAIL_PATTERN = (
    f"^[{_BLANK}]*[^@{_CONTROL}{_BLANK}{_INVISIBLE}]+@{_LABEL}(?:\\.{_LABEL})+[{_BLANK}]*$"
)
"""An email address, deliberately simple: one ``@``, a non-empty local part, a dotted
domain with non-empty labels, no blank, control or invisible character inside.
Surrounding blanks are trimmed."""

MAX_NAME_LENGTH = 100
MAX_EMAIL_LENGTH = 254

_IATA = re.compile(IATA_PATTERN)
_CURRENCY = re.compile(CURRENCY_PATTERN)
_NAME = re.compile(NAME_PATTERN)
_EMAIL = re.compile(EMAIL_PATTERN)


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _require_int(value: object, field: str, *, minimum: int, what: str) -> int:
    # bool is an int subclass, but True is not a seat count.
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise InvalidValueError(field, f"{field} must be {what}")
    return value


def _require_bool(value: object, field: str) -> bool:
    if not isinstance(value, bool):
        raise InvalidValueError(field, f"{field} must be a boolean")
    return value


def _require_str(value: object, field: str) -> str:
    if not isinstance(value, str):
        raise InvalidValueError(field, f"{field} must be a string")
    return value


def iata_code(value: object, field: str) -> str:
    """Return ``value`` if it is an IATA airport code (3 letters A-Z)."""
    text = _require_str(value, field)
    if not _IATA.fullmatch(text):
        raise InvalidValueError(field, f"{field} must be a 3-letter IATA code, got {text!r}")
    return text


def fare_code(value: object, field: str = "fare") -> str:
    """Return ``value`` if it is a fare class code such as ``"Y"`` or ``"J2"``."""
    text = _require_str(value, field)
    if not FARE_CODE_PATTERN.fullmatch(text):
        raise InvalidValueError(
            field, f"{field} must be an uppercase letter then up to 7 letters or digits"
        )
    return text


def flight_number(value: object, field: str = "flight_number") -> str:
    """Return ``value`` if it is a flight number such as ``"FB101"`` or ``"BA117A"``."""
    text = _require_str(value, field)
    if not FLIGHT_NUMBER_PATTERN.fullmatch(text):
        raise InvalidValueError(
            field, f"{field} must be a 2-character airline code, 1-4 digits and an optional letter"
        )
    return text


def utc_datetime(value: object, field: str) -> datetime:
    """Return ``value`` converted to UTC; it must be a timezone-aware datetime."""
    if not isinstance(value, datetime):
        raise InvalidValueError(field, f"{field} must be a datetime")
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidValueError(field, f"{field} must be timezone-aware")
    return value.astimezone(UTC)


def check_schedule(
    departure: datetime,
    arrival: datetime,
    *,
    departure_field: str = "departure",
    arrival_field: str = "arrival",
) -> tuple[datetime, datetime]:
    """Return both times in UTC if they are aware and arrival is strictly after departure."""
    departs = utc_datetime(departure, departure_field)
    arrives = utc_datetime(arrival, arrival_field)
    if arrives <= departs:
        raise InvalidValueError(arrival_field, f"{arrival_field} must be after {departure_field}")
    return departs, arrives


class Cabin(StrEnum):
    ECONOMY = "economy"
    PREMIUM_ECONOMY = "premium_economy"
    BUSINESS = "business"
    FIRST = "first"


_CABINS = frozenset(cabin.value for cabin in Cabin)


def _cabin(value: object, field: str) -> Cabin:
    if isinstance(value, str) and value in _CABINS:
        return Cabin(value)
    raise InvalidValueError(field, f"{field} must be one of {', '.join(sorted(_CABINS))}")


def _check_money(amount: object, currency: object, prefix: str) -> tuple[int, str]:
    checked_amount = _require_int(
        amount, _join(prefix, "amount"), minimum=0, what="a non-negative integer (minor units)"
    )
    if not isinstance(currency, str) or not _CURRENCY.fullmatch(currency):
        raise InvalidValueError(_join(prefix, "currency"), "currency must be 3 uppercase letters")
    return checked_amount, currency


class Money(msgspec.Struct, frozen=True):
    """A non-negative amount in integer minor units (cents) of one currency."""

    amount: int
    currency: str

    @classmethod
    def create(cls, amount: object, currency: object, *, field: str = "price") -> Money:
        """Validate and build; errors name ``<field>.amount`` / ``<field>.currency``."""
        return cls(*_check_money(amount, currency, field))

    @classmethod
    def zero(cls, currency: str) -> Money:
        return cls(0, currency)

    def _same_currency(self, other: Money) -> None:
        if other.currency != self.currency:
            raise CurrencyMismatchError(self.currency, other.currency)

    def add(self, other: Money) -> Money:
        self._same_currency(other)
        return Money(self.amount + other.amount, self.currency)

    def __add__(self, other: Money) -> Money:
        return self.add(other)

    def multiply(self, factor: int) -> Money:
        """Return this amount times a non-negative integer (e.g. a passenger count)."""
        checked = _require_int(factor, "factor", minimum=0, what="a non-negative integer")
        return Money(self.amount * checked, self.currency)

    def __lt__(self, other: Money) -> bool:
        self._same_currency(other)
        return self.amount < other.amount

    def __le__(self, other: Money) -> bool:
        self._same_currency(other)
        return self.amount <= other.amount

    def __gt__(self, other: Money) -> bool:
        self._same_currency(other)
        return self.amount > other.amount

    def __ge__(self, other: Money) -> bool:
        self._same_currency(other)
        return self.amount >= other.amount

    def to_dict(self) -> dict[str, int | str]:
        return {"amount": self.amount, "currency": self.currency}

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, field: str = "price") -> Money:
        return cls.create(data.get("amount"), data.get("currency"), field=field)


def _check_fare(
    code: object,
    price: object,
    seats: object,
    refundable: object,
    overbooking: object,
    prefix: str,
) -> tuple[str, Money, int, bool, int]:
    checked_code = fare_code(code, _join(prefix, "code"))
    if not isinstance(price, Money):
        raise InvalidValueError(_join(prefix, "price"), "price must be Money")
    checked_seats = _require_int(
        seats, _join(prefix, "seats"), minimum=1, what="a positive integer"
    )
    checked_refundable = _require_bool(refundable, _join(prefix, "refundable"))
    checked_overbooking = _require_int(
        overbooking, _join(prefix, "overbooking"), minimum=0, what="a non-negative integer"
    )
    return checked_code, price, checked_seats, checked_refundable, checked_overbooking


class Fare(msgspec.Struct, frozen=True, kw_only=True):
    """A fare class of a flight: its price and its seats (plus an overbooking allowance)."""

    code: str
    cabin: Cabin
    price: Money
    seats: int
    refundable: bool
    overbooking: int = 0

    @classmethod
    def create(
        cls,
        *,
        code: object,
        cabin: object,
        price: Money,
        seats: object,
        refundable: object,
        overbooking: object = 0,
        field: str = "fare",
    ) -> Fare:
        """Validate and build; errors name ``<field>.code``, ``<field>.seats``..."""
        checked_cabin = _cabin(cabin, _join(field, "cabin"))
        code_, price_, seats_, refundable_, overbooking_ = _check_fare(
            code, price, seats, refundable, overbooking, field
        )
        return cls(
            code=code_,
            cabin=checked_cabin,
            price=price_,
            seats=seats_,
            refundable=refundable_,
            overbooking=overbooking_,
        )

    @property
    def capacity(self) -> int:
        """Seats that may be held or sold: the seats plus the overbooking allowance."""
        return self.seats + self.overbooking

    def to_dict(self) -> dict[str, str | int | bool]:
        """Flat primitives, as stored in events."""
        return {
            "code": self.code,
            "cabin": self.cabin.value,
            "price_amount": self.price.amount,
            "currency": self.price.currency,
            "seats": self.seats,
            "refundable": self.refundable,
            "overbooking": self.overbooking,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, field: str = "fare") -> Fare:
        return cls.create(
            code=data.get("code"),
            cabin=data.get("cabin"),
            price=Money.create(
                data.get("price_amount"), data.get("currency"), field=_join(field, "price")
            ),
            seats=data.get("seats"),
            refundable=data.get("refundable"),
            overbooking=data.get("overbooking", 0),
            field=field,
        )


def _check_passenger(name: object, email: object, prefix: str) -> tuple[str, str]:
    """The name and email trimmed and in NFC, if they follow the rules (raw, before trimming)."""
    name_field = _join(prefix, "name")
    raw_name = _require_str(name, name_field)
    if not _NAME.fullmatch(raw_name):
        raise InvalidValueError(
            name_field,
            f"{name_field} must hold a visible character and no control character",
        )
    checked_name = _normal(raw_name)
    if len(checked_name) > MAX_NAME_LENGTH:
        raise InvalidValueError(
            name_field, f"{name_field} must be at most {MAX_NAME_LENGTH} characters"
        )
    email_field = _join(prefix, "email")
    raw_email = _require_str(email, email_field)
    checked_email = _normal(raw_email)
    if not _EMAIL.fullmatch(raw_email) or len(checked_email) > MAX_EMAIL_LENGTH:
        raise InvalidValueError(email_field, f"{email_field} must look like name@example.com")
    return checked_name, checked_email


def _normal(text: str) -> str:
    """Trimmed of surrounding blanks, in Unicode normal form C (one spelling per name)."""
    return unicodedata.normalize("NFC", text.strip())


class Passenger(msgspec.Struct, frozen=True, kw_only=True):
    """A passenger's personal data. It is sealed by the application before it is stored."""

    name: str
    email: str

    @classmethod
    def create(cls, *, name: object, email: object, field: str = "passenger") -> Passenger:
        """Validate, trim and normalise (NFC); errors name ``<field>.name``..."""
        checked_name, checked_email = _check_passenger(name, email, field)
        return cls(name=checked_name, email=checked_email)

    @classmethod
    def at(cls, index: int, *, name: object, email: object) -> Passenger:
        """Build the ``index``-th passenger of a request (errors name ``passengers[i].…``)."""
        return cls.create(name=name, email=email, field=f"passengers[{index}]")

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "email": self.email}

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, field: str = "passenger") -> Passenger:
        return cls.create(name=data.get("name"), email=data.get("email"), field=field)
