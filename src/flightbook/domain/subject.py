"""The data subject: a customer whose personal data may be erased (GDPR Art. 17).

One ``DataSubject`` aggregate per customer, under an id derived from the customer id
(:func:`data_subject_id`), recorded in the booking context. It holds no personal data:
the customer id is the subject's pseudonymous handle (the token's ``sub``), the reason a
code of :class:`ErasureReason`, never free text. Who erased is the event's metadata
(the actor), when its timestamp.

An erasure is refused while the customer has a booking in progress
(:class:`BookingsInProgressError`): the saga still needs that booking's sealed payment
token, and a booking confirmed or rejected a moment later can be erased then.
"""

from __future__ import annotations

import uuid
from enum import StrEnum

from eventsourcing.domain import Aggregate, event

from flightbook.domain.errors import DomainError, InvalidValueError

__all__ = (
    "DATA_SUBJECT_NAMESPACE",
    "BookingsInProgressError",
    "DataSubject",
    "ErasureReason",
    "data_subject_id",
    "erasure_reason",
)

DATA_SUBJECT_NAMESPACE = uuid.UUID("5d0c8f52-3a71-5b2e-9f04-7c1e6b8a2d93")
"""Namespace of the uuid5 data-subject ids. Never change it: it finds the stored subject."""


class ErasureReason(StrEnum):
    """Why personal data is erased: a code, so that no free text reaches the log."""

    CUSTOMER_REQUEST = "customer_request"
    """The customer asked (GDPR Art. 17)."""
    RETENTION = "retention"
    """The retention period ran out."""
    LEGAL_ORDER = "legal_order"
    """A court or an authority ordered it."""


class BookingsInProgressError(DomainError):
    """The customer has bookings in progress: erase once they are confirmed or rejected."""

    default_code = "bookings_in_progress"

    def __init__(self, customer_id: str, count: int) -> None:
        super().__init__(
            f"customer {customer_id} has {count} booking(s) in progress; erase their personal "
            "data once every booking is confirmed, rejected or cancelled"
        )
        self.customer_id = customer_id
        self.count = count


def data_subject_id(customer_id: str) -> uuid.UUID:
    """The id of the customer's ``DataSubject`` (the same every time)."""
    return uuid.uuid5(DATA_SUBJECT_NAMESPACE, "data-subject:" + customer_id)


def erasure_reason(value: object, field: str = "reason") -> ErasureReason:
    """``value`` as an :class:`ErasureReason` (``InvalidValueError`` naming ``field``)."""
    if isinstance(value, ErasureReason):
        return value
    if isinstance(value, str) and value in {reason.value for reason in ErasureReason}:
        return ErasureReason(value)
    codes = ", ".join(reason.value for reason in ErasureReason)
    raise InvalidValueError(field, f"{field} must be one of {codes}")


class DataSubject(Aggregate):
    """A customer as a data subject: the erasures of their personal data."""

    class Opened(Aggregate.Created):
        """The subject's first erasure is about to be recorded (private: never published)."""

        customer_id: str

    class Erased(Aggregate.Event):
        """The customer's personal data was erased: every key of theirs, every booking.

        ``bookings`` counts the bookings whose passengers this erasure made unreadable.
        """

        customer_id: str
        reason: str
        bookings: int

    @event(Opened)
    def __init__(self, customer_id: str) -> None:
        self.customer_id = customer_id
        self.erasures = 0
        self.reason: str | None = None
        """The reason of the latest erasure."""
        self.bookings_erased = 0
        """Bookings erased, over every erasure."""

    @classmethod
    def open(cls, customer_id: str) -> DataSubject:
        """The customer's subject, new (under :func:`data_subject_id`)."""
        if not isinstance(customer_id, str) or not customer_id.strip():
            raise InvalidValueError("customer_id", "customer_id must be a non-blank string")
        return cls._create(cls.Opened, id=data_subject_id(customer_id), customer_id=customer_id)

    @property
    def erased(self) -> bool:
        """Whether the subject's personal data was ever erased."""
        return self.erasures > 0

    def erase(self, reason: ErasureReason, *, bookings: int) -> None:
        """Record an erasure of the customer's keys and of ``bookings`` bookings."""
        reason = erasure_reason(reason)
        if isinstance(bookings, bool) or not isinstance(bookings, int) or bookings < 0:
            raise InvalidValueError("bookings", "bookings must be a count (an integer >= 0)")
        self._erased(self.customer_id, reason.value, bookings)

    @event(Erased)
    def _erased(self, customer_id: str, reason: str, bookings: int) -> None:
        self.erasures += 1
        self.reason = reason
        self.bookings_erased += bookings
