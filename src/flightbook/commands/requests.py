"""The bodies the command API accepts: frozen msgspec Structs, decoded by Litestar.

They check the *shape* of a request: types, required and unknown fields (an unknown
field is refused, not ignored, so a typo cannot silently drop data), string lengths
and numeric bounds. A failure is a ``400`` naming the field. The *rules* of the
business (IATA codes, fare codes, e-mail addresses, arrival after departure) are the
domain's value objects' job, applied by :class:`flightbook.commands.service.CommandService`
and answered with ``422``. The length limits here are generous caps against abuse,
wider than the domain's rules, so a value the rules refuse still gets the rule's message.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from uuid import UUID

import msgspec

from flightbook.domain.booking import MAX_PASSENGERS
from flightbook.domain.subject import ErasureReason
from flightbook.domain.values import (
    CURRENCY_PATTERN,
    EMAIL_PATTERN,
    FARE_CODE_PATTERN,
    FLIGHT_NUMBER_PATTERN,
    IATA_PATTERN,
    MAX_EMAIL_LENGTH,
    MAX_NAME_LENGTH,
    NAME_PATTERN,
    TEXT_PATTERN,
    Cabin,
)

__all__ = (
    "DEFAULT_CANCELLATION_REASON",
    "MAX_AMOUNT",
    "MAX_FARES",
    "BookingRequest",
    "ErasureRequest",
    "FareRequest",
    "FlightCancellationRequest",
    "FlightRequest",
    "MoneyRequest",
    "PassengerRequest",
)

MAX_FARES = 26
"""Fare classes a flight may have (one per letter)."""

MAX_AMOUNT = 10_000_000_000
"""Minor units: a price above a hundred million (major units) is a mistake, not a fare."""

DEFAULT_CANCELLATION_REASON = "cancelled by operations"

# Each rule of the domain that a JSON Schema can state is stated here, with the domain's
# own pattern, so that a body the OpenAPI document calls valid passes the domain's checks
# too (schemathesis' positive_data_acceptance). What a schema cannot state stays a 422:
# arrival after departure, origin differs from destination, departure in the future,
# unique fare codes, an existing flight and fare.
AirportCode = Annotated[
    str, msgspec.Meta(pattern=IATA_PATTERN, description="IATA airport code", examples=["LHR"])
]
FareCode = Annotated[
    str,
    msgspec.Meta(
        pattern=FARE_CODE_PATTERN.pattern,
        description="Fare class: an uppercase letter, then up to 7 uppercase letters or digits",
        examples=["Y"],
    ),
]
AwareDatetime = Annotated[
    datetime,
    msgspec.Meta(tz=True, description="RFC 3339 with a UTC offset, e.g. 2026-12-24T10:00:00Z"),
]
Text = Annotated[
    str,
    msgspec.Meta(
        pattern=TEXT_PATTERN,
        description="Text with a visible character and no control character",
    ),
]


class MoneyRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """An amount of money in integer minor units (cents): never a float."""

    amount: Annotated[int, msgspec.Meta(ge=0, le=MAX_AMOUNT, examples=[45000])]
    currency: Annotated[
        str,
        msgspec.Meta(pattern=CURRENCY_PATTERN, description="ISO 4217 code", examples=["EUR"]),
    ]


class FareRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One fare class of a flight to schedule."""

    code: FareCode
    """Unique among the flight's fares (else 422)."""
    cabin: Cabin
    price: MoneyRequest
    seats: Annotated[int, msgspec.Meta(ge=1, le=10_000)]
    refundable: bool
    overbooking: Annotated[int, msgspec.Meta(ge=0, le=10_000)] = 0
    """Seats that may be sold beyond ``seats`` (0 unless operations decide otherwise)."""


class FlightRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``POST /flights``: schedule a flight with its fare classes.

    Rules a schema cannot state (a 422 naming the field): ``destination`` differs from
    ``origin``, ``departure`` is in the future, ``arrival`` is after ``departure``, fare
    codes are unique.
    """

    flight_number: Annotated[
        str,
        msgspec.Meta(
            pattern=FLIGHT_NUMBER_PATTERN.pattern,
            description="Airline designator (2 characters), 1-4 digits, optional letter",
            examples=["FB101"],
        ),
    ]
    origin: AirportCode
    destination: Annotated[
        str,
        msgspec.Meta(
            pattern=IATA_PATTERN,
            description="IATA airport code, other than origin",
            examples=["JFK"],
        ),
    ]
    departure: AwareDatetime
    arrival: AwareDatetime
    fares: Annotated[list[FareRequest], msgspec.Meta(min_length=1, max_length=MAX_FARES)]


class PassengerRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A passenger's personal data (sealed before it is stored)."""

    name: Annotated[
        str,
        msgspec.Meta(
            max_length=MAX_NAME_LENGTH,
            pattern=NAME_PATTERN,
            description=(
                "A visible character and no control character; trimmed and stored in Unicode NFC"
            ),
            examples=["Ada Lovelace"],
        ),
    ]
    email: Annotated[
        str,
        msgspec.Meta(
            max_length=MAX_EMAIL_LENGTH,
            pattern=EMAIL_PATTERN,
            description="name@domain.tld; trimmed and stored in Unicode NFC",
            examples=["ada@example.com"],
        ),
    ]


class BookingRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``POST /bookings``: ask for seats of one fare on one flight.

    Rules a schema cannot state (a 422 naming the field): the flight exists and has the fare.
    """

    flight_id: UUID
    fare: FareCode
    passengers: Annotated[
        list[PassengerRequest], msgspec.Meta(min_length=1, max_length=MAX_PASSENGERS)
    ]
    payment_token: Annotated[Text, msgspec.Meta(max_length=200, examples=["tok_ok"])]


class FlightCancellationRequest(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True
):
    """``POST /flights/{id}/cancel`` (optional body): why the flight is cancelled."""

    reason: Annotated[Text, msgspec.Meta(max_length=500)] = DEFAULT_CANCELLATION_REASON


class ErasureRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``POST /customers/{customer_id}/erasure``: why the customer's personal data goes.

    A code, never free text: the reason is stored in the event log for good.
    """

    reason: Annotated[
        ErasureReason,
        msgspec.Meta(
            description="customer_request (GDPR Art. 17), retention, or legal_order",
            examples=["customer_request"],
        ),
    ]
