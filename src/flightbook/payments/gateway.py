"""The payment-gateway port: what the booking saga needs from a payment provider.

Money is always an integer amount in minor units plus an ISO 4217 currency code.
Every call carries an idempotency key: repeating a call with the same key and the
same parameters returns the first answer and never moves money twice, so callers
may retry freely. A :class:`Declined` authorization is a normal answer, not an error.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable

import msgspec

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = (
    "DECLINE_REASONS",
    "OK_WITH_REFERENCE",
    "PAYER_BUDGET_EXHAUSTED",
    "Authorization",
    "Capture",
    "CardToken",
    "CircuitOpenError",
    "Declined",
    "GatewayError",
    "GatewayRejectedError",
    "GatewayUnavailableError",
    "LedgerEntry",
    "Operation",
    "PayerBudgetExhaustedError",
    "PayerBusyError",
    "PayerScopedGateway",
    "PaymentGateway",
    "PaymentLedger",
    "Refund",
    "refuse_malformed",
    "simulated_card",
    "token_fingerprint",
)

Operation = Literal["authorize", "capture", "void", "refund"]


class CardToken(StrEnum):
    """Payment tokens the shipped simulated adapters understand (any other one is invalid).

    Attributes:
        OK: Authorizes.
        DECLINED: Declines with ``"card_declined"``.
        INSUFFICIENT_FUNDS: Declines with ``"insufficient_funds"``.
        TIMEOUT: Never answers: the call hangs, then fails as unavailable, recording nothing.
        FLAKY: The first attempts of each idempotency key fail as unavailable, later ones work.
    """

    OK = "tok_ok"
    DECLINED = "tok_declined"
    INSUFFICIENT_FUNDS = "tok_insufficient_funds"
    TIMEOUT = "tok_timeout"
    FLAKY = "tok_flaky"


OK_WITH_REFERENCE = "tok_ok_"
"""``tok_ok_<reference>`` authorizes like ``tok_ok``: a test card whose token is unique, so a
test can search every store for it (the personal-data erasure test does)."""


def simulated_card(token: str) -> str:
    """The test card a token stands for in the simulated adapters (``tok_ok_<ref>``: ``tok_ok``)."""
    if token.startswith(OK_WITH_REFERENCE) and len(token) > len(OK_WITH_REFERENCE):
        return CardToken.OK
    return token


def card_or_timeout(token: str, timeout: float, sleep: Callable[[float], None]) -> str:
    """The test card ``token`` stands for (:func:`simulated_card`), for an authorization.

    Raises:
        GatewayUnavailableError: the card is ``tok_timeout``; raised after ``sleep(timeout)``.
    """
    card = simulated_card(token)
    if card == CardToken.TIMEOUT:
        sleep(timeout)
        raise GatewayUnavailableError("timeout")
    return card


def token_fingerprint(token: str) -> str:
    """What a simulated provider keeps of a token to recognise a repeated call: never the token.

    A payment token is the customer's card by another name; the provider's idempotency
    records only need to tell whether a repeat carries the same one.
    """
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()


DECLINE_REASONS: dict[str, str] = {
    CardToken.DECLINED: "card_declined",
    CardToken.INSUFFICIENT_FUNDS: "insufficient_funds",
}
"""The tokens the simulated provider declines, and the reason it gives."""


class Authorization(msgspec.Struct, frozen=True, kw_only=True):
    """Funds reserved on the customer's payment method, not yet moved.

    Attributes:
        authorization_id: The provider's id, needed to capture, void or refund.
        amount: Amount reserved, in minor units.
        currency: ISO 4217 code, e.g. ``"EUR"``.
    """

    authorization_id: str
    amount: int
    currency: str


class Declined(msgspec.Struct, frozen=True, kw_only=True):
    """The provider refused to authorize; nothing was reserved.

    Attributes:
        reason: Machine-readable reason: ``"card_declined"``, ``"insufficient_funds"``,
            ``"invalid_token"``.
    """

    reason: str


class Capture(msgspec.Struct, frozen=True, kw_only=True):
    """Authorized funds actually taken.

    Attributes:
        capture_id: The provider's id for this capture.
        amount: Amount captured, in minor units (at most the authorized amount).
    """

    capture_id: str
    amount: int


class Refund(msgspec.Struct, frozen=True, kw_only=True):
    """Captured funds given back.

    Attributes:
        refund_id: The provider's id for this refund.
        amount: Amount refunded, in minor units.
    """

    refund_id: str
    amount: int


class LedgerEntry(msgspec.Struct, frozen=True, kw_only=True):
    """One accepted operation in an adapter's ledger (for tests and audits, not the saga).

    Declines, rejections, timeouts and transient failures leave no entry.

    Attributes:
        operation: ``authorize``, ``capture``, ``void`` or ``refund``.
        authorization_id: The authorization the operation belongs to.
        amount: Minor units reserved, captured, released (void) or refunded.
        currency: ISO 4217 code of the authorization.
        idempotency_key: The key of the call that made this entry (unique in a ledger).
        created_at: When the provider accepted the operation (UTC).
    """

    operation: Operation
    authorization_id: str
    amount: int
    currency: str
    idempotency_key: str
    created_at: datetime


class GatewayError(Exception):
    """Base of every error a payment gateway raises."""


class GatewayUnavailableError(GatewayError):
    """Transient: timeout, connection failure, provider-side error. Safe to retry, same key."""


class GatewayRejectedError(GatewayError):
    """Permanent: the provider understood the request and refuses it. Retrying cannot help.

    The message is a machine-readable reason such as ``"authorization_voided"``,
    ``"refund_exceeds_captured"`` or ``"idempotency_key_reused"``.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class CircuitOpenError(GatewayUnavailableError):
    """The circuit breaker is open: the call failed fast without reaching the provider."""


class PayerBusyError(GatewayUnavailableError):
    """The payer's budget of timeouts is held by their calls in flight: try again later.

    The call was not made and touched no breaker.
    """


PAYER_BUDGET_EXHAUSTED = "payer_timeout_budget_exhausted"
"""The reason of a payment declined without a call: its payer's timeouts used up their budget."""


class PayerBudgetExhaustedError(GatewayError):
    """The payer used up their budget of timeouts: their payments fail fast for a while.

    Permanent for the payment it refuses (the saga records it declined with
    :data:`PAYER_BUDGET_EXHAUSTED` and rejects the booking ``PAYMENT_UNAVAILABLE``);
    the call was not made and touched no breaker.
    """

    def __init__(self) -> None:
        super().__init__(PAYER_BUDGET_EXHAUSTED)
        self.reason = PAYER_BUDGET_EXHAUSTED


@runtime_checkable
class PaymentGateway(Protocol):
    """A payment provider, as the booking saga sees it.

    Each method is idempotent per ``idempotency_key``: the same key with the same
    parameters returns the first result; the same key with other parameters raises
    ``GatewayRejectedError("idempotency_key_reused")``. Every method may raise
    :class:`GatewayUnavailableError` (retry with the same key) or
    :class:`GatewayRejectedError` (do not retry).
    """

    def authorize(
        self, *, idempotency_key: str, token: str, amount: int, currency: str
    ) -> Authorization | Declined:
        """Reserve ``amount`` on the payment method behind ``token``."""
        ...

    def capture(self, *, idempotency_key: str, authorization_id: str, amount: int) -> Capture:
        """Take ``amount`` (at most the authorized amount) of an authorization, once."""
        ...

    def void(self, *, idempotency_key: str, authorization_id: str) -> None:
        """Release an authorization that was not captured."""
        ...

    def refund(self, *, idempotency_key: str, authorization_id: str, amount: int) -> Refund:
        """Give back part or all of what was captured; refunds never exceed the capture."""
        ...


@runtime_checkable
class PayerScopedGateway(Protocol):
    """A gateway that can bound one payer's calls (their timeouts) apart from the others'."""

    def for_payer(self, payer: str) -> PaymentGateway:
        """This gateway as the calls of ``payer`` (a customer id) go through it."""
        ...


class PaymentLedger(ABC):
    """Read access to what a gateway adapter accepted, so tests can prove "charged once"."""

    def ledger(
        self,
        *,
        operation: Operation | None = None,
        authorization_id: str | None = None,
        key_prefix: str | None = None,
    ) -> list[LedgerEntry]:
        """Accepted operations, oldest first, optionally filtered."""
        return self._entries(operation, authorization_id, key_prefix)

    @abstractmethod
    def _entries(
        self, operation: Operation | None, authorization_id: str | None, key_prefix: str | None
    ) -> list[LedgerEntry]:
        """The adapter's accepted operations matching every filter that is not None."""

    def captured_total(self, authorization_id: str) -> int:
        """Sum of the captures of one authorization, in minor units."""
        entries = self.ledger(operation="capture", authorization_id=authorization_id)
        return sum(entry.amount for entry in entries)

    def refunded_total(self, authorization_id: str) -> int:
        """Sum of the refunds of one authorization, in minor units."""
        entries = self.ledger(operation="refund", authorization_id=authorization_id)
        return sum(entry.amount for entry in entries)

    def entries_for_booking(self, booking_id: str) -> list[LedgerEntry]:
        """Entries whose idempotency key is ``f"{booking_id}:<operation>"``."""
        return self.ledger(key_prefix=f"{booking_id}:")


def refuse_malformed(*, amount: int | None = None, currency: str | None = None) -> None:
    """Refuse a malformed request up front, like a provider's 400: nothing is stored.

    Raises:
        GatewayRejectedError: ``invalid_amount`` or ``invalid_currency``.
    """
    if amount is not None and amount <= 0:
        raise GatewayRejectedError("invalid_amount")
    if currency is not None and not (
        len(currency) == 3 and currency.isascii() and currency.isalpha() and currency.isupper()
    ):
        raise GatewayRejectedError("invalid_currency")
