"""Domain errors: every refused command raises one of these and records no event."""

from __future__ import annotations

__all__ = (
    "CapacityBelowCommitmentsError",
    "CurrencyMismatchError",
    "DomainError",
    "FlightNotBookableError",
    "HoldConflictError",
    "HoldNotExpiredError",
    "IllegalTransitionError",
    "InvalidValueError",
    "PaymentStateError",
    "SeatsUnavailableError",
    "UnknownFareError",
)


class DomainError(Exception):
    """A command the domain refuses.

    Attributes:
        code: Stable machine-readable code, e.g. ``"seats_unavailable"``.
        field: The request field the error is about (``"fare"``,
            ``"passengers[0].email"``), or None when it is about no single field.
        message: Readable explanation.
    """

    default_code = "domain_error"

    def __init__(self, message: str, *, field: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.code = code if code is not None else self.default_code


class InvalidValueError(DomainError):
    """A value failed validation; ``field`` always names it."""

    default_code = "invalid_value"
    field: str

    def __init__(self, field: str, message: str, *, code: str | None = None) -> None:
        super().__init__(message, field=field, code=code)


class CurrencyMismatchError(InvalidValueError):
    """Arithmetic or comparison between amounts in different currencies."""

    default_code = "currency_mismatch"

    def __init__(self, left: str, right: str, *, field: str = "currency") -> None:
        super().__init__(field, f"cannot combine amounts in {left} and {right}")
        self.left = left
        self.right = right


class IllegalTransitionError(DomainError):
    """A state machine was asked for a transition its graph does not allow."""

    default_code = "illegal_transition"

    def __init__(self, entity: str, from_state: str, to_state: str, *, detail: str = "") -> None:
        message = f"{entity} cannot go from {from_state} to {to_state}"
        super().__init__(f"{message}: {detail}" if detail else message)
        self.entity = entity
        self.from_state = from_state
        self.to_state = to_state


class PaymentStateError(IllegalTransitionError):
    """An illegal payment transition (e.g. capturing a declined payment)."""

    default_code = "payment_state"

    def __init__(self, from_state: str, to_state: str, *, detail: str = "") -> None:
        super().__init__("payment", from_state, to_state, detail=detail)


class SeatsUnavailableError(DomainError):
    """Not enough seats left in the fare class for the hold."""

    default_code = "seats_unavailable"

    def __init__(self, fare_code: str, requested: int, available: int) -> None:
        super().__init__(
            f"fare {fare_code} has {available} seat(s) left, {requested} requested",
            field="fare",
        )
        self.fare_code = fare_code
        self.requested = requested
        self.available = available


class UnknownFareError(DomainError):
    """The flight has no fare class with this code."""

    default_code = "unknown_fare"

    def __init__(self, fare_code: str, *, field: str = "fare") -> None:
        super().__init__(f"the flight has no fare {fare_code!r}", field=field)
        self.fare_code = fare_code


class FlightNotBookableError(DomainError):
    """The flight is cancelled or has departed."""

    default_code = "flight_not_bookable"

    def __init__(self, reason: str) -> None:
        super().__init__(f"the flight cannot be booked: {reason}", field="flight_id")
        self.reason = reason


class CapacityBelowCommitmentsError(DomainError):
    """A fare change would leave fewer seats than are already held or sold."""

    default_code = "capacity_below_commitments"

    def __init__(self, fare_code: str, capacity: int, committed: int) -> None:
        super().__init__(
            f"fare {fare_code} would have {capacity} seat(s) but {committed} are held or sold",
            field="seats",
        )
        self.fare_code = fare_code
        self.capacity = capacity
        self.committed = committed


class HoldConflictError(DomainError):
    """The booking already holds or bought other seats on this flight."""

    default_code = "hold_conflict"

    def __init__(self, message: str) -> None:
        super().__init__(message, field="fare")


class HoldNotExpiredError(DomainError):
    """A hold was asked to expire before its deadline."""

    default_code = "hold_not_expired"

    def __init__(self, message: str) -> None:
        super().__init__(message)
