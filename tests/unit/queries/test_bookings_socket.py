"""``/ws/bookings`` pure parts, and a customer's status changes on the in-memory read models."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from flightbook.http.problems import Problem
from flightbook.queries.memory import MemoryReadModels
from flightbook.queries.models import StatusChange
from flightbook.queries.service import QueryService
from flightbook.queries.sockets import (
    MAX_SINCE,
    SinceError,
    close_code,
    credentials,
    parse_since,
)
from tests.support import documents
from tests.support.readside import write_booking

pytestmark = pytest.mark.unit


def test_since_names_bookings_and_counts_in_their_canonical_form() -> None:
    one, two = uuid.uuid4(), uuid.uuid4()

    since = parse_since([f"{str(one).upper()}:2", f"{two.hex}:0"])

    assert since == {str(one): 2, str(two): 0}


@pytest.mark.parametrize(
    "values",
    [
        ["nope:1"],
        [f"{uuid.uuid4()}"],
        [f"{uuid.uuid4()}:7"],
        [f"{uuid.uuid4()}:-1"],
        [f"{uuid.uuid4()}:\u0661"],  # an Arabic-Indic digit: isdigit, yet no count
        [f"{uuid.UUID(int=1)}:1", f"{uuid.UUID(int=1)}:2"],
        [f"{uuid.uuid4()}:0" for _ in range(MAX_SINCE + 1)],
    ],
)
def test_a_since_that_is_not_a_booking_and_a_count_is_refused_naming_it(
    values: list[str],
) -> None:
    with pytest.raises(SinceError, match=r"^since: "):
        parse_since(values)


def test_the_header_wins_and_a_browser_token_comes_from_its_subprotocol() -> None:
    assert credentials("Bearer h", ["flightbook.v1", "bearer.s"]) == "Bearer h"
    assert credentials(None, ["flightbook.v1", "bearer.s.t.u"]) == "Bearer s.t.u"
    assert credentials(None, ["flightbook.v1"]) is None


def test_a_refusal_closes_with_4000_plus_its_status_and_a_503_as_try_again_later() -> None:
    assert close_code(Problem(401, "unauthorized", "x")) == 4401
    assert close_code(Problem(403, "forbidden", "x")) == 4403
    assert close_code(Problem(503, "service_unavailable", "x")) == 1013


def _write(store: MemoryReadModels, booking_id: str, statuses: int, customer: str) -> None:
    write_booking(store, documents.booking_through(statuses, booking_id, customer_id=customer))


async def _take(changes: AsyncIterator[StatusChange], n: int) -> list[tuple[str, int, str]]:
    got = [await asyncio.wait_for(anext(changes), 5) for _ in range(n)]
    return [(str(c.booking_id), c.seq, c.status) for c in got]


def test_unfinished_and_named_bookings_first_then_each_change_once_in_order() -> None:
    store = MemoryReadModels()
    service = QueryService(store.read_models(), wait_seconds=0.1)
    open_one, named_final, old_final, other = (str(uuid.uuid4()) for _ in range(4))
    _write(store, open_one, 2, "alice")
    _write(store, named_final, 4, "alice")
    _write(store, old_final, 4, "alice")
    _write(store, other, 1, "bob")

    async def scenario() -> tuple[list[tuple[str, int, str]], list[tuple[str, int, str]]]:
        changes = service.customer_status_changes(
            "alice", since={named_final: 3, other: 0}, wait=0.05
        )
        first = await _take(changes, 3)
        _write(store, other, 2, "bob")  # bob's: never reaches alice
        _write(store, open_one, 2, "alice")  # an announcement that changes nothing
        _write(store, open_one, 4, "alice")
        later = await _take(changes, 2)
        await changes.aclose()
        return first, later

    first, later = asyncio.run(scenario())

    assert sorted(first) == sorted(
        [
            (open_one, 1, "REQUESTED"),
            (open_one, 2, "SEATS_HELD"),
            (named_final, 4, "CONFIRMED"),
        ]
    )
    assert later == [(open_one, 3, "PAYMENT_AUTHORIZED"), (open_one, 4, "CONFIRMED")]
