"""Simulated payment provider with a durable ledger in PostgreSQL.

It stands in for an external system, so it owns its tables and functions (created on
first use in its own schema) and no migration of ours touches them. State lives in the
database, not in this object: a caller killed between two calls finds every
authorization, capture and idempotency key where it left them.

Each operation is one statement, ``SELECT <schema>.authorize(...)`` or
``SELECT <schema>.settle(...)``, run in autocommit: one round trip and one transaction.
The PL/pgSQL functions hold the provider's rules and answer with the outcome as jsonb,
``{"kind": ..., "body": ...}``; a transient failure (a ``tok_flaky`` attempt) is an
answer too, so the attempt it counts is committed with it.

Idempotency, like a Stripe-style provider: the first call with a key stores its
outcome (answer or rejection) in ``idempotency_keys``; a repeat with the same
operation and parameters gets that stored outcome back and changes nothing; a
repeat with anything else is refused with ``idempotency_key_reused``. Concurrent
calls with one key serialise on that key's row (``INSERT ... ON CONFLICT DO
NOTHING`` then ``SELECT ... FOR UPDATE``, each statement of the function seeing what
committed before it), and ``ledger.idempotency_key`` is unique, so a key can never
make two ledger rows. Calls on one authorization serialise on its row (``FOR
UPDATE``), and a partial unique index allows one capture and one void per
authorization. Rows are locked in one order (attempts, key, authorization).
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

from flightbook.eventstore.pools import autocommit
from flightbook.payments import gateway

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping
    from types import TracebackType
    from typing import Self

    from psycopg.rows import TupleRow


__all__ = ("SimulatedGateway",)

_T = TypeVar("_T")


_OutcomeKind = Literal["authorization", "declined", "capture", "void", "refund", "rejected"]

# Every object lives in the adapter's schema; {schema} is filled in with sql.Identifier.
# Run in order, in one transaction, by ensure_schema: tables only ever gain objects
# (an older schema is brought up to date), functions are replaced.
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
    # Count one attempt of a tok_flaky key; the outcome of a failing attempt, else NULL.
    sql.SQL(
        """CREATE OR REPLACE FUNCTION {schema}.count_attempt(p_key text, p_failures integer)
        RETURNS jsonb LANGUAGE plpgsql AS $fn$
        DECLARE
            v_attempts integer;
        BEGIN
            INSERT INTO {schema}.call_attempts AS a (idempotency_key, attempts)
            VALUES (p_key, 1)
            ON CONFLICT (idempotency_key) DO UPDATE SET attempts = a.attempts + 1
            RETURNING a.attempts INTO v_attempts;
            IF v_attempts <= p_failures THEN
                RETURN jsonb_build_object('kind', 'unavailable', 'body', jsonb_build_object(
                    'message', 'flaky failure ' || v_attempts || '/' || p_failures));
            END IF;
            RETURN NULL;
        END
        $fn$"""
    ),
    # Lock the key's row for this transaction: NULL for a first call (the caller then
    # stores its outcome), else the stored outcome, or idempotency_key_reused (not stored).
    # A concurrent first call holding the row makes the INSERT wait for its commit, after
    # which the SELECT (a new snapshot) sees the stored outcome. Rows stored before tokens
    # were fingerprinted hold the plain token: a repeat carrying it still matches them.
    sql.SQL(
        """CREATE OR REPLACE FUNCTION {schema}.claim_key(p_key text, p_request jsonb)
        RETURNS jsonb LANGUAGE plpgsql AS $fn$
        DECLARE
            v_request jsonb;
            v_kind text;
            v_outcome jsonb;
        BEGIN
            INSERT INTO {schema}.idempotency_keys (idempotency_key, request)
            VALUES (p_key, p_request) ON CONFLICT (idempotency_key) DO NOTHING;
            SELECT k.request, k.outcome_kind, k.outcome INTO v_request, v_kind, v_outcome
            FROM {schema}.idempotency_keys k WHERE k.idempotency_key = p_key FOR UPDATE;
            IF NOT FOUND THEN  -- the row was inserted or committed just above
                RETURN jsonb_build_object('kind', 'unavailable', 'body', jsonb_build_object(
                    'message', 'idempotency key vanished'));
            END IF;
            IF v_request IS DISTINCT FROM p_request AND NOT (
                v_request ? 'token' AND p_request ? 'token'
                AND v_request - 'token' = p_request - 'token'
                AND 'sha256:' || encode(sha256(convert_to(v_request ->> 'token', 'UTF8')), 'hex')
                    = p_request ->> 'token'
            ) THEN
                RETURN jsonb_build_object('kind', 'rejected', 'body', jsonb_build_object(
                    'reason', 'idempotency_key_reused'));
            END IF;
            IF v_kind IS NULL THEN
                RETURN NULL;
            END IF;
            RETURN jsonb_build_object('kind', v_kind, 'body', v_outcome);
        END
        $fn$"""
    ),
    sql.SQL(
        """CREATE OR REPLACE FUNCTION {schema}.store_outcome(p_key text, p_kind text, p_body jsonb)
        RETURNS jsonb LANGUAGE plpgsql AS $fn$
        BEGIN
            UPDATE {schema}.idempotency_keys SET outcome_kind = p_kind, outcome = p_body
            WHERE idempotency_key = p_key;
            RETURN jsonb_build_object('kind', p_kind, 'body', p_body);
        END
        $fn$"""
    ),
    # One authorization: p_decline is the reason to decline with (NULL: authorize).
    sql.SQL(
        """CREATE OR REPLACE FUNCTION {schema}.authorize(
            p_key text, p_request jsonb, p_decline text, p_flaky boolean,
            p_flaky_failures integer, p_authorization_id text, p_amount bigint, p_currency text)
        RETURNS jsonb LANGUAGE plpgsql AS $fn$
        DECLARE
            v_outcome jsonb;
        BEGIN
            IF p_flaky THEN
                v_outcome := {schema}.count_attempt(p_key, p_flaky_failures);
                IF v_outcome IS NOT NULL THEN
                    RETURN v_outcome;
                END IF;
            END IF;
            v_outcome := {schema}.claim_key(p_key, p_request);
            IF v_outcome IS NOT NULL THEN
                RETURN v_outcome;
            END IF;
            IF p_decline IS NOT NULL THEN
                RETURN {schema}.store_outcome(
                    p_key, 'declined', jsonb_build_object('reason', p_decline));
            END IF;
            INSERT INTO {schema}.authorizations (authorization_id, amount, currency, flaky, status)
            VALUES (p_authorization_id, p_amount, p_currency, p_flaky, 'authorized');
            INSERT INTO {schema}.ledger
                (operation, authorization_id, amount, currency, idempotency_key)
            VALUES ('authorize', p_authorization_id, p_amount, p_currency, p_key);
            RETURN {schema}.store_outcome(p_key, 'authorization', jsonb_build_object(
                'authorization_id', p_authorization_id, 'amount', p_amount,
                'currency', p_currency));
        END
        $fn$"""
    ),
    # One capture, void or refund of an authorization; p_amount is NULL for a void (it
    # releases the whole authorization), p_id the capture or refund id to answer with.
    sql.SQL(
        """CREATE OR REPLACE FUNCTION {schema}.settle(
            p_operation text, p_key text, p_request jsonb, p_authorization_id text,
            p_amount bigint, p_flaky_failures integer, p_id text)
        RETURNS jsonb LANGUAGE plpgsql AS $fn$
        DECLARE
            v_outcome jsonb;
            v_auth record;
            v_requested bigint;
            v_reason text;
            v_body jsonb;
        BEGIN
            IF (SELECT a.flaky FROM {schema}.authorizations a
                WHERE a.authorization_id = p_authorization_id) THEN
                v_outcome := {schema}.count_attempt(p_key, p_flaky_failures);
                IF v_outcome IS NOT NULL THEN
                    RETURN v_outcome;
                END IF;
            END IF;
            v_outcome := {schema}.claim_key(p_key, p_request);
            IF v_outcome IS NOT NULL THEN
                RETURN v_outcome;
            END IF;
            SELECT a.amount, a.currency, a.status, a.captured, a.refunded INTO v_auth
            FROM {schema}.authorizations a
            WHERE a.authorization_id = p_authorization_id FOR UPDATE;
            IF NOT FOUND THEN
                RETURN {schema}.store_outcome(
                    p_key, 'rejected', jsonb_build_object('reason', 'unknown_authorization'));
            END IF;
            v_requested := coalesce(p_amount, v_auth.amount);
            IF p_operation = 'refund' THEN
                IF v_auth.status <> 'captured' THEN
                    v_reason := 'not_captured';
                ELSIF v_auth.refunded + v_requested > v_auth.captured THEN
                    v_reason := 'refund_exceeds_captured';
                END IF;
                v_body := jsonb_build_object('refund_id', p_id, 'amount', v_requested);
            ELSE
                IF v_auth.status = 'voided' THEN
                    v_reason := 'authorization_voided';
                ELSIF v_auth.status = 'captured' THEN
                    v_reason := 'already_captured';
                ELSIF v_requested > v_auth.amount THEN
                    v_reason := 'amount_exceeds_authorization';
                END IF;
                IF p_operation = 'capture' THEN
                    v_body := jsonb_build_object('capture_id', p_id, 'amount', v_requested);
                ELSE
                    v_body := jsonb_build_object();
                END IF;
            END IF;
            IF v_reason IS NOT NULL THEN
                RETURN {schema}.store_outcome(
                    p_key, 'rejected', jsonb_build_object('reason', v_reason));
            END IF;
            IF p_operation = 'capture' THEN
                UPDATE {schema}.authorizations SET status = 'captured', captured = v_requested
                WHERE authorization_id = p_authorization_id;
            ELSIF p_operation = 'void' THEN
                UPDATE {schema}.authorizations SET status = 'voided'
                WHERE authorization_id = p_authorization_id;
            ELSE
                UPDATE {schema}.authorizations SET refunded = refunded + v_requested
                WHERE authorization_id = p_authorization_id;
            END IF;
            INSERT INTO {schema}.ledger
                (operation, authorization_id, amount, currency, idempotency_key)
            VALUES (p_operation, p_authorization_id, v_requested, v_auth.currency, p_key);
            RETURN {schema}.store_outcome(p_key, p_operation, v_body);
        END
        $fn$"""
    ),
)

_AUTHORIZE = sql.SQL(
    """SELECT {schema}.authorize(%(key)s::text, %(request)s::jsonb, %(decline)s::text,
    %(flaky)s::boolean, %(flaky_failures)s::integer, %(authorization_id)s::text,
    %(amount)s::bigint, %(currency)s::text)"""
)
_SETTLE = sql.SQL(
    """SELECT {schema}.settle(%(operation)s::text, %(key)s::text, %(request)s::jsonb,
    %(authorization_id)s::text, %(amount)s::bigint, %(flaky_failures)s::integer, %(id)s::text)"""
)
_ENTRIES = sql.SQL(
    """SELECT operation, authorization_id, amount, currency, idempotency_key, created_at
    FROM {schema}.ledger
    WHERE (%(operation)s::text IS NULL OR operation = %(operation)s)
      AND (%(authorization_id)s::text IS NULL OR authorization_id = %(authorization_id)s)
      AND (%(prefix)s::text IS NULL OR starts_with(idempotency_key, %(prefix)s))
    ORDER BY entry_id"""
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
    way); any other token declines with ``"invalid_token"``. A token is never stored, nor
    sent to the database: the idempotency records keep its SHA-256 fingerprint
    (:func:`gateway.token_fingerprint`).

    Rejections (:class:`gateway.GatewayRejectedError`): ``invalid_amount``, ``invalid_currency``
    (not stored), ``idempotency_key_reused``, ``unknown_authorization``,
    ``authorization_voided``, ``already_captured``, ``amount_exceeds_authorization``,
    ``not_captured``, ``refund_exceeds_captured`` (stored against the key and replayed).
    A lost database connection surfaces as :class:`gateway.GatewayUnavailableError`.

    Every operation is one statement in its own transaction (autocommit for that statement,
    whatever the pool's connections are set to).

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
        self._authorize_query = _AUTHORIZE.format(schema=self._schema)
        self._settle_query = _SETTLE.format(schema=self._schema)
        self._entries_query = _ENTRIES.format(schema=self._schema)

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
        """Create the schema, tables and functions, or bring older ones up to date.

        Idempotent and concurrency-safe; once per gateway object.
        """
        with self._schema_lock:
            if self._schema_ready:
                return
            with (
                _unavailable_on_db_errors(),
                self._pool.connection() as conn,
                conn.transaction(),
            ):
                # Concurrent CREATE ... IF NOT EXISTS (or OR REPLACE) can still collide:
                # serialise them, until this transaction ends.
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
        decline: str | None = None
        if card in gateway.DECLINE_REASONS:
            decline = gateway.DECLINE_REASONS[card]
        elif card not in {gateway.CardToken.OK, gateway.CardToken.FLAKY}:
            decline = "invalid_token"
        # the token itself never reaches the database: only its fingerprint
        request = {
            "operation": "authorize",
            "amount": amount,
            "currency": currency,
            "token": gateway.token_fingerprint(token),
        }
        kind, body = self._call(
            self._authorize_query,
            {
                "key": idempotency_key,
                "request": Jsonb(request),
                "decline": decline,
                "flaky": card == gateway.CardToken.FLAKY,
                "flaky_failures": self._flaky_failures,
                "authorization_id": f"auth_{uuid.uuid4().hex}",
                "amount": amount,
                "currency": currency,
            },
        )
        if kind == "declined":
            return msgspec.convert(body, gateway.Declined)
        return _decode(kind, body, "authorization", gateway.Authorization)

    def capture(
        self, *, idempotency_key: str, authorization_id: str, amount: int
    ) -> gateway.Capture:
        self._before_call(amount=amount)
        kind, body = self._settle("capture", idempotency_key, authorization_id, amount)
        return _decode(kind, body, "capture", gateway.Capture)

    def void(self, *, idempotency_key: str, authorization_id: str) -> None:
        self._before_call()
        kind, body = self._settle("void", idempotency_key, authorization_id, None)
        _decode(kind, body, "void", dict)

    def refund(self, *, idempotency_key: str, authorization_id: str, amount: int) -> gateway.Refund:
        self._before_call(amount=amount)
        kind, body = self._settle("refund", idempotency_key, authorization_id, amount)
        return _decode(kind, body, "refund", gateway.Refund)

    # -- ledger inspection (PaymentLedger) ---------------------------------------------------

    def _entries(
        self,
        operation: gateway.Operation | None,
        authorization_id: str | None,
        key_prefix: str | None,
    ) -> list[gateway.LedgerEntry]:
        self.ensure_schema()
        params = {
            "operation": operation,
            "authorization_id": authorization_id,
            "prefix": key_prefix,
        }
        with _unavailable_on_db_errors(), self._autocommit() as conn:
            rows = conn.execute(self._entries_query, params).fetchall()
        fields = ("operation", "authorization_id", "amount", "currency", "idempotency_key")
        return [
            gateway.LedgerEntry(
                **dict(zip(fields, row[:5], strict=True)), created_at=row[5].astimezone(UTC)
            )
            for row in rows
        ]

    # -- internals --------------------------------------------------------------------------

    def _before_call(self, *, amount: int | None = None, currency: str | None = None) -> None:
        if self._latency:
            time.sleep(self._latency)
        gateway.refuse_malformed(amount=amount, currency=currency)

    def _settle(
        self,
        operation: Literal["capture", "void", "refund"],
        idempotency_key: str,
        authorization_id: str,
        amount: int | None,
    ) -> tuple[_OutcomeKind, Any]:
        self.ensure_schema()
        request = {"operation": operation, "authorization_id": authorization_id, "amount": amount}
        prefix = {"capture": "cap_", "refund": "re_"}.get(operation)
        return self._call(
            self._settle_query,
            {
                "operation": operation,
                "key": idempotency_key,
                "request": Jsonb(request),
                "authorization_id": authorization_id,
                "amount": amount,
                "flaky_failures": self._flaky_failures,
                "id": None if prefix is None else f"{prefix}{uuid.uuid4().hex}",
            },
        )

    def _call(self, query: sql.Composed, params: Mapping[str, Any]) -> tuple[_OutcomeKind, Any]:
        """Run one operation's statement; its outcome, or raise if it is a transient failure."""
        with _unavailable_on_db_errors(), self._autocommit() as conn:
            row = conn.execute(query, params).fetchone()
        if row is None:  # pragma: no cover - SELECT f(...) always returns a row
            raise gateway.GatewayUnavailableError("no answer")
        outcome: dict[str, Any] = row[0]
        if outcome["kind"] == "unavailable":
            raise gateway.GatewayUnavailableError(str(outcome["body"]["message"]))
        return outcome["kind"], outcome["body"]

    def _autocommit(self) -> contextlib.AbstractContextManager[psycopg.Connection[TupleRow]]:
        """A pooled connection on which each statement is its own transaction.

        No BEGIN and COMMIT round trips; it goes back in the mode it came in (shared pool).
        """
        return autocommit(self._pool)


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
