"""In-memory payment gateway with the simulated provider's semantics, for fast tests.

The same contract suite (``tests/integration/payments/test_gateway_contract.py``)
runs against this adapter and the PostgreSQL-backed :class:`SimulatedGateway`,
so the two stay interchangeable. State lives in this object only: it does not
survive the process, which is exactly what the PostgreSQL adapter adds.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal, TypeVar

from flightbook.payments import gateway

if TYPE_CHECKING:
    from collections.abc import Callable


__all__ = ("InMemoryGateway",)

_T = TypeVar("_T")


@dataclass(frozen=True)
class _Rejected:
    reason: str


@dataclass(frozen=True)
class _Voided:
    pass


_Outcome = (
    gateway.Authorization
    | gateway.Declined
    | gateway.Capture
    | gateway.Refund
    | _Voided
    | _Rejected
)


@dataclass
class _Auth:
    authorization_id: str
    amount: int
    currency: str
    flaky: bool
    status: Literal["authorized", "captured", "voided"] = "authorized"
    captured: int = 0
    refunded: int = 0


class InMemoryGateway(gateway.PaymentLedger):
    """A payment provider held in process memory, with the test tokens of the simulator.

    Tokens: ``tok_ok`` and ``tok_ok_<reference>`` authorize; ``tok_declined`` and
    ``tok_insufficient_funds`` decline; ``tok_timeout`` sleeps ``timeout`` then raises
    :class:`gateway.GatewayUnavailableError` and records nothing; ``tok_flaky`` fails the first
    ``flaky_failures`` attempts of each idempotency key (also for the capture, void
    and refund of an authorization made with it); any other token declines with
    ``"invalid_token"``. Idempotency keys behave as in :class:`SimulatedGateway` (which keeps
    a token's fingerprint, never the token).

    Args:
        latency: Seconds slept at the start of every call.
        timeout: Seconds a ``tok_timeout`` authorization hangs before failing.
        flaky_failures: Transient failures per idempotency key for ``tok_flaky``.
        sleep: Sleep function; pass a no-op in unit tests to skip latency and timeouts.
    """

    def __init__(
        self,
        *,
        latency: float = 0.0,
        timeout: float = 2.0,
        flaky_failures: int = 2,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._latency = latency
        self._timeout = timeout
        self._flaky_failures = flaky_failures
        self._sleep = sleep
        self._lock = threading.Lock()
        self._auths: dict[str, _Auth] = {}
        self._keys: dict[str, tuple[tuple[object, ...], _Outcome]] = {}
        self._attempts: dict[str, int] = {}
        self._ledger: list[gateway.LedgerEntry] = []

    # -- the port ---------------------------------------------------------------------------

    def authorize(
        self, *, idempotency_key: str, token: str, amount: int, currency: str
    ) -> gateway.Authorization | gateway.Declined:
        self._before_call(amount=amount, currency=currency)
        card = gateway.card_or_timeout(token, self._timeout, self._sleep)
        request = ("authorize", gateway.token_fingerprint(token), amount, currency)
        with self._lock:
            if card == gateway.CardToken.FLAKY:
                self._maybe_flake(idempotency_key)
            outcome = self._replay(idempotency_key, request)
            if outcome is None:
                outcome = self._authorize(idempotency_key, card, amount, currency)
                self._keys[idempotency_key] = (request, outcome)
        if isinstance(outcome, _Rejected):
            raise gateway.GatewayRejectedError(outcome.reason)
        if not isinstance(outcome, gateway.Authorization | gateway.Declined):
            raise TypeError(f"key {idempotency_key!r} holds a {type(outcome).__name__}")
        return outcome

    def capture(
        self, *, idempotency_key: str, authorization_id: str, amount: int
    ) -> gateway.Capture:
        self._before_call(amount=amount)
        outcome = self._execute("capture", idempotency_key, authorization_id, amount, self._capture)
        return _unwrap(outcome, gateway.Capture)

    def void(self, *, idempotency_key: str, authorization_id: str) -> None:
        self._before_call()
        outcome = self._execute("void", idempotency_key, authorization_id, None, self._void)
        _unwrap(outcome, _Voided)

    def refund(self, *, idempotency_key: str, authorization_id: str, amount: int) -> gateway.Refund:
        self._before_call(amount=amount)
        outcome = self._execute("refund", idempotency_key, authorization_id, amount, self._refund)
        return _unwrap(outcome, gateway.Refund)

    # -- ledger inspection (PaymentLedger) ---------------------------------------------------

    def _entries(
        self,
        operation: gateway.Operation | None,
        authorization_id: str | None,
        key_prefix: str | None,
    ) -> list[gateway.LedgerEntry]:
        with self._lock:
            return [
                entry
                for entry in self._ledger
                if (operation is None or entry.operation == operation)
                and (authorization_id is None or entry.authorization_id == authorization_id)
                and (key_prefix is None or entry.idempotency_key.startswith(key_prefix))
            ]

    # -- internals --------------------------------------------------------------------------

    def _before_call(self, *, amount: int | None = None, currency: str | None = None) -> None:
        if self._latency:
            self._sleep(self._latency)
        gateway.refuse_malformed(amount=amount, currency=currency)

    def _maybe_flake(self, idempotency_key: str) -> None:
        attempts = self._attempts.get(idempotency_key, 0) + 1
        self._attempts[idempotency_key] = attempts
        if attempts <= self._flaky_failures:
            raise gateway.GatewayUnavailableError(
                f"flaky failure {attempts}/{self._flaky_failures}"
            )

    def _replay(self, idempotency_key: str, request: tuple[object, ...]) -> _Outcome | None:
        stored = self._keys.get(idempotency_key)
        if stored is None:
            return None
        if stored[0] != request:
            raise gateway.GatewayRejectedError("idempotency_key_reused")
        return stored[1]

    def _execute(
        self,
        operation: gateway.Operation,
        idempotency_key: str,
        authorization_id: str,
        amount: int | None,
        decide: Callable[[_Auth, int], _Outcome],
    ) -> _Outcome:
        request = (operation, authorization_id, amount)
        with self._lock:
            auth = self._auths.get(authorization_id)
            if auth is not None and auth.flaky:
                self._maybe_flake(idempotency_key)
            outcome = self._replay(idempotency_key, request)
            if outcome is None:
                if auth is None:
                    outcome = _Rejected("unknown_authorization")
                else:
                    outcome = decide(auth, amount or 0)
                    if not isinstance(outcome, _Rejected):
                        self._record(operation, auth, outcome, idempotency_key)
                self._keys[idempotency_key] = (request, outcome)
            return outcome

    def _authorize(self, idempotency_key: str, token: str, amount: int, currency: str) -> _Outcome:
        if token in gateway.DECLINE_REASONS:
            return gateway.Declined(reason=gateway.DECLINE_REASONS[gateway.CardToken(token)])
        if token not in {gateway.CardToken.OK, gateway.CardToken.FLAKY}:
            return gateway.Declined(reason="invalid_token")
        auth = _Auth(
            authorization_id=f"auth_{uuid.uuid4().hex}",
            amount=amount,
            currency=currency,
            flaky=token == gateway.CardToken.FLAKY,
        )
        self._auths[auth.authorization_id] = auth
        authorization = gateway.Authorization(
            authorization_id=auth.authorization_id, amount=amount, currency=currency
        )
        self._record("authorize", auth, authorization, idempotency_key)
        return authorization

    @staticmethod
    def _capture(auth: _Auth, amount: int) -> _Outcome:
        if auth.status == "voided":
            return _Rejected("authorization_voided")
        if auth.status == "captured":
            return _Rejected("already_captured")
        if amount > auth.amount:
            return _Rejected("amount_exceeds_authorization")
        auth.status, auth.captured = "captured", amount
        return gateway.Capture(capture_id=f"cap_{uuid.uuid4().hex}", amount=amount)

    @staticmethod
    def _void(auth: _Auth, _amount: int) -> _Outcome:
        if auth.status == "voided":
            return _Rejected("authorization_voided")
        if auth.status == "captured":
            return _Rejected("already_captured")
        auth.status = "voided"
        return _Voided()

    @staticmethod
    def _refund(auth: _Auth, amount: int) -> _Outcome:
        if auth.status != "captured":
            return _Rejected("not_captured")
        if auth.refunded + amount > auth.captured:
            return _Rejected("refund_exceeds_captured")
        auth.refunded += amount
        return gateway.Refund(refund_id=f"re_{uuid.uuid4().hex}", amount=amount)

    def _record(
        self, operation: gateway.Operation, auth: _Auth, outcome: _Outcome, idempotency_key: str
    ) -> None:
        amount = (
            outcome.amount
            if isinstance(outcome, gateway.Authorization | gateway.Capture | gateway.Refund)
            else 0
        )
        if isinstance(outcome, _Voided):
            amount = auth.amount  # a void releases the whole reservation
        self._ledger.append(
            gateway.LedgerEntry(
                operation=operation,
                authorization_id=auth.authorization_id,
                amount=amount,
                currency=auth.currency,
                idempotency_key=idempotency_key,
                created_at=datetime.now(UTC),
            )
        )


def _unwrap(outcome: _Outcome, expected: type[_T]) -> _T:
    if isinstance(outcome, _Rejected):
        raise gateway.GatewayRejectedError(outcome.reason)
    if not isinstance(outcome, expected):  # the key's request pins the operation, so never
        raise TypeError(f"expected a {expected.__name__}, found a {type(outcome).__name__}")
    return outcome
