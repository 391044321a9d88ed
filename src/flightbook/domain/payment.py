"""The Payment context: one ``Payment`` aggregate per booking payment.

Status graph: ``AUTHORIZED -> CAPTURED -> REFUNDED``, ``AUTHORIZED -> VOIDED``;
``DECLINED`` is final from the start. Repeating a transition into the current
status is a no-op (the saga retries); anything else raises :class:`PaymentStateError`.
"""

from __future__ import annotations

from enum import StrEnum
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate, event

from flightbook.domain.errors import InvalidValueError, PaymentStateError
from flightbook.domain.values import Money

__all__ = (
    "ALLOWED_PAYMENT_TRANSITIONS",
    "PAYMENT_ID_NAMESPACE",
    "Payment",
    "PaymentStatus",
    "payment_id_for",
)

PAYMENT_ID_NAMESPACE = UUID("5b0e6f8e-2a4c-5d1f-9a57-0f1b2c3d4e5f")
"""Namespace of the uuid5 payment ids. Never change it: stored ids depend on it."""


def payment_id_for(booking_id: UUID) -> UUID:
    """The id of a booking's payment: the same booking always gets the same payment."""
    return uuid5(PAYMENT_ID_NAMESPACE, str(booking_id))


class PaymentStatus(StrEnum):
    AUTHORIZED = "AUTHORIZED"
    DECLINED = "DECLINED"
    CAPTURED = "CAPTURED"
    VOIDED = "VOIDED"
    REFUNDED = "REFUNDED"


_S = PaymentStatus
ALLOWED_PAYMENT_TRANSITIONS: dict[PaymentStatus, frozenset[PaymentStatus]] = {
    _S.AUTHORIZED: frozenset({_S.CAPTURED, _S.VOIDED}),
    _S.CAPTURED: frozenset({_S.REFUNDED}),
    _S.DECLINED: frozenset(),
    _S.VOIDED: frozenset(),
    _S.REFUNDED: frozenset(),
}


def _text(value: object, field: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidValueError(field, f"{field} must be a non-blank string")
    return value


def _uuid(value: object, field: str) -> UUID:
    if not isinstance(value, UUID):
        raise InvalidValueError(field, f"{field} must be a UUID")
    return value


class Payment(Aggregate):
    """A payment of one booking, as the gateway reported it."""

    class Authorized(Aggregate.Created):
        booking_id: UUID
        amount: int
        currency: str
        gateway_ref: str

        def apply(self, aggregate: Payment) -> None:
            aggregate.status = PaymentStatus.AUTHORIZED
            aggregate.gateway_ref = self.gateway_ref

    class Declined(Aggregate.Created):
        booking_id: UUID
        amount: int
        currency: str
        reason: str

        def apply(self, aggregate: Payment) -> None:
            aggregate.status = PaymentStatus.DECLINED
            aggregate.decline_reason = self.reason

    class Captured(Aggregate.Event):
        gateway_ref: str

    class Voided(Aggregate.Event):
        pass

    class Refunded(Aggregate.Event):
        amount: int
        gateway_ref: str

    # A payment starts with one of two "created" events, so there is no @event on
    # __init__: the library passes it the attributes both events share, then calls
    # the event's apply(), which sets the status. Both only assign state.
    def __init__(self, booking_id: UUID, amount: int, currency: str) -> None:
        self.booking_id = booking_id
        self.amount = amount
        self.currency = currency
        self.status: PaymentStatus
        self.gateway_ref: str | None = None
        self.decline_reason: str | None = None
        self.capture_ref: str | None = None
        self.refund_ref: str | None = None
        self.refunded_amount = 0

    # -- commands ---------------------------------------------------------------------------

    @classmethod
    def authorized(
        cls, *, payment_id: UUID, booking_id: UUID, amount: int, currency: str, gateway_ref: str
    ) -> Payment:
        """Record a payment the gateway authorized, under the caller's (deterministic) id."""
        price = Money.create(amount, currency, field="amount")
        # eventsourcing 9.5: _create(event_class, id=...) records the given id and
        # picks which of the two "created" events starts the history.
        return cls._create(
            cls.Authorized,
            id=_uuid(payment_id, "payment_id"),
            booking_id=_uuid(booking_id, "booking_id"),
            amount=price.amount,
            currency=price.currency,
            gateway_ref=_text(gateway_ref, "gateway_ref"),
        )

    @classmethod
    def declined(
        cls, *, payment_id: UUID, booking_id: UUID, amount: int, currency: str, reason: str
    ) -> Payment:
        """Record a payment the gateway declined."""
        price = Money.create(amount, currency, field="amount")
        return cls._create(
            cls.Declined,
            id=_uuid(payment_id, "payment_id"),
            booking_id=_uuid(booking_id, "booking_id"),
            amount=price.amount,
            currency=price.currency,
            reason=_text(reason, "reason"),
        )

    def capture(self, gateway_ref: str) -> None:
        gateway_ref = _text(gateway_ref, "gateway_ref")
        if self._is_due(PaymentStatus.CAPTURED):
            self._captured(gateway_ref)

    def void(self) -> None:
        if self._is_due(PaymentStatus.VOIDED):
            self._voided()

    def refund(self, amount: int, gateway_ref: str) -> None:
        """Refund part or all of the captured amount (once)."""
        gateway_ref = _text(gateway_ref, "gateway_ref")
        if not self._is_due(PaymentStatus.REFUNDED):
            return
        if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
            raise InvalidValueError("amount", "a refund amount must be a positive integer")
        if amount > self.amount:
            raise InvalidValueError(
                "amount", f"cannot refund {amount}: only {self.amount} was captured"
            )
        self._refunded(amount, gateway_ref)

    # -- queries ----------------------------------------------------------------------------

    @property
    def money(self) -> Money:
        return Money(self.amount, self.currency)

    # -- helpers ----------------------------------------------------------------------------

    def _is_due(self, target: PaymentStatus) -> bool:
        """True if ``target`` is a legal next status, False if it is the current one."""
        if self.status is target:
            return False
        if target not in ALLOWED_PAYMENT_TRANSITIONS[self.status]:
            raise PaymentStateError(self.status.value, target.value)
        return True

    # -- evolution: assignments only, so that every stored history replays -------------------

    @event(Captured)
    def _captured(self, gateway_ref: str) -> None:
        self.status = PaymentStatus.CAPTURED
        self.capture_ref = gateway_ref

    @event(Voided)
    def _voided(self) -> None:
        self.status = PaymentStatus.VOIDED

    @event(Refunded)
    def _refunded(self, amount: int, gateway_ref: str) -> None:
        self.status = PaymentStatus.REFUNDED
        self.refunded_amount = amount
        self.refund_ref = gateway_ref
