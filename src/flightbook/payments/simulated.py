"""Simulated payment provider with a durable ledger in PostgreSQL.

It stands in for an external system, so it owns its tables (created on first use
in its own schema) and no migration of ours touches them. State lives in the
database, not in this object: a caller killed between two calls finds every
authorization, capture and idempotency key where it left them.

Idempotency, like a Stripe-style provider: the first call with a key stores its
outcome (answer or rejection) in ``idempotency_keys``; a repeat with the same
operation and parameters gets that stored outcome back and changes nothing; a
repeat with anything else is refused with ``idempotency_key_reused``. Concurrent
calls with one key serialise on that key's row (``INSERT ... ON CONFLICT DO
NOTHING`` then ``SELECT ... FOR UPDATE``), and ``ledger.idempotency_key`` is unique,
so a key can never make two ledger rows. Calls on one authorization serialise on
its row (``FOR UPDATE``), and a partial unique index allows one capture and one
void per authorization.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from datetime import UTC
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import msgspec
import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from flightbook.payments import gateway

if TYPE_CHECKING:
    from collections.abc import Iterator
    from types import TracebackType
    from typing import Self

    from psycopg.rows import TupleRow


__all__ = ("SimulatedGateway",)

_T = TypeVar("_T")


_OutcomeKind = Literal["authorization", "declined", "capture", "void", "refund", "rejected"]

_UPDATES = {
    "capture": sql.SQL(
        """UPDATE {schema}.authorizations SET status = 'captured', captured = %(amount)s
        WHERE authorization_id = %(authorization_id)s"""
    ),
    "void": sql.SQL(
        """UPDATE {schema}.authorizations SET status = 'voided'
        WHERE authorization_id = %(authorization_id)s"""
    ),
    "refund": sql.SQL(
        """UPDATE {schema}.authorizations SET refunded = refunded + %(amount)s
        WHERE authorization_id = %(authorization_id)s"""
    ),
}

# Every table lives in the adapter's schema; {schema} is filled in with sql.Identifier.
_DDL: tuple[sql.SQL, ...] = (
    sql.SQL("CREATE SCHEMA IF NOT EXISTS {schema}"),
    sql.SQL(
        """CREATE TABLE IF NOT EXISTS {schema}.idempotency_keys (
            idempotency_key text PRIMARY KEY,
            request jsonb NOT NULL,           -- operation and parameters of the first call
            outcome_kind text,                -- NULL only inside the first call's transaction
            outcome jsonb,
            created_at timestamptz NOT NULL DEFAULT now()
        )"""
    ),
    sql.SQL(
        """CREATE TABLE IF NOT EXISTS {schema}.call_attempts (
            idempotency_key text PRIMARY KEY,
            attempts integer NOT NULL         -- counted for tok_flaky, even for failed calls
        )"""
    ),
    sql.SQL(
        """CREATE TABLE IF NOT EXISTS {schema}.authorizations (
            authorization_id text PRIMARY KEY,
            amount bigint NOT NULL CHECK (amount > 0),
            currency text NOT NULL,
            flaky boolean NOT NULL,
            status text NOT NULL CHECK (status IN ('authorized', 'captured', 'voided')),
            captured bigint NOT NULL DEFAULT 0 CHECK (captured <= amount),
            refunded bigint NOT NULL DEFAULT 0 CHECK (refunded <= captured),
            created_at timestamptz NOT NULL DEFAULT now()
        )"""
    ),
    sql.SQL(
        """CREATE TABLE IF NOT EXISTS {schema}.ledger (
            entry_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            operation text NOT NULL CHECK (operation IN ('authorize', 'capture', 'void', 'refund')),
            authorization_id text NOT NULL REFERENCES {schema}.authorizations,
            amount bigint NOT NULL,
            currency text NOT NULL,
            idempotency_key text NOT NULL UNIQUE,
            created_at timestamptz NOT NULL DEFAULT clock_timestamp()
        )"""
    ),
    sql.SQL(
        """CREATE UNIQUE INDEX IF NOT EXISTS ledger_once_per_authorization
            ON {schema}.ledger (authorization_id, operation)
            WHERE operation IN ('authorize', 'capture', 'void')"""
    ),
    sql.SQL(
        "CREATE INDEX IF NOT EXISTS ledger_by_authorization ON {schema}.ledger (authorization_id)"
    ),
)


class SimulatedGateway(gateway.PaymentLedger):
    """A payment provider simulated on PostgreSQL, with test tokens and a durable ledger.

    Tokens (see :class:`~flightbook.payments.gateway.CardToken`): ``tok_ok`` and
    ``tok_ok_<reference>`` authorize;
    ``tok_declined`` and ``tok_insufficient_funds`` decline; ``tok_timeout`` hangs for
    ``timeout`` seconds, then raises :class:`gateway.GatewayUnavailableError` ("timeout") and
    records nothing; ``tok_flaky`` fails the first ``flaky_failures`` attempts of each
    idempotency key with :class:`gateway.GatewayUnavailableError` (attempts are counted in the
    database; the capture, void and refund of a flaky authorization flake the same
    way); any other token declines with ``"invalid_token"``. A token is never stored: the
    idempotency records keep its SHA-256 fingerprint (:func:`gateway.token_fingerprint`).

    Rejections (:class:`gateway.GatewayRejectedError`): ``invalid_amount``, ``invalid_currency``
    (not stored), ``idempotency_key_reused``, ``unknown_authorization``,
    ``authorization_voided``, ``already_captured``, ``amount_exceeds_authorization``,
    ``not_captured``, ``refund_exceeds_captured`` (stored against the key and replayed).
    A lost database connection surfaces as :class:`gateway.GatewayUnavailableError`.

    Args:
        pool_or_conninfo: A psycopg ``ConnectionPool`` (owned by the caller) or a
            connection string (the gateway then opens and closes its own pool).
        schema: PostgreSQL schema holding the gateway's tables; created if missing.
        latency: Seconds slept at the start of every call.
        timeout: Seconds a ``tok_timeout`` authorization hangs before failing.
        flaky_failures: Transient failures per idempotency key for ``tok_flaky``.
    """

    def __init__(
        self,
        pool_or_conninfo: ConnectionPool[psycopg.Connection[TupleRow]] | str,
        *,
        schema: str = "payment_gateway",
        latency: float = 0.0,
        timeout: float = 2.0,
        flaky_failures: int = 2,
    ) -> None:
        if isinstance(pool_or_conninfo, str):
            self._pool = ConnectionPool(
                pool_or_conninfo, min_size=1, max_size=10, open=True, name=f"gateway-{schema}"
            )
            self._owns_pool = True
        else:
            self._pool = pool_or_conninfo
            self._owns_pool = False
        self._schema = sql.Identifier(schema)
        self._schema_name = schema
        self._latency = latency
        self._timeout = timeout
        self._flaky_failures = flaky_failures
        self._schema_lock = threading.Lock()
        self._schema_ready = False

    def close(self) -> None:
        """Close the connection pool if this gateway opened it."""
        if self._owns_pool:
            self._pool.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def ensure_schema(self) -> None:
        """Create the schema and tables if they do not exist yet (idempotent, concurrency-safe)."""
        with self._schema_lock:
            if self._schema_ready:
                return
            with _unavailable_on_db_errors(), self._pool.connection() as conn:
                # Concurrent CREATE ... IF NOT EXISTS can still collide: serialise them.
                conn.execute(
                    "SELECT pg_advisory_xact_lock(hashtext(%s))", (f"gateway:{self._schema_name}",)
                )
                for statement in _DDL:
                    conn.execute(statement.format(schema=self._schema))
            self._schema_ready = True

    # -- the port ---------------------------------------------------------------------------

    def authorize(
        self, *, idempotency_key: str, token: str, amount: int, currency: str
    ) -> gateway.Authorization | gateway.Declined:
        self._before_call(amount=amount, currency=currency)
        card = gateway.card_or_timeout(token, self._timeout, time.sleep)
        self.ensure_schema()
        request = {"operation": "authorize", "amount": amount, "currency": currency}
        # the token itself is never stored: only its fingerprint (rows stored before that
        # hold the plain token, and a repeat of one of them still matches it)
        legacy = {**request, "token": token}
        request["token"] = gateway.token_fingerprint(token)
        if card == gateway.CardToken.FLAKY:
            self._maybe_flake(idempotency_key)
        with _unavailable_on_db_errors(), self._pool.connection() as conn:
            kind, body = self._claim_key(conn, idempotency_key, request, legacy=legacy)
            if kind is None:
                kind, body = self._authorize(conn, idempotency_key, card, amount, currency)
                self._store_outcome(conn, idempotency_key, kind, body)
        if kind == "declined":
            return msgspec.convert(body, gateway.Declined)
        return _decode(kind, body, "authorization", gateway.Authorization)

    def capture(
        self, *, idempotency_key: str, authorization_id: str, amount: int
    ) -> gateway.Capture:
        self._before_call(amount=amount)
        kind, body = self._execute("capture", idempotency_key, authorization_id, amount)
        return _decode(kind, body, "capture", gateway.Capture)

    def void(self, *, idempotency_key: str, authorization_id: str) -> None:
        self._before_call()
        kind, body = self._execute("void", idempotency_key, authorization_id, None)
        _decode(kind, body, "void", dict)

    def refund(self, *, idempotency_key: str, authorization_id: str, amount: int) -> gateway.Refund:
        self._before_call(amount=amount)
        kind, body = self._execute("refund", idempotency_key, authorization_id, amount)
        return _decode(kind, body, "refund", gateway.Refund)

    # -- ledger inspection (PaymentLedger) ---------------------------------------------------

    def _entries(
        self,
        operation: gateway.Operation | None,
        authorization_id: str | None,
        key_prefix: str | None,
    ) -> list[gateway.LedgerEntry]:
        self.ensure_schema()
        query = sql.SQL(
            """SELECT operation, authorization_id, amount, currency, idempotency_key, created_at
            FROM {schema}.ledger
            WHERE (%(operation)s::text IS NULL OR operation = %(operation)s)
              AND (%(authorization_id)s::text IS NULL OR authorization_id = %(authorization_id)s)
              AND (%(prefix)s::text IS NULL OR starts_with(idempotency_key, %(prefix)s))
            ORDER BY entry_id"""
        ).format(schema=self._schema)
        params = {
            "operation": operation,
            "authorization_id": authorization_id,
            "prefix": key_prefix,
        }
        with _unavailable_on_db_errors(), self._pool.connection() as conn:
            rows = conn.execute(query, params).fetchall()
        fields = ("operation", "authorization_id", "amount", "currency", "idempotency_key")
        return [
            gateway.LedgerEntry(
                **dict(zip(fields, row[:5], strict=True)), created_at=row[5].astimezone(UTC)
            )
            for row in rows
        ]

    # -- internals --------------------------------------------------------------------------

    def _q(self, template: sql.SQL) -> sql.Composed:
        return template.format(schema=self._schema)

    def _before_call(self, *, amount: int | None = None, currency: str | None = None) -> None:
        if self._latency:
            time.sleep(self._latency)
        gateway.refuse_malformed(amount=amount, currency=currency)

    def _maybe_flake(self, idempotency_key: str) -> None:
        """Count this attempt durably (own transaction); fail it if it is one of the first."""
        with _unavailable_on_db_errors(), self._pool.connection() as conn:
            row = conn.execute(
                self._q(
                    sql.SQL(
                        """INSERT INTO {schema}.call_attempts AS a (idempotency_key, attempts)
                        VALUES (%s, 1)
                        ON CONFLICT (idempotency_key) DO UPDATE SET attempts = a.attempts + 1
                        RETURNING attempts"""
                    )
                ),
                (idempotency_key,),
            ).fetchone()
        attempts = int(row[0]) if row else 0
        if attempts <= self._flaky_failures:
            raise gateway.GatewayUnavailableError(
                f"flaky failure {attempts}/{self._flaky_failures}"
            )

    def _claim_key(
        self,
        conn: psycopg.Connection[TupleRow],
        idempotency_key: str,
        request: dict[str, Any],
        *,
        legacy: dict[str, Any] | None = None,
    ) -> tuple[_OutcomeKind | None, Any]:
        """Lock the key's row for this transaction; return its stored outcome, if any.

        A concurrent first call holding the row makes the INSERT wait for its commit,
        after which the SELECT sees the stored outcome.
        """
        conn.execute(
            self._q(
                sql.SQL(
                    """INSERT INTO {schema}.idempotency_keys (idempotency_key, request)
                    VALUES (%s, %s) ON CONFLICT (idempotency_key) DO NOTHING"""
                )
            ),
            (idempotency_key, Jsonb(request)),
        )
        row = conn.execute(
            self._q(
                sql.SQL(
                    """SELECT request, outcome_kind, outcome FROM {schema}.idempotency_keys
                    WHERE idempotency_key = %s FOR UPDATE"""
                )
            ),
            (idempotency_key,),
        ).fetchone()
        if row is None:  # pragma: no cover - the row was inserted or committed just above
            raise gateway.GatewayUnavailableError("idempotency key vanished")
        stored_request, kind, body = row
        if stored_request != request and (legacy is None or stored_request != legacy):
            raise gateway.GatewayRejectedError("idempotency_key_reused")
        return kind, body

    def _store_outcome(
        self, conn: psycopg.Connection[TupleRow], idempotency_key: str, kind: str, body: Any
    ) -> None:
        conn.execute(
            self._q(
                sql.SQL(
                    """UPDATE {schema}.idempotency_keys SET outcome_kind = %s, outcome = %s
                    WHERE idempotency_key = %s"""
                )
            ),
            (kind, Jsonb(body), idempotency_key),
        )

    def _record(
        self,
        conn: psycopg.Connection[TupleRow],
        operation: gateway.Operation,
        authorization_id: str,
        amount: int,
        currency: str,
        idempotency_key: str,
    ) -> None:
        conn.execute(
            self._q(
                sql.SQL(
                    """INSERT INTO {schema}.ledger
                    (operation, authorization_id, amount, currency, idempotency_key)
                    VALUES (%s, %s, %s, %s, %s)"""
                )
            ),
            (operation, authorization_id, amount, currency, idempotency_key),
        )

    def _authorize(
        self,
        conn: psycopg.Connection[TupleRow],
        idempotency_key: str,
        token: str,
        amount: int,
        currency: str,
    ) -> tuple[_OutcomeKind, Any]:
        if token in gateway.DECLINE_REASONS:
            return "declined", {"reason": gateway.DECLINE_REASONS[gateway.CardToken(token)]}
        if token not in {gateway.CardToken.OK, gateway.CardToken.FLAKY}:
            return "declined", {"reason": "invalid_token"}
        authorization_id = f"auth_{uuid.uuid4().hex}"
        conn.execute(
            self._q(
                sql.SQL(
                    """INSERT INTO {schema}.authorizations
                    (authorization_id, amount, currency, flaky, status)
                    VALUES (%s, %s, %s, %s, 'authorized')"""
                )
            ),
            (authorization_id, amount, currency, token == gateway.CardToken.FLAKY),
        )
        self._record(conn, "authorize", authorization_id, amount, currency, idempotency_key)
        body = {"authorization_id": authorization_id, "amount": amount, "currency": currency}
        return "authorization", body

    def _execute(
        self,
        operation: Literal["capture", "void", "refund"],
        idempotency_key: str,
        authorization_id: str,
        amount: int | None,
    ) -> tuple[_OutcomeKind, Any]:
        self.ensure_schema()
        request = {"operation": operation, "authorization_id": authorization_id, "amount": amount}
        if self._is_flaky(authorization_id):
            self._maybe_flake(idempotency_key)
        with _unavailable_on_db_errors(), self._pool.connection() as conn:
            kind, body = self._claim_key(conn, idempotency_key, request)
            if kind is None:
                kind, body = self._decide(
                    conn, operation, idempotency_key, authorization_id, amount
                )
                self._store_outcome(conn, idempotency_key, kind, body)
        return kind, body

    def _is_flaky(self, authorization_id: str) -> bool:
        with _unavailable_on_db_errors(), self._pool.connection() as conn:
            row = conn.execute(
                self._q(
                    sql.SQL("SELECT flaky FROM {schema}.authorizations WHERE authorization_id = %s")
                ),
                (authorization_id,),
            ).fetchone()
        return bool(row and row[0])

    def _decide(
        self,
        conn: psycopg.Connection[TupleRow],
        operation: Literal["capture", "void", "refund"],
        idempotency_key: str,
        authorization_id: str,
        amount: int | None,
    ) -> tuple[_OutcomeKind, Any]:
        row = conn.execute(
            self._q(
                sql.SQL(
                    """SELECT amount, currency, status, captured, refunded
                    FROM {schema}.authorizations WHERE authorization_id = %s FOR UPDATE"""
                )
            ),
            (authorization_id,),
        ).fetchone()
        if row is None:
            return "rejected", {"reason": "unknown_authorization"}
        authorized, currency, status, captured, refunded = row
        requested = authorized if amount is None else amount  # a void releases it all
        reason: str | None
        body: dict[str, Any]
        if operation == "refund":
            reason = None if status == "captured" else "not_captured"
            if reason is None and refunded + requested > captured:
                reason = "refund_exceeds_captured"
            body = {"refund_id": f"re_{uuid.uuid4().hex}", "amount": requested}
        else:
            reason = {"voided": "authorization_voided", "captured": "already_captured"}.get(status)
            if reason is None and requested > authorized:
                reason = "amount_exceeds_authorization"
            body = {"capture_id": f"cap_{uuid.uuid4().hex}", "amount": requested}
            if operation == "void":
                body = {}
        if reason is not None:
            return "rejected", {"reason": reason}
        conn.execute(
            self._q(_UPDATES[operation]),
            {"amount": requested, "authorization_id": authorization_id},
        )
        self._record(conn, operation, authorization_id, requested, currency, idempotency_key)
        return operation, body


@contextlib.contextmanager
def _unavailable_on_db_errors() -> Iterator[None]:
    """A database that cannot be reached looks like a provider that cannot."""
    try:
        yield
    except psycopg.OperationalError as exc:  # includes pool timeouts, deadlocks, lost connections
        raise gateway.GatewayUnavailableError(f"gateway_unreachable: {exc}") from exc


def _decode(kind: _OutcomeKind | None, body: Any, expected: _OutcomeKind, as_type: type[_T]) -> _T:
    if kind == "rejected":
        raise gateway.GatewayRejectedError(str(body["reason"]))
    if kind != expected:  # the key's stored request pins the operation, so never
        raise gateway.GatewayRejectedError("idempotency_key_reused")
    return msgspec.convert(body, as_type)
