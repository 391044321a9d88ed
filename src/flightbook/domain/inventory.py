"""The Inventory context: one ``FlightInventory`` aggregate per scheduled flight.

Invariant: for every fare class, seats held plus seats sold never exceed the
fare's seats plus its overbooking allowance.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime  # noqa: TC003 - keep event annotations resolvable at runtime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, NamedTuple
from uuid import UUID

import msgspec
from eventsourcing.domain import Aggregate, event

from flightbook.domain.errors import (
    CapacityBelowCommitmentsError,
    FlightNotBookableError,
    HoldConflictError,
    HoldNotExpiredError,
    IllegalTransitionError,
    InvalidValueError,
    SeatsUnavailableError,
    UnknownFareError,
)
from flightbook.domain.values import (
    Cabin,
    Fare,
    Money,
    check_schedule,
    iata_code,
    utc_datetime,
)
from flightbook.domain.values import flight_number as flight_number_rule

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ("FareAllocation", "FlightInventory", "FlightStatus", "Hold")


class FlightStatus(StrEnum):
    SCHEDULED = "SCHEDULED"
    CANCELLED = "CANCELLED"


class Hold(NamedTuple):
    """Seats held for one booking until ``expires_at``."""

    seats: int
    expires_at: datetime


@dataclass
class FareAllocation:
    """Mutable per-fare state of a flight: the fare and who holds or bought its seats.

    The seat totals are kept beside the maps, so a flight with 10,000 bookings answers
    "how many seats are left" as fast as a new one. Change the maps only through the
    methods below, which keep both in step.
    """

    fare: Fare
    held: dict[UUID, Hold] = field(default_factory=dict)
    sold: dict[UUID, int] = field(default_factory=dict)
    held_seats: int = 0
    sold_seats: int = 0

    @property
    def committed(self) -> int:
        """Seats held or sold."""
        return self.held_seats + self.sold_seats

    def put_hold(self, booking_id: UUID, hold: Hold) -> None:
        self.drop_hold(booking_id)
        self.held[booking_id] = hold
        self.held_seats += hold.seats

    def drop_hold(self, booking_id: UUID) -> None:
        hold = self.held.pop(booking_id, None)
        if hold is not None:
            self.held_seats -= hold.seats

    def sell(self, booking_id: UUID, seats: int) -> None:
        self.drop_hold(booking_id)
        self.unsell(booking_id)
        self.sold[booking_id] = seats
        self.sold_seats += seats

    def unsell(self, booking_id: UUID) -> None:
        seats = self.sold.pop(booking_id, None)
        if seats is not None:
            self.sold_seats -= seats


def _reason(value: object, field_name: str = "reason") -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidValueError(field_name, f"{field_name} must be a non-blank string")
    return value


class FlightInventory(Aggregate):
    """The seats of one scheduled flight, per fare class."""

    class Scheduled(Aggregate.Created):
        flight_number: str
        origin: str
        destination: str
        departure: datetime
        arrival: datetime
        fares: list[dict[str, str | int | bool]]
        """``Fare.to_dict()`` of each fare class."""

    class SeatsHeld(Aggregate.Event):
        booking_id: UUID
        fare_code: str
        seats: int
        expires_at: datetime

    class HoldConfirmed(Aggregate.Event):
        booking_id: UUID
        fare_code: str
        seats: int

    class HoldReleased(Aggregate.Event):
        booking_id: UUID
        fare_code: str
        seats: int
        reason: str

    class HoldExpired(Aggregate.Event):
        booking_id: UUID
        fare_code: str
        seats: int
        expired_at: datetime
        """The hold's deadline (not the moment the expiry was noticed)."""

    class SoldSeatsReturned(Aggregate.Event):
        booking_id: UUID
        fare_code: str
        seats: int
        reason: str

    class FareChanged(Aggregate.Event):
        """The fare's full new terms (not a delta)."""

        fare_code: str
        price_amount: int
        currency: str
        seats: int
        overbooking: int

    class FlightCancelled(Aggregate.Event):
        reason: str

    @event(Scheduled)
    def __init__(
        self,
        flight_number: str,
        origin: str,
        destination: str,
        departure: datetime,
        arrival: datetime,
        fares: list[dict[str, Any]],
    ) -> None:
        self.flight_number = flight_number
        self.origin = origin
        self.destination = destination
        self.departure = departure
        self.arrival = arrival
        self.status = FlightStatus.SCHEDULED
        self.cancellation_reason: str | None = None
        self.fares: dict[str, FareAllocation] = {
            str(data["code"]): FareAllocation(_stored_fare(data)) for data in fares
        }

    # -- commands ---------------------------------------------------------------------------

    @classmethod
    def schedule(
        cls,
        *,
        flight_number: str,
        origin: str,
        destination: str,
        departure: datetime,
        arrival: datetime,
        fares: Sequence[Fare],
    ) -> FlightInventory:
        """Schedule a flight with its fare classes (a random id is given to it)."""
        number = flight_number_rule(flight_number, "flight_number")
        origin = iata_code(origin, "origin")
        destination = iata_code(destination, "destination")
        if destination == origin:
            raise InvalidValueError("destination", "destination must differ from origin")
        departs, arrives = check_schedule(departure, arrival)
        if not fares:
            raise InvalidValueError("fares", "a flight needs at least one fare")
        seen: set[str] = set()
        for index, fare in enumerate(fares):
            if not isinstance(fare, Fare):
                raise InvalidValueError(f"fares[{index}]", "fare must be a Fare")
            if fare.code in seen:
                raise InvalidValueError(f"fares[{index}].code", f"duplicate fare {fare.code!r}")
            seen.add(fare.code)
        return cls(
            flight_number=number,
            origin=origin,
            destination=destination,
            departure=departs,
            arrival=arrives,
            fares=[fare.to_dict() for fare in fares],
        )

    def hold_seats(
        self,
        booking_id: UUID,
        fare_code: str,
        seats: int,
        expires_at: datetime,
        *,
        now: datetime | None = None,
    ) -> None:
        """Hold seats of a fare for a booking until ``expires_at``.

        Idempotent: holding again exactly what the booking already holds (or has
        bought) records nothing. Pass ``now`` to refuse flights that have departed.
        """
        if not isinstance(booking_id, UUID):
            raise InvalidValueError("booking_id", "booking_id must be a UUID")
        self._require_scheduled(now)
        allocation = self._allocation(fare_code)
        if isinstance(seats, bool) or not isinstance(seats, int) or seats <= 0:
            raise InvalidValueError("seats", "seats must be a positive integer")
        deadline = utc_datetime(expires_at, "expires_at")
        existing = self._find_booking(booking_id)
        if existing is not None:
            code, current_seats, _ = existing
            if code == fare_code and current_seats == seats:
                return
            raise HoldConflictError(
                f"booking {booking_id} already has {current_seats} seat(s) of fare {code}"
            )
        available = allocation.fare.capacity - allocation.committed
        if seats > available:
            raise SeatsUnavailableError(fare_code, seats, max(available, 0))
        self._seats_held(booking_id, fare_code, seats, deadline)

    def confirm_hold(self, booking_id: UUID) -> None:
        """Turn a booking's held seats into sold seats (no-op if already sold)."""
        found = self._find_booking(booking_id)
        if found is None:
            raise IllegalTransitionError(
                "seats", "NONE", "SOLD", detail=f"booking {booking_id} holds no seats"
            )
        code, seats, is_sold = found
        if is_sold:
            return
        if self.status is FlightStatus.CANCELLED:
            raise FlightNotBookableError("the flight is cancelled")
        self._hold_confirmed(booking_id, code, seats)

    def release_hold(self, booking_id: UUID, reason: str) -> None:
        """Give a booking's held seats back (no-op if it holds none)."""
        reason = _reason(reason)
        found = self._find_hold(booking_id)
        if found is None:
            return
        code, hold = found
        self._hold_released(booking_id, code, hold.seats, reason)

    def expire_hold(self, booking_id: UUID, now: datetime) -> None:
        """Give back a hold whose deadline has passed (no-op if there is no hold)."""
        moment = utc_datetime(now, "now")
        found = self._find_hold(booking_id)
        if found is None:
            return
        code, hold = found
        if hold.expires_at > moment:
            raise HoldNotExpiredError(
                f"the hold of booking {booking_id} expires at {hold.expires_at.isoformat()}"
            )
        self._hold_expired(booking_id, code, hold.seats, hold.expires_at)

    def return_sold_seats(self, booking_id: UUID, reason: str) -> None:
        """Put a cancelled booking's sold seats back on sale (no-op if it bought none)."""
        reason = _reason(reason)
        for code, allocation in self.fares.items():
            seats = allocation.sold.get(booking_id)
            if seats is not None:
                self._sold_seats_returned(booking_id, code, seats, reason)
                return

    def change_fare(
        self,
        code: str,
        *,
        price: Money | None = None,
        seats: int | None = None,
        overbooking: int | None = None,
    ) -> None:
        """Change a fare's price and/or capacity; records nothing if nothing changes."""
        if self.status is FlightStatus.CANCELLED:
            raise FlightNotBookableError("the flight is cancelled")
        allocation = self._allocation(code)
        current = allocation.fare
        if price is not None and not isinstance(price, Money):
            raise InvalidValueError("price", "price must be Money")
        # Fare validates seats > 0 and overbooking >= 0 and names the field.
        new = Fare.create(
            code=current.code,
            cabin=current.cabin,
            price=current.price if price is None else price,
            seats=current.seats if seats is None else seats,
            refundable=current.refundable,
            overbooking=current.overbooking if overbooking is None else overbooking,
            field="",
        )
        if new == current:
            return
        if new.capacity < allocation.committed:
            raise CapacityBelowCommitmentsError(code, new.capacity, allocation.committed)
        self._fare_changed(code, new.price.amount, new.price.currency, new.seats, new.overbooking)

    def cancel(self, reason: str) -> None:
        """Cancel the flight: no new holds afterwards (no-op if already cancelled)."""
        reason = _reason(reason)
        if self.status is FlightStatus.CANCELLED:
            return
        self._flight_cancelled(reason)

    # -- queries ----------------------------------------------------------------------------

    def fare(self, code: str) -> Fare:
        return self._allocation(code).fare

    @property
    def fare_codes(self) -> list[str]:
        return list(self.fares)

    def seats_left(self, code: str) -> int:
        allocation = self._allocation(code)
        return max(allocation.fare.capacity - allocation.committed, 0)

    def held(self, code: str) -> int:
        return self._allocation(code).held_seats

    def sold(self, code: str) -> int:
        return self._allocation(code).sold_seats

    def bookings_on_flight(self) -> set[UUID]:
        """Bookings holding or owning seats on this flight."""
        return {b for a in self.fares.values() for b in (*a.held, *a.sold)}

    def hold_of(self, booking_id: UUID) -> Hold | None:
        found = self._find_hold(booking_id)
        return None if found is None else found[1]

    def holds_expired_at(self, now: datetime) -> list[UUID]:
        """Bookings whose hold deadline is at or before ``now``, earliest first."""
        moment = utc_datetime(now, "now")
        expired = [
            (hold.expires_at, booking_id)
            for allocation in self.fares.values()
            for booking_id, hold in allocation.held.items()
            if hold.expires_at <= moment
        ]
        return [booking_id for _, booking_id in sorted(expired)]

    def next_hold_deadline(self) -> datetime | None:
        deadlines = [h.expires_at for a in self.fares.values() for h in a.held.values()]
        return min(deadlines, default=None)

    # -- helpers ----------------------------------------------------------------------------

    def _require_scheduled(self, now: datetime | None) -> None:
        if self.status is FlightStatus.CANCELLED:
            raise FlightNotBookableError("the flight is cancelled")
        if now is not None and utc_datetime(now, "now") >= self.departure:
            raise FlightNotBookableError("the flight has departed")

    def _allocation(self, code: str) -> FareAllocation:
        try:
            return self.fares[code]
        except (KeyError, TypeError):
            raise UnknownFareError(str(code)) from None

    def _find_hold(self, booking_id: UUID) -> tuple[str, Hold] | None:
        for code, allocation in self.fares.items():
            hold = allocation.held.get(booking_id)
            if hold is not None:
                return code, hold
        return None

    def _find_booking(self, booking_id: UUID) -> tuple[str, int, bool] | None:
        """(fare code, seats, sold?) of the booking's seats on this flight, if any."""
        found = self._find_hold(booking_id)
        if found is not None:
            return found[0], found[1].seats, False
        for code, allocation in self.fares.items():
            seats = allocation.sold.get(booking_id)
            if seats is not None:
                return code, seats, True
        return None

    # -- evolution: assignments only, so that every stored history replays -------------------

    @event(SeatsHeld)
    def _seats_held(
        self, booking_id: UUID, fare_code: str, seats: int, expires_at: datetime
    ) -> None:
        self.fares[fare_code].put_hold(booking_id, Hold(seats, expires_at))

    @event(HoldConfirmed)
    def _hold_confirmed(self, booking_id: UUID, fare_code: str, seats: int) -> None:
        self.fares[fare_code].sell(booking_id, seats)

    @event(HoldReleased)
    def _hold_released(self, booking_id: UUID, fare_code: str, seats: int, reason: str) -> None:
        self.fares[fare_code].drop_hold(booking_id)

    @event(HoldExpired)
    def _hold_expired(
        self, booking_id: UUID, fare_code: str, seats: int, expired_at: datetime
    ) -> None:
        self.fares[fare_code].drop_hold(booking_id)

    @event(SoldSeatsReturned)
    def _sold_seats_returned(
        self, booking_id: UUID, fare_code: str, seats: int, reason: str
    ) -> None:
        self.fares[fare_code].unsell(booking_id)

    @event(FareChanged)
    def _fare_changed(
        self, fare_code: str, price_amount: int, currency: str, seats: int, overbooking: int
    ) -> None:
        allocation = self.fares[fare_code]
        allocation.fare = msgspec.structs.replace(
            allocation.fare,
            price=Money(price_amount, currency),
            seats=seats,
            overbooking=overbooking,
        )

    @event(FlightCancelled)
    def _flight_cancelled(self, reason: str) -> None:
        self.status = FlightStatus.CANCELLED
        self.cancellation_reason = reason


def _stored_fare(data: dict[str, Any]) -> Fare:
    # Rebuild without re-validating: a stored fare was valid when it was recorded,
    # and a stricter rule later must not stop old histories from replaying.
    return Fare(
        code=str(data["code"]),
        cabin=Cabin(data["cabin"]),
        price=Money(int(data["price_amount"]), str(data["currency"])),
        seats=int(data["seats"]),
        refundable=bool(data["refundable"]),
        overbooking=int(data.get("overbooking", 0)),
    )
