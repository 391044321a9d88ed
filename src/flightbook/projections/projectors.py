"""The projectors: pure functions from the current read-model document and one envelope to the next.

No I/O here (STYLE G7). A projector folds one aggregate's events into its document: the
booking projector builds ``bookings_v<N>`` documents, the flight projector ``flights_v<N>``
documents. What the Redis keys and the analytics collections hold is *derived* from those
documents by further pure functions, so that recomputing them is exact and idempotent.

Two lookups the booking document needs and an envelope does not carry (the flight's route,
the passengers' plaintext) come through :class:`BookingLookups`; given the same answers,
the projector gives the same document.

Times are cut to whole milliseconds, the precision MongoDB keeps, so that a document built
in memory (``flightbook audit verify``) equals the stored one.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict
from typing import TYPE_CHECKING, Any, Protocol

from flightbook.contracts import payloads
from flightbook.contracts.readmodels import search_key
from flightbook.eventstore.pii import ERASED

if TYPE_CHECKING:
    from collections.abc import Iterable

    from flightbook.contracts.envelope import Envelope

__all__ = (
    "ANALYTICS_BOOKING_FIELDS",
    "STATUSES",
    "BookingLookups",
    "Document",
    "ProjectionError",
    "booking_hash",
    "erased_booking",
    "evolve_booking",
    "evolve_flight",
    "funnel_daily_documents",
    "load_factor_documents",
    "ms",
    "sales_daily_documents",
    "search_keys",
    "seats_hash",
    "skip_private",
)

Document = dict[str, Any]

STATUSES = ("REQUESTED", "SEATS_HELD", "PAYMENT_AUTHORIZED", "CONFIRMED", "REJECTED", "CANCELLED")

ANALYTICS_BOOKING_FIELDS = (
    "date",
    "route",
    "status",
    "reason",
    "reached",
    "passenger_count",
    "price",
    "refund",
)
"""The fields of a booking document the analytics are computed from."""


class ProjectionError(ValueError):
    """The envelope cannot be applied to the document (a poison message, not a retry)."""


class BookingLookups(Protocol):
    """What a booking document needs beyond its events."""

    def route(self, flight_id: str) -> tuple[str, str] | None:
        """``(origin, destination)`` of a flight, or None if it is unknown."""
        ...

    def passengers(self, customer_id: str, sealed: str, count: int) -> list[dict[str, str]]:
        """The passengers' ``{name, email}``, opened from the sealed text."""
        ...

    def forget(self, customer_id: str) -> None:
        """Drop whatever this process keeps of the customer's keys (they were erased)."""
        ...


def ms(moment: dt.datetime) -> dt.datetime:
    """``moment`` in UTC, cut to whole milliseconds (what MongoDB stores)."""
    utc = moment.astimezone(dt.UTC)
    return utc.replace(microsecond=utc.microsecond // 1000 * 1000)


def _money(amount: int, currency: str) -> dict[str, Any]:
    return {"amount": amount, "currency": currency}


# -- bookings -------------------------------------------------------------------------------


def evolve_booking(doc: Document | None, envelope: Envelope, lookups: BookingLookups) -> Document:
    """The ``bookings_v<N>`` document after ``envelope`` (the next version of its booking).

    Raises:
        ProjectionError: the event does not fit the document (not a booking event, a
            creation for an existing booking, a change for a missing one).
    """
    payload = envelope.payload
    at = ms(envelope.occurred_at)
    if isinstance(payload, payloads.BookingRequested):
        if doc is not None:
            raise ProjectionError(f"booking {envelope.aggregate_id} is already requested")
        booking_id = str(envelope.aggregate_id)
        flight_id = str(payload.flight_id)
        route = lookups.route(flight_id)
        new: Document = {
            "_id": booking_id,
            "booking_id": booking_id,
            "customer_id": payload.customer_id,
            "flight_id": flight_id,
            "fare": payload.fare,
            "status": payload.status,
            "passengers": lookups.passengers(
                payload.customer_id, payload.passengers, payload.passenger_count
            ),
            "passenger_count": payload.passenger_count,
            "price": _money(payload.price.amount, payload.price.currency),
            "refundable": payload.refundable,
            "channel": payload.channel,
            "reason": None,
            "refund": None,
            "hold_expires_at": None,
            "payment_id": None,
            "cancelled_by": None,
            "created_at": at,
            "updated_at": at,
            "reached": dict.fromkeys(STATUSES),
            "date": at.date().isoformat(),
            "route": f"{route[0]}-{route[1]}" if route else None,
        }
        new["reached"]["REQUESTED"] = at
        return _versioned(new, envelope)
    if doc is None:
        raise ProjectionError(f"{envelope.type} for booking {envelope.aggregate_id}, not requested")
    if isinstance(payload, payloads.PassengersErased):
        return _versioned(erased_booking(doc, at), envelope)
    new = dict(doc)
    new["reached"] = dict(doc.get("reached") or dict.fromkeys(STATUSES))
    if isinstance(payload, payloads.BookingSeatsHeld):
        new["hold_expires_at"] = ms(payload.hold_expires_at)
    elif isinstance(payload, payloads.BookingPaymentAuthorized):
        new["payment_id"] = str(payload.payment_id)
    elif isinstance(payload, payloads.BookingConfirmed):
        pass
    elif isinstance(payload, payloads.BookingRejected):
        new["reason"] = payload.reason
    elif isinstance(payload, payloads.BookingCancelled):
        new["reason"] = payload.reason
        new["cancelled_by"] = payload.cancelled_by
        new["refund"] = _money(payload.refund_amount, str(doc["price"]["currency"]))
    else:
        raise ProjectionError(f"{envelope.type} is not a booking event")
    new["status"] = payload.status
    if new["reached"].get(payload.status) is None:
        new["reached"][payload.status] = at
    new["updated_at"] = at
    return _versioned(new, envelope)


def erased_booking(doc: Document, at: dt.datetime) -> Document:
    """The booking document once its personal data was erased (at ``at``).

    Every passenger field reads ``"[erased]"``, one entry per booked passenger whatever the
    document held before (names, ``"[unreadable]"`` or already ``"[erased]"``), so the live
    document and one rebuilt after the erasure (whose passengers open as erased) are equal.
    The status and the times each status was reached stay.
    """
    erased = {"name": ERASED, "email": ERASED}
    return {
        **doc,
        "passengers": [dict(erased) for _ in range(int(doc["passenger_count"]))],
        "personal_data_erased": True,
        "updated_at": at,
    }


def _versioned(doc: Document, envelope: Envelope) -> Document:
    doc["_v"] = envelope.aggregate_version
    doc["_pos"] = envelope.position
    return doc


def skip_private(doc: Document, *, version: int, position: int) -> Document:
    """The document after an event that is not published (it changes nothing visible)."""
    return {**doc, "_v": version, "_pos": position}


def booking_hash(doc: Document) -> dict[str, str]:
    """The Redis ``booking:<id>`` hash of a booking document.

    Besides the version and the status: the customer (an opaque subject id, no personal
    data) and ``at:<STATUS>``, when each status was reached, so that the status push can
    check who may see the booking and send its statuses from Redis alone.
    """
    fields = {
        "_v": str(doc["_v"]),
        "status": str(doc["status"]),
        "customer_id": str(doc["customer_id"]),
    }
    for status, at in (doc.get("reached") or {}).items():
        if isinstance(at, dt.datetime):
            fields[f"at:{status}"] = ms(at).isoformat()
    return fields


# -- flights --------------------------------------------------------------------------------


def _seats_left(fare: Document) -> int:
    return max(0, int(fare["seats"] + fare["overbooking"] - fare["held"] - fare["sold"]))


def evolve_flight(doc: Document | None, envelope: Envelope) -> Document:
    """The ``flights_v<N>`` document after ``envelope`` (the next version of its flight).

    Raises:
        ProjectionError: the event does not fit the document.
    """
    payload = envelope.payload
    at = ms(envelope.occurred_at)
    if isinstance(payload, payloads.FlightScheduled):
        if doc is not None:
            raise ProjectionError(f"flight {envelope.aggregate_id} is already scheduled")
        flight_id = str(envelope.aggregate_id)
        fares: list[Document] = [
            {
                "code": fare.code,
                "cabin": fare.cabin,
                "price": _money(fare.price.amount, fare.price.currency),
                "seats": fare.seats,
                "overbooking": fare.overbooking,
                "refundable": fare.refundable,
                "held": 0,
                "sold": 0,
                "seats_left": 0,
            }
            for fare in payload.fares
        ]
        for fare in fares:
            fare["seats_left"] = _seats_left(fare)
        departure = ms(payload.departure)
        new: Document = {
            "_id": flight_id,
            "flight_id": flight_id,
            "flight_number": payload.flight_number,
            "origin": payload.origin,
            "destination": payload.destination,
            "date": departure.date().isoformat(),
            "departure": departure,
            "arrival": ms(payload.arrival),
            "status": payload.status,
            "fares": fares,
            "cancellation_reason": None,
            "updated_at": at,
        }
        return _versioned(new, envelope)
    if doc is None:
        raise ProjectionError(f"{envelope.type} for flight {envelope.aggregate_id}, not scheduled")
    new = dict(doc)
    new["fares"] = [dict(fare) for fare in doc["fares"]]
    if isinstance(payload, payloads.FlightCancelled):
        new["status"] = payload.status
        new["cancellation_reason"] = payload.reason
    elif isinstance(
        payload,
        (
            payloads.SeatsHeld,
            payloads.HoldConfirmed,
            payloads.HoldReleased,
            payloads.HoldExpired,
            payloads.SoldSeatsReturned,
        ),
    ):
        fare = _fare(new, payload.fare_code, envelope)
        if isinstance(payload, payloads.SeatsHeld):
            fare["held"] += payload.seats
        elif isinstance(payload, payloads.HoldConfirmed):
            fare["held"] -= payload.seats
            fare["sold"] += payload.seats
        elif isinstance(payload, payloads.SoldSeatsReturned):
            fare["sold"] -= payload.seats
        else:  # released or expired
            fare["held"] -= payload.seats
    elif isinstance(payload, payloads.FareChanged):
        fare = _fare(new, payload.fare_code, envelope)
        fare["price"] = _money(payload.price.amount, payload.price.currency)
        fare["seats"] = payload.seats
        fare["overbooking"] = payload.overbooking
    else:
        raise ProjectionError(f"{envelope.type} is not an inventory event")
    for fare in new["fares"]:
        fare["seats_left"] = _seats_left(fare)
    new["updated_at"] = at
    return _versioned(new, envelope)


def _fare(doc: Document, code: str, envelope: Envelope) -> Document:
    for fare in doc["fares"]:
        if fare["code"] == code:
            found: Document = fare
            return found
    raise ProjectionError(f"{envelope.type}: flight {envelope.aggregate_id} has no fare {code!r}")


def seats_hash(doc: Document) -> dict[str, str]:
    """The Redis ``seats:<flight id>`` hash of a flight document."""
    fields = {"_v": str(doc["_v"])}
    for fare in doc["fares"]:
        fields[str(fare["code"])] = str(fare["seats_left"])
    return fields


def search_keys(doc: Document) -> list[str]:
    """The search cache keys a change of this flight invalidates."""
    return [search_key(doc["origin"], doc["destination"], doc["date"])]


# -- analytics (recomputed from documents, never incremented) -------------------------------


def load_factor_documents(flight: Document) -> list[Document]:
    """The ``load_factor_v<N>`` documents of a flight: one per fare."""
    return [
        {
            "_id": f"{flight['flight_id']}:{fare['code']}",
            "flight_id": flight["flight_id"],
            "flight_number": flight["flight_number"],
            "date": flight["date"],
            "fare": fare["code"],
            "seats": fare["seats"],
            "sold": fare["sold"],
            "held": fare["held"],
            "load_factor": round(fare["sold"] / fare["seats"], 4) if fare["seats"] > 0 else 0.0,
        }
        for fare in flight["fares"]
    ]


def sales_daily_documents(bookings: Iterable[Document]) -> list[Document]:
    """The ``sales_daily_v<N>`` documents of every (date, route) the bookings make up.

    Bookings without a route (a flight unknown to the event store) are left out.
    """
    groups: dict[tuple[str, str], list[Document]] = defaultdict(list)
    for booking in bookings:
        if booking.get("route"):
            groups[(booking["date"], booking["route"])].append(booking)
    documents = []
    for (day, route), members in sorted(groups.items()):
        origin, _, destination = route.partition("-")
        revenue: Counter[str] = Counter()
        refunds: Counter[str] = Counter()
        bookings_by_currency: Counter[str] = Counter()
        confirmed = seats = cancellations = 0
        for booking in members:
            currency = str(booking["price"]["currency"])
            bookings_by_currency[currency] += 1
            if (booking.get("reached") or {}).get("CONFIRMED") is not None:
                confirmed += 1
                seats += int(booking["passenger_count"])
                revenue[currency] += int(booking["price"]["amount"])
            if booking["status"] == "CANCELLED":
                cancellations += 1
                refund = booking.get("refund") or {"amount": 0, "currency": currency}
                refunds[str(refund["currency"])] += int(refund["amount"])
        ranked = sorted(bookings_by_currency.items(), key=lambda item: (-item[1], item[0]))
        main = ranked[0][0]  # the currency of most bookings (ties: alphabetical)
        documents.append(
            {
                "_id": f"{day}:{route}",
                "date": day,
                "origin": origin,
                "destination": destination,
                "bookings_confirmed": confirmed,
                "seats_sold": seats,
                "revenue": _money(revenue.get(main, 0), main),
                "cancellations": cancellations,
                "refunds": _money(refunds.get(main, 0), main),
                "revenue_by_currency": dict(sorted(revenue.items())),
                "refunds_by_currency": dict(sorted(refunds.items())),
            }
        )
    return documents


def funnel_daily_documents(bookings: Iterable[Document]) -> list[Document]:
    """The ``funnel_daily_v<N>`` documents of every date the bookings were created on."""
    days: dict[str, list[Document]] = defaultdict(list)
    for booking in bookings:
        days[booking["date"]].append(booking)
    documents = []
    for day, members in sorted(days.items()):
        reached = Counter(
            status
            for booking in members
            for status, at in (booking.get("reached") or {}).items()
            if at is not None
        )
        rejected = Counter(str(b["reason"]) for b in members if b["status"] == "REJECTED")
        cancelled = Counter(str(b["reason"]) for b in members if b["status"] == "CANCELLED")
        documents.append(
            {
                "_id": day,
                "date": day,
                "requested": len(members),
                "seats_held": reached["SEATS_HELD"],
                "payment_authorized": reached["PAYMENT_AUTHORIZED"],
                "confirmed": reached["CONFIRMED"],
                "rejected": dict(sorted(rejected.items())),
                "cancelled": dict(sorted(cancelled.items())),
            }
        )
    return documents
