"""One contract for the payment-gateway adapters, run on the in-memory and the PostgreSQL one."""

from __future__ import annotations

import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import psycopg
import pytest
from psycopg import sql

from flightbook.payments.gateway import (
    Authorization,
    Capture,
    CardToken,
    Declined,
    GatewayRejectedError,
    GatewayUnavailableError,
    PaymentGateway,
    PaymentLedger,
    token_fingerprint,
)
from flightbook.payments.memory import InMemoryGateway
from flightbook.payments.simulated import SimulatedGateway

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = pytest.mark.integration

TIMEOUT = 0.2
FLAKY_FAILURES = 2
PRICE = 45000


InspectableGateway = InMemoryGateway | SimulatedGateway
"""A gateway adapter whose ledger a test can read."""


@pytest.fixture
def memory_gateway() -> InMemoryGateway:
    return InMemoryGateway(timeout=TIMEOUT, flaky_failures=FLAKY_FAILURES)


@pytest.fixture
def postgres_gateway(postgres_url: str, isolated_schema: str) -> Iterator[SimulatedGateway]:
    with SimulatedGateway(
        postgres_url, schema=isolated_schema, timeout=TIMEOUT, flaky_failures=FLAKY_FAILURES
    ) as gateway:
        yield gateway


@pytest.fixture(params=["memory_gateway", "postgres_gateway"], ids=["memory", "postgres"])
def gateway(request: pytest.FixtureRequest) -> InspectableGateway:
    adapter: InspectableGateway = request.getfixturevalue(request.param)
    return adapter


@pytest.fixture
def booking() -> str:
    return str(uuid.uuid4())


def authorize(gateway: PaymentGateway, booking: str, token: str = CardToken.OK) -> Authorization:
    result = gateway.authorize(
        idempotency_key=f"{booking}:authorize", token=token, amount=PRICE, currency="EUR"
    )
    assert isinstance(result, Authorization)
    return result


def capture_in_full(gateway: PaymentGateway, booking: str, authorization_id: str) -> Capture:
    return gateway.capture(
        idempotency_key=f"{booking}:capture", authorization_id=authorization_id, amount=PRICE
    )


def test_ok_token_is_authorized_captured_and_refunded(
    gateway: InspectableGateway, booking: str
) -> None:
    authorization = authorize(gateway, booking)
    auth_id = authorization.authorization_id

    capture = capture_in_full(gateway, booking, auth_id)
    refund = gateway.refund(
        idempotency_key=f"{booking}:refund", authorization_id=auth_id, amount=PRICE
    )

    assert (authorization.amount, authorization.currency) == (PRICE, "EUR")
    assert (capture.amount, refund.amount) == (PRICE, PRICE)
    entries = gateway.entries_for_booking(booking)
    assert [(e.operation, e.idempotency_key, e.amount, e.currency) for e in entries] == [
        ("authorize", f"{booking}:authorize", PRICE, "EUR"),
        ("capture", f"{booking}:capture", PRICE, "EUR"),
        ("refund", f"{booking}:refund", PRICE, "EUR"),
    ]
    assert {e.authorization_id for e in entries} == {auth_id}
    assert entries[0].created_at <= entries[1].created_at <= entries[2].created_at
    assert gateway.captured_total(auth_id) == PRICE
    assert gateway.refunded_total(auth_id) == PRICE


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        ("tok_declined", "card_declined"),
        ("tok_insufficient_funds", "insufficient_funds"),
        ("tok_unheard_of", "invalid_token"),
    ],
)
def test_declines_are_answers_and_reserve_nothing(
    gateway: InspectableGateway, booking: str, token: str, reason: str
) -> None:
    key = f"{booking}:authorize"

    first = gateway.authorize(idempotency_key=key, token=token, amount=PRICE, currency="EUR")
    again = gateway.authorize(idempotency_key=key, token=token, amount=PRICE, currency="EUR")

    assert first == again == Declined(reason=reason)
    assert gateway.ledger() == []


def test_repeated_authorize_returns_the_first_authorization_and_records_it_once(
    gateway: InspectableGateway, booking: str
) -> None:
    first = authorize(gateway, booking)

    again = authorize(gateway, booking)

    assert again == first
    assert [e.operation for e in gateway.entries_for_booking(booking)] == ["authorize"]


def test_a_key_reused_with_other_parameters_is_rejected(
    gateway: InspectableGateway, booking: str
) -> None:
    key = f"{booking}:authorize"
    authorization = authorize(gateway, booking)

    with pytest.raises(GatewayRejectedError, match="idempotency_key_reused"):
        gateway.authorize(idempotency_key=key, token="tok_ok", amount=PRICE + 1, currency="EUR")
    with pytest.raises(GatewayRejectedError, match="idempotency_key_reused"):
        gateway.capture(
            idempotency_key=key, authorization_id=authorization.authorization_id, amount=PRICE
        )

    assert len(gateway.ledger()) == 1


def test_flaky_token_fails_transiently_then_succeeds_with_the_same_key(
    gateway: InspectableGateway, booking: str
) -> None:
    for _ in range(FLAKY_FAILURES):
        with pytest.raises(GatewayUnavailableError):
            authorize(gateway, booking, token="tok_flaky")

    authorization = authorize(gateway, booking, token="tok_flaky")

    assert authorize(gateway, booking, token="tok_flaky") == authorization
    assert len(gateway.ledger()) == 1
    with pytest.raises(GatewayUnavailableError):  # failures are counted per idempotency key
        authorize(gateway, "another-booking", token="tok_flaky")


def test_timeout_token_hangs_then_fails_and_records_nothing(
    gateway: InspectableGateway, booking: str
) -> None:
    started = time.monotonic()

    with pytest.raises(GatewayUnavailableError, match="timeout"):
        authorize(gateway, booking, token="tok_timeout")

    assert time.monotonic() - started >= TIMEOUT
    assert gateway.ledger() == []
    authorize(gateway, booking)  # the key was not consumed: another token may use it


def test_capture_after_void_is_rejected(gateway: InspectableGateway, booking: str) -> None:
    auth_id = authorize(gateway, booking).authorization_id
    gateway.void(idempotency_key=f"{booking}:void", authorization_id=auth_id)
    gateway.void(idempotency_key=f"{booking}:void", authorization_id=auth_id)

    with pytest.raises(GatewayRejectedError, match="authorization_voided"):
        gateway.capture(
            idempotency_key=f"{booking}:capture", authorization_id=auth_id, amount=PRICE
        )

    assert [e.operation for e in gateway.entries_for_booking(booking)] == ["authorize", "void"]
    assert gateway.captured_total(auth_id) == 0


def test_an_authorization_is_captured_once_whatever_the_key(
    gateway: InspectableGateway, booking: str
) -> None:
    auth_id = authorize(gateway, booking).authorization_id
    first = gateway.capture(
        idempotency_key=f"{booking}:capture", authorization_id=auth_id, amount=PRICE
    )

    again = gateway.capture(
        idempotency_key=f"{booking}:capture", authorization_id=auth_id, amount=PRICE
    )
    with pytest.raises(GatewayRejectedError, match="already_captured"):
        gateway.capture(
            idempotency_key=f"{booking}:capture-2", authorization_id=auth_id, amount=PRICE
        )
    with pytest.raises(GatewayRejectedError, match="already_captured"):
        gateway.void(idempotency_key=f"{booking}:void", authorization_id=auth_id)

    assert again == first
    assert gateway.captured_total(auth_id) == PRICE


def test_a_capture_cannot_exceed_the_authorization(
    gateway: InspectableGateway, booking: str
) -> None:
    auth_id = authorize(gateway, booking).authorization_id

    with pytest.raises(GatewayRejectedError, match="amount_exceeds_authorization"):
        gateway.capture(
            idempotency_key=f"{booking}:capture", authorization_id=auth_id, amount=PRICE + 1
        )

    assert gateway.captured_total(auth_id) == 0


def test_refunds_beyond_the_captured_amount_are_rejected(
    gateway: InspectableGateway, booking: str
) -> None:
    auth_id = authorize(gateway, booking).authorization_id
    with pytest.raises(GatewayRejectedError, match="not_captured"):
        gateway.refund(idempotency_key=f"{booking}:refund-0", authorization_id=auth_id, amount=1)
    capture_in_full(gateway, booking, auth_id)
    gateway.refund(idempotency_key=f"{booking}:refund-1", authorization_id=auth_id, amount=30000)

    with pytest.raises(GatewayRejectedError, match="refund_exceeds_captured"):
        gateway.refund(
            idempotency_key=f"{booking}:refund-2", authorization_id=auth_id, amount=15001
        )
    gateway.refund(idempotency_key=f"{booking}:refund-3", authorization_id=auth_id, amount=15000)

    assert gateway.refunded_total(auth_id) == PRICE
    with pytest.raises(GatewayRejectedError, match="refund_exceeds_captured"):  # stored, replayed
        gateway.refund(
            idempotency_key=f"{booking}:refund-2", authorization_id=auth_id, amount=15001
        )


def test_operations_on_an_unknown_authorization_are_rejected(
    gateway: InspectableGateway, booking: str
) -> None:
    with pytest.raises(GatewayRejectedError, match="unknown_authorization"):
        gateway.capture(
            idempotency_key=f"{booking}:capture", authorization_id="auth_nope", amount=1
        )
    with pytest.raises(GatewayRejectedError, match="unknown_authorization"):
        gateway.void(idempotency_key=f"{booking}:void", authorization_id="auth_nope")
    with pytest.raises(GatewayRejectedError, match="unknown_authorization"):
        gateway.refund(idempotency_key=f"{booking}:refund", authorization_id="auth_nope", amount=1)

    assert gateway.ledger() == []


@pytest.mark.parametrize(
    ("amount", "currency"), [(0, "EUR"), (-100, "EUR"), (100, "eur"), (100, "EURO")]
)
def test_malformed_money_is_rejected(
    gateway: InspectableGateway, booking: str, amount: int, currency: str
) -> None:
    with pytest.raises(GatewayRejectedError, match="invalid_"):
        gateway.authorize(
            idempotency_key=f"{booking}:authorize", token="tok_ok", amount=amount, currency=currency
        )

    assert gateway.ledger() == []


def test_concurrent_calls_with_the_same_keys_authorize_and_capture_once(
    gateway: InspectableGateway, booking: str
) -> None:
    """Eight saga workers racing on one booking: one authorization, one capture, same answers."""
    start = threading.Barrier(8)

    def authorize_and_capture() -> tuple[Authorization, Capture]:
        start.wait(timeout=5)
        authorization = authorize(gateway, booking)
        capture = capture_in_full(gateway, booking, authorization.authorization_id)
        return authorization, capture

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = [
            future.result() for future in [pool.submit(authorize_and_capture) for _ in range(8)]
        ]

    assert len(set(results)) == 1
    auth_id = results[0][0].authorization_id
    assert [e.operation for e in gateway.entries_for_booking(booking)] == ["authorize", "capture"]
    assert gateway.captured_total(auth_id) == PRICE


def test_state_and_attempt_counts_survive_a_new_gateway_process(
    postgres_gateway: SimulatedGateway, postgres_url: str, isolated_schema: str, booking: str
) -> None:
    """What a killed caller did is in PostgreSQL: a fresh gateway replays it, never redoes it."""
    authorization = authorize(postgres_gateway, booking)
    capture = capture_in_full(postgres_gateway, booking, authorization.authorization_id)
    with pytest.raises(GatewayUnavailableError):
        authorize(postgres_gateway, "flaky-booking", token="tok_flaky")

    with SimulatedGateway(
        postgres_url, schema=isolated_schema, flaky_failures=FLAKY_FAILURES
    ) as fresh:
        replayed = capture_in_full(fresh, booking, authorization.authorization_id)
        with pytest.raises(GatewayUnavailableError):
            authorize(fresh, "flaky-booking", token="tok_flaky")
        authorize(fresh, "flaky-booking", token="tok_flaky")
        entries = fresh.entries_for_booking(booking)

    assert replayed == capture
    assert [e.operation for e in entries] == ["authorize", "capture"]


def test_a_token_with_a_reference_authorizes_like_tok_ok_and_a_repeat_must_carry_it(
    gateway: InspectableGateway, booking: str
) -> None:
    token = f"tok_ok_{uuid.uuid4().hex}"

    first = authorize(gateway, booking, token=token)
    again = authorize(gateway, booking, token=token)

    assert again == first
    with pytest.raises(GatewayRejectedError, match="idempotency_key_reused"):
        authorize(gateway, booking, token=f"tok_ok_{uuid.uuid4().hex}")
    assert [e.operation for e in gateway.entries_for_booking(booking)] == ["authorize"]


def test_the_simulated_provider_keeps_a_fingerprint_of_a_token_never_the_token(
    postgres_gateway: SimulatedGateway, postgres_url: str, isolated_schema: str, booking: str
) -> None:
    token = f"tok_ok_{uuid.uuid4().hex}"

    authorize(postgres_gateway, booking, token=token)

    with psycopg.connect(postgres_url) as conn:
        stored = [
            str(row)
            for table in ("idempotency_keys", "authorizations", "ledger")
            for row in conn.execute(
                sql.SQL("SELECT t::text FROM {}.{} t").format(
                    sql.Identifier(isolated_schema), sql.Identifier(table)
                )
            )
        ]
    assert stored
    assert not [row for row in stored if token in row]
    assert any(token_fingerprint(token) in row for row in stored)


def test_a_repeat_of_a_call_stored_with_the_plain_token_still_matches_it(
    postgres_gateway: SimulatedGateway, postgres_url: str, isolated_schema: str, booking: str
) -> None:
    """Rows written before fingerprints keep the token; a saga retrying one is not refused."""
    first = authorize(postgres_gateway, booking)
    with psycopg.connect(postgres_url) as conn:
        conn.execute(
            sql.SQL(
                "UPDATE {}.idempotency_keys SET request = request || %s::jsonb "
                "WHERE idempotency_key = %s"
            ).format(sql.Identifier(isolated_schema)),
            ('{"token": "tok_ok"}', f"{booking}:authorize"),
        )

    again = authorize(postgres_gateway, booking)

    assert again == first


def test_gateway_adapters_are_payment_gateways(gateway: InspectableGateway) -> None:
    assert isinstance(gateway, PaymentGateway)
    assert isinstance(gateway, PaymentLedger)
