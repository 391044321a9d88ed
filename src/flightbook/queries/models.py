"""What the query API answers, and how a read-model document becomes it.

The shapes are those of DESIGN.md "HTTP contract"; the documents those of
``docs/read-model-shapes.md``. A response is the public part of its document (internal
fields such as ``_v``, ``_pos``, ``reached`` and the fare's ``held``/``sold`` stay in the
database). The ``*_from_document`` functions are the one place that knows both shapes.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal, get_args
from uuid import UUID

import msgspec

from flightbook.eventstore.pii import ERASED

__all__ = (
    "ERASED",
    "FINAL_STATUSES",
    "UNFINISHED_STATUSES",
    "BookingPage",
    "BookingView",
    "FareLoad",
    "FareView",
    "FlightPage",
    "FlightView",
    "FunnelDay",
    "FunnelReport",
    "LoadFactorReport",
    "Money",
    "PassengerView",
    "SalesDay",
    "SalesPage",
    "StatusChange",
    "StatusEvent",
    "StatusPath",
    "StatusStep",
    "booking_from_document",
    "flight_from_document",
    "funnel_from_document",
    "funnel_totals",
    "load_factor_from_documents",
    "sales_from_document",
    "status_path_from_document",
    "status_path_from_hash",
    "with_seats_left",
)


BookingStatusName = Literal[
    "REQUESTED", "SEATS_HELD", "PAYMENT_AUTHORIZED", "CONFIRMED", "REJECTED", "CANCELLED"
]
FlightStatusName = Literal["SCHEDULED", "CANCELLED"]
UtcDateTime = Annotated[dt.datetime, msgspec.Meta(tz=True, description="RFC 3339, UTC")]
Iata = Annotated[str, msgspec.Meta(pattern="^[A-Z]{3}$", description="IATA airport code")]
Cursor = Annotated[
    str | None,
    msgspec.Meta(description="Pass as ``cursor`` to get the next page; null on the last page"),
]


class Money(msgspec.Struct, frozen=True, kw_only=True):
    """An amount in integer minor units (cents) of one currency."""

    amount: int
    currency: str


class FareView(msgspec.Struct, frozen=True, kw_only=True):
    code: str
    cabin: str
    price: Money
    seats_left: int


class FlightView(msgspec.Struct, frozen=True, kw_only=True):
    """A flight as searched: ``GET /flights`` items and ``GET /flights/{id}``."""

    flight_id: UUID
    flight_number: str
    origin: Iata
    destination: Iata
    departure: UtcDateTime
    arrival: UtcDateTime
    status: FlightStatusName
    fares: list[FareView]


class FlightPage(msgspec.Struct, frozen=True, kw_only=True):
    items: list[FlightView]
    next_cursor: Cursor = None


class PassengerView(msgspec.Struct, frozen=True, kw_only=True):
    """A passenger; both fields read ``"[erased]"`` once the customer's data was erased."""

    name: str
    email: str | None


class BookingView(msgspec.Struct, frozen=True, kw_only=True):
    """A booking as its customer, an agent or an auditor sees it."""

    booking_id: UUID
    customer_id: str
    flight_id: UUID
    fare: str
    status: BookingStatusName
    passengers: list[PassengerView]
    price: Money
    created_at: UtcDateTime
    updated_at: UtcDateTime
    reason: str | None = None
    """Why it was rejected or cancelled (``NO_SEATS``, ``CUSTOMER``...), else null."""
    refund: Money | None = None
    """What a cancellation refunded, else null."""
    personal_data_erased: bool = False
    """The customer's personal data was erased: every passenger field reads ``"[erased]"``."""


class BookingPage(msgspec.Struct, frozen=True, kw_only=True):
    items: list[BookingView]
    next_cursor: Cursor = None


class SalesDay(msgspec.Struct, frozen=True, kw_only=True):
    """Sales of one route on one day (the day the bookings were made, UTC)."""

    date: dt.date
    origin: str
    destination: str
    bookings_confirmed: int
    seats_sold: int
    revenue: Money
    cancellations: int
    refunds: Money


class SalesPage(msgspec.Struct, frozen=True, kw_only=True):
    items: list[SalesDay]
    next_cursor: Cursor = None


class FareLoad(msgspec.Struct, frozen=True, kw_only=True):
    fare: str
    seats: int
    sold: int
    held: int
    load_factor: float
    """``sold / seats``, 0..1."""


class LoadFactorReport(msgspec.Struct, frozen=True, kw_only=True):
    """How full a flight is, per fare class and overall."""

    flight_id: UUID
    flight_number: str
    date: dt.date
    seats: int
    sold: int
    held: int
    load_factor: float
    fares: list[FareLoad]


class FunnelDay(msgspec.Struct, frozen=True, kw_only=True):
    """How many bookings made on ``date`` reached each status (rejected, cancelled: by reason)."""

    date: dt.date
    requested: int = 0
    seats_held: int = 0
    payment_authorized: int = 0
    confirmed: int = 0
    rejected: dict[str, int] = msgspec.field(default_factory=dict)
    cancelled: dict[str, int] = msgspec.field(default_factory=dict)


class FunnelReport(msgspec.Struct, frozen=True, kw_only=True):
    items: list[FunnelDay]
    """One per day that had bookings, oldest first."""
    totals: FunnelDay
    """The sum over the period (its ``date`` is the period's first day)."""


# -- documents -> responses -----------------------------------------------------------------


def _utc(value: object) -> dt.datetime:
    """A stored time as an aware UTC datetime (BSON dates come back naive without tz_aware)."""
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    if not isinstance(value, dt.datetime):
        raise TypeError(f"not a time: {value!r}")
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC)


def _money(value: Mapping[str, Any]) -> Money:
    return Money(amount=int(value["amount"]), currency=str(value["currency"]))


def _date(value: object) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    return dt.date.fromisoformat(str(value))


def flight_from_document(doc: Mapping[str, Any]) -> FlightView:
    """A ``flights_v<N>`` document as the API shows it."""
    return FlightView(
        flight_id=UUID(str(doc["flight_id"])),
        flight_number=str(doc["flight_number"]),
        origin=str(doc["origin"]),
        destination=str(doc["destination"]),
        departure=_utc(doc["departure"]),
        arrival=_utc(doc["arrival"]),
        status=doc["status"],
        fares=[
            FareView(
                code=str(fare["code"]),
                cabin=str(fare["cabin"]),
                price=_money(fare["price"]),
                seats_left=max(0, int(fare.get("seats_left", 0))),
            )
            for fare in doc.get("fares", ())
        ],
    )


def with_seats_left(flight: FlightView, seats_left: Mapping[str, int]) -> FlightView:
    """``flight`` with the seats left of the fares found in ``seats_left`` (by fare code)."""
    if not seats_left:
        return flight
    fares = [
        msgspec.structs.replace(fare, seats_left=max(0, seats_left[fare.code]))
        if fare.code in seats_left
        else fare
        for fare in flight.fares
    ]
    return msgspec.structs.replace(flight, fares=fares)


def _passenger(value: object) -> PassengerView:
    # Documents hold {name, email}; older ones held a plain "[erased]"-style string.
    if isinstance(value, Mapping):
        name = value.get("name")
        email = value.get("email")
        return PassengerView(
            name=str(name) if name is not None else ERASED,
            email=str(email) if email is not None else None,
        )
    return PassengerView(name=str(value) if value else ERASED, email=None)


def booking_from_document(doc: Mapping[str, Any]) -> BookingView:
    """A ``bookings_v<N>`` document as the API shows it."""
    refund = doc.get("refund")
    reason = doc.get("reason")
    return BookingView(
        booking_id=UUID(str(doc["booking_id"])),
        customer_id=str(doc["customer_id"]),
        flight_id=UUID(str(doc["flight_id"])),
        fare=str(doc["fare"]),
        status=doc["status"],
        passengers=[_passenger(p) for p in doc.get("passengers") or ()],
        price=_money(doc["price"]),
        created_at=_utc(doc["created_at"]),
        updated_at=_utc(doc["updated_at"]),
        reason=str(reason) if reason is not None else None,
        refund=_money(refund) if refund else None,
        personal_data_erased=doc.get("personal_data_erased") is True,
    )


def sales_from_document(doc: Mapping[str, Any]) -> SalesDay:
    """A ``sales_daily_v<N>`` document."""
    return SalesDay(
        date=_date(doc["date"]),
        origin=str(doc["origin"]),
        destination=str(doc["destination"]),
        bookings_confirmed=int(doc.get("bookings_confirmed", 0)),
        seats_sold=int(doc.get("seats_sold", 0)),
        revenue=_money(doc["revenue"]),
        cancellations=int(doc.get("cancellations", 0)),
        refunds=_money(doc["refunds"]),
    )


def _counts(value: object) -> dict[str, int]:
    if not isinstance(value, Mapping):
        return {}
    return {str(reason): int(n) for reason, n in value.items()}


def funnel_from_document(doc: Mapping[str, Any]) -> FunnelDay:
    """A ``funnel_daily_v<N>`` document."""
    return FunnelDay(
        date=_date(doc["date"]),
        requested=int(doc.get("requested", 0)),
        seats_held=int(doc.get("seats_held", 0)),
        payment_authorized=int(doc.get("payment_authorized", 0)),
        confirmed=int(doc.get("confirmed", 0)),
        rejected=_counts(doc.get("rejected")),
        cancelled=_counts(doc.get("cancelled")),
    )


def funnel_totals(days: Sequence[FunnelDay], first_day: dt.date) -> FunnelDay:
    """The sum of ``days`` (dated ``first_day``)."""
    rejected: dict[str, int] = {}
    cancelled: dict[str, int] = {}
    for day in days:
        for reason, n in day.rejected.items():
            rejected[reason] = rejected.get(reason, 0) + n
        for reason, n in day.cancelled.items():
            cancelled[reason] = cancelled.get(reason, 0) + n
    return FunnelDay(
        date=first_day,
        requested=sum(d.requested for d in days),
        seats_held=sum(d.seats_held for d in days),
        payment_authorized=sum(d.payment_authorized for d in days),
        confirmed=sum(d.confirmed for d in days),
        rejected=rejected,
        cancelled=cancelled,
    )


def _ratio(sold: int, seats: int) -> float:
    return round(sold / seats, 4) if seats > 0 else 0.0


def _load_factor(doc: Mapping[str, Any]) -> float:
    stored = doc.get("load_factor")
    if stored is not None:
        return float(stored)
    return _ratio(int(doc.get("sold", 0)), int(doc.get("seats", 0)))


def load_factor_from_documents(docs: Sequence[Mapping[str, Any]]) -> LoadFactorReport | None:
    """The ``load_factor_v<N>`` documents of one flight (one per fare) as one report."""
    if not docs:
        return None
    fares = sorted(
        (
            FareLoad(
                fare=str(doc["fare"]),
                seats=int(doc.get("seats", 0)),
                sold=int(doc.get("sold", 0)),
                held=int(doc.get("held", 0)),
                load_factor=_load_factor(doc),
            )
            for doc in docs
        ),
        key=lambda fare: fare.fare,
    )
    first = docs[0]
    seats = sum(f.seats for f in fares)
    sold = sum(f.sold for f in fares)
    return LoadFactorReport(
        flight_id=UUID(str(first["flight_id"])),
        flight_number=str(first.get("flight_number", "")),
        date=_date(first["date"]),
        seats=seats,
        sold=sold,
        held=sum(f.held for f in fares),
        load_factor=_ratio(sold, seats),
        fares=fares,
    )


# -- a booking's statuses, as pushed (GET /bookings/{id}/events) -----------------------------

FINAL_STATUSES: frozenset[str] = frozenset({"CONFIRMED", "REJECTED", "CANCELLED"})
"""Where a booking's stream of statuses ends: the saga's outcome (a later cancellation of a
confirmed booking is read with ``GET /bookings/{id}``)."""
_LIFECYCLE: tuple[str, ...] = get_args(BookingStatusName)
UNFINISHED_STATUSES: tuple[str, ...] = tuple(s for s in _LIFECYCLE if s not in FINAL_STATUSES)
"""The statuses of a booking the saga has not finished yet."""


class StatusStep(msgspec.Struct, frozen=True, kw_only=True):
    """A status a booking reached, and when."""

    status: BookingStatusName
    at: UtcDateTime


class StatusPath(msgspec.Struct, frozen=True, kw_only=True):
    """The statuses a booking reached so far, in the order it reached them."""

    version: int
    """The read model's version of the booking (its ``_v``)."""
    steps: tuple[StatusStep, ...]
    customer_id: str
    """Whose booking it is (who may see it: :func:`~flightbook.queries.service.may_see`)."""


class StatusEvent(msgspec.Struct, frozen=True, kw_only=True):
    """One pushed status change: the ``data`` of a ``status`` event of the stream."""

    booking_id: UUID
    status: BookingStatusName
    at: UtcDateTime
    version: int
    """The read model's version of the booking when this status was read."""
    final: bool


class StatusChange(StatusEvent, frozen=True, kw_only=True, tag_field="type", tag="status"):
    """One message of ``WebSocket /ws/bookings``: a status one of the caller's bookings reached."""

    seq: int
    """Counts the booking's statuses (1 = ``REQUESTED``); ``since=<booking_id>:<seq>`` resumes
    after it."""


def status_path_from_document(doc: Mapping[str, Any]) -> StatusPath:
    """The ``reached`` map of a ``bookings_v<N>`` document as the statuses in their order."""
    return _status_path(doc.get("reached") or {}, doc.get("_v", 0), doc.get("customer_id"))


def status_path_from_hash(raw: Mapping[str, str]) -> StatusPath | None:
    """The same from a ``booking:<id>`` hash; None for a hash without them (an older one)."""
    if "customer_id" not in raw or "_v" not in raw:
        return None
    reached = {key[3:]: value for key, value in raw.items() if key.startswith("at:")}
    return _status_path(reached, raw["_v"], raw["customer_id"])


def _status_path(reached: Mapping[str, Any], version: object, customer_id: object) -> StatusPath:
    steps = [
        StatusStep(status=status, at=_utc(reached[status]))  # type: ignore[arg-type]
        for status in _LIFECYCLE
        if reached.get(status) is not None
    ]
    steps.sort(key=lambda step: (step.at, _LIFECYCLE.index(step.status)))
    return StatusPath(
        version=int(str(version)), steps=tuple(steps), customer_id=str(customer_id or "")
    )
