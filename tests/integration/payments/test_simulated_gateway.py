"""What only the PostgreSQL-backed simulator promises: its cost per call and its own schema."""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, cast

import psycopg
import pytest
from psycopg import pq, sql
from psycopg_pool import ConnectionPool

from flightbook.payments.gateway import Authorization, GatewayUnavailableError
from flightbook.payments.simulated import SimulatedGateway

if TYPE_CHECKING:
    from collections.abc import Iterator

    from psycopg.rows import TupleRow

pytestmark = pytest.mark.integration

PRICE = 45000
FUNCTIONS = ("authorize", "settle", "claim_key", "count_attempt", "store_outcome")


class _CountingConnection(psycopg.Connection[Any]):
    """Records, for every statement, whether it ran in autocommit and what it left open."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.calls: list[tuple[bool, pq.TransactionStatus]] = []

    def execute(self, *args: Any, **kwargs: Any) -> Any:
        autocommit = self.autocommit
        cursor = super().execute(*args, **kwargs)
        self.calls.append((autocommit, self.info.transaction_status))
        return cursor


@pytest.fixture(params=[False, True], ids=["transactional-pool", "autocommit-pool"])
def counting_pool(
    request: pytest.FixtureRequest, postgres_url: str
) -> Iterator[ConnectionPool[psycopg.Connection[TupleRow]]]:
    with ConnectionPool(
        postgres_url,
        min_size=1,
        max_size=1,
        connection_class=_CountingConnection,
        kwargs={"autocommit": request.param},
        open=True,
    ) as pool:
        # the gateway takes any pool of connections (ConnectionPool is invariant in them)
        yield cast("ConnectionPool[psycopg.Connection[TupleRow]]", pool)


def _statements(pool: ConnectionPool[psycopg.Connection[TupleRow]]) -> list[tuple[bool, Any]]:
    with pool.connection() as conn:
        assert isinstance(conn, _CountingConnection)
        calls = list(conn.calls)
        conn.calls.clear()
        return calls


def test_each_operation_is_one_statement_in_its_own_transaction(
    counting_pool: ConnectionPool[psycopg.Connection[TupleRow]], isolated_schema: str
) -> None:
    gateway = SimulatedGateway(counting_pool, schema=isolated_schema, flaky_failures=1)
    gateway.ensure_schema()
    with counting_pool.connection() as conn:
        pool_autocommit = conn.autocommit
    _statements(counting_pool)
    booking = str(uuid.uuid4())
    one_statement_alone = [(True, pq.TransactionStatus.IDLE)]

    def authorize(token: str) -> Authorization:
        result = gateway.authorize(
            idempotency_key=f"{booking}:{token}", token=token, amount=PRICE, currency="EUR"
        )
        assert isinstance(result, Authorization)
        return result

    auth_id = authorize("tok_ok").authorization_id
    assert _statements(counting_pool) == one_statement_alone
    assert authorize("tok_ok").authorization_id == auth_id  # a replay
    assert _statements(counting_pool) == one_statement_alone
    gateway.capture(idempotency_key=f"{booking}:capture", authorization_id=auth_id, amount=PRICE)
    assert _statements(counting_pool) == one_statement_alone
    gateway.refund(idempotency_key=f"{booking}:refund", authorization_id=auth_id, amount=PRICE)
    assert _statements(counting_pool) == one_statement_alone
    with pytest.raises(GatewayUnavailableError, match="flaky failure 1/1"):
        authorize("tok_flaky")
    assert _statements(counting_pool) == one_statement_alone
    flaky_id = authorize("tok_flaky").authorization_id
    with pytest.raises(GatewayUnavailableError, match="flaky failure 1/1"):
        gateway.void(idempotency_key=f"{booking}:void", authorization_id=flaky_id)
    _statements(counting_pool)
    gateway.void(idempotency_key=f"{booking}:void", authorization_id=flaky_id)
    assert _statements(counting_pool) == one_statement_alone

    with counting_pool.connection() as conn:  # the pool's connections come back as they went
        assert conn.autocommit is pool_autocommit


def test_a_lost_connection_is_unavailable_and_the_pool_recovers(
    postgres_url: str, isolated_schema: str
) -> None:
    with ConnectionPool(postgres_url, min_size=1, max_size=1, open=True) as pool:
        gateway = SimulatedGateway(pool, schema=isolated_schema)
        gateway.ensure_schema()
        with pool.connection() as conn:
            pid = conn.info.backend_pid
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))

        with pytest.raises(GatewayUnavailableError, match="gateway_unreachable"):
            gateway.authorize(
                idempotency_key="lost:authorize", token="tok_ok", amount=PRICE, currency="EUR"
            )

        again = gateway.authorize(
            idempotency_key="lost:authorize", token="tok_ok", amount=PRICE, currency="EUR"
        )
        assert isinstance(again, Authorization)
        with pool.connection() as conn:
            assert conn.autocommit is False


def test_an_older_schema_is_brought_up_to_date(postgres_url: str, isolated_schema: str) -> None:
    """A schema made by a version without functions: a new gateway adds them, keeps the rows."""
    with SimulatedGateway(postgres_url, schema=isolated_schema) as old:
        first = old.authorize(
            idempotency_key="old:authorize", token="tok_ok", amount=PRICE, currency="EUR"
        )
        assert isinstance(first, Authorization)
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        for function in FUNCTIONS:
            conn.execute(
                sql.SQL("DROP FUNCTION {}.{}").format(
                    sql.Identifier(isolated_schema), sql.Identifier(function)
                )
            )

    with SimulatedGateway(postgres_url, schema=isolated_schema) as fresh:
        again = fresh.authorize(
            idempotency_key="old:authorize", token="tok_ok", amount=PRICE, currency="EUR"
        )
        fresh.capture(
            idempotency_key="old:capture", authorization_id=first.authorization_id, amount=PRICE
        )
        entries = fresh.entries_for_booking("old")

    assert again == first
    assert [e.operation for e in entries] == ["authorize", "capture"]


def test_gateways_starting_together_create_the_schema_once(
    postgres_url: str, isolated_schema: str
) -> None:
    start = threading.Barrier(4)

    def first_use(n: int) -> Authorization:
        with SimulatedGateway(postgres_url, schema=isolated_schema) as gateway:
            start.wait(timeout=5)
            result = gateway.authorize(
                idempotency_key=f"start-{n}:authorize", token="tok_ok", amount=1, currency="EUR"
            )
            assert isinstance(result, Authorization)
            return result

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(first_use, range(4)))

    assert len({r.authorization_id for r in results}) == 4
