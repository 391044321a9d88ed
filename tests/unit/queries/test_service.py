"""The query use cases on the in-memory read models: cache, fresh seats, paging, visibility."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import Coroutine
from typing import Any, TypeVar

import msgspec
import pytest

from flightbook.http.tokens import Principal
from flightbook.queries.cursors import CursorError
from flightbook.queries.memory import MemoryReadModels
from flightbook.queries.models import FlightPage
from flightbook.queries.service import MAX_PAGE, SEARCH_CACHE_SECONDS, QueryService
from tests.support import documents
from tests.support.memory import Seconds

pytestmark = pytest.mark.unit

T = TypeVar("T")
DAY = documents.DEPARTURE.date()
CACHE_KEY = "v1:search:LHR:JFK:2026-12-24"


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)


def who(subject: str, *roles: str) -> Principal:
    return Principal(subject=subject, roles=frozenset(roles))


@pytest.fixture
def clock() -> Seconds:
    return Seconds()


@pytest.fixture
def store(clock: Seconds) -> MemoryReadModels:
    return MemoryReadModels(clock=clock)


@pytest.fixture
def service(store: MemoryReadModels) -> QueryService:
    return QueryService(store.read_models(), wait_seconds=0.1)


def flights(store: MemoryReadModels, n: int) -> list[str]:
    """``n`` flights LHR-JFK on DAY, an hour apart; their ids by departure."""
    ids = []
    for i in range(n):
        doc = documents.flight_doc(departure=documents.DEPARTURE + dt.timedelta(minutes=i))
        store.put_document("flights_v1", doc)
        ids.append(doc["_id"])
    return ids


def test_the_first_search_reads_mongo_and_fills_the_cache_for_a_minute(
    store: MemoryReadModels, service: QueryService
) -> None:
    ids = flights(store, 3)

    page = run(service.search_flights("LHR", "JFK", DAY))

    assert [str(f.flight_id) for f in page.items] == ids
    assert page.next_cursor is None
    assert store.reads == {"flights_v1": 1}
    cached, expires_at = store.strings[CACHE_KEY]
    assert msgspec.json.decode(cached, type=FlightPage) == page
    assert expires_at == SEARCH_CACHE_SECONDS


def test_a_repeated_search_is_answered_from_the_cache(
    store: MemoryReadModels, service: QueryService
) -> None:
    flights(store, 2)
    first = run(service.search_flights("LHR", "JFK", DAY))

    again = run(service.search_flights("LHR", "JFK", DAY, limit=1))

    assert store.reads == {"flights_v1": 1}
    assert again.items == first.items[:1]
    assert again.next_cursor is not None


def test_an_expired_or_invalidated_cache_reads_mongo_again(
    store: MemoryReadModels, service: QueryService, clock: Seconds
) -> None:
    flights(store, 1)
    run(service.search_flights("LHR", "JFK", DAY))
    clock.now = SEARCH_CACHE_SECONDS

    run(service.search_flights("LHR", "JFK", DAY))
    store.delete_key(CACHE_KEY)  # as the flights worker does on a change
    run(service.search_flights("LHR", "JFK", DAY))

    assert store.reads == {"flights_v1": 3}


def test_a_search_after_a_write_skips_the_cache(
    store: MemoryReadModels, service: QueryService
) -> None:
    ids = flights(store, 1)
    run(service.search_flights("LHR", "JFK", DAY))
    store.put_document("flights_v1", documents.flight_doc(ids[0], status="CANCELLED"))

    page = run(service.search_flights("LHR", "JFK", DAY, use_cache=False))

    assert page.items[0].status == "CANCELLED"


def test_seats_left_come_from_redis_even_on_a_cache_hit(
    store: MemoryReadModels, service: QueryService
) -> None:
    (flight_id,) = flights(store, 1)
    run(service.search_flights("LHR", "JFK", DAY))
    store.put_hash(f"v1:seats:{flight_id}", {"_v": 7, "Y": 12})

    page = run(service.search_flights("LHR", "JFK", DAY))
    one = run(service.flight(uuid.UUID(flight_id)))

    assert store.reads == {"flights_v1": 2}  # the search once, the flight once
    assert page.items[0].fares[0].seats_left == 12
    assert one is not None
    assert one.fares[0].seats_left == 12


def test_pages_follow_each_other_by_departure_without_gaps_or_repeats(
    store: MemoryReadModels, service: QueryService
) -> None:
    ids = flights(store, 7)

    seen: list[str] = []
    page = run(service.search_flights("LHR", "JFK", DAY, limit=3))
    seen += [str(f.flight_id) for f in page.items]
    while page.next_cursor is not None:
        page = run(service.search_flights("LHR", "JFK", DAY, cursor=page.next_cursor, limit=3))
        seen += [str(f.flight_id) for f in page.items]

    assert seen == ids


def test_the_cache_holds_the_first_hundred_and_says_where_to_go_on(
    store: MemoryReadModels, service: QueryService
) -> None:
    ids = flights(store, MAX_PAGE + 5)

    first = run(service.search_flights("LHR", "JFK", DAY, limit=MAX_PAGE))
    cached = run(service.search_flights("LHR", "JFK", DAY, limit=MAX_PAGE))
    assert cached.next_cursor is not None
    rest = run(service.search_flights("LHR", "JFK", DAY, cursor=cached.next_cursor))

    assert first == cached
    assert [str(f.flight_id) for f in cached.items + rest.items] == ids
    assert rest.next_cursor is None


def test_a_booking_is_seen_by_its_customer_an_agent_and_an_auditor_only(
    store: MemoryReadModels, service: QueryService
) -> None:
    doc = documents.booking_doc(customer_id="alice")
    store.put_document("bookings_v1", doc)
    booking_id = uuid.UUID(doc["_id"])

    seen = {
        name: run(service.booking(booking_id, principal)) is not None
        for name, principal in {
            "owner": who("alice", "customer"),
            "agent": who("agent-7", "agent"),
            "auditor": who("audrey", "auditor"),
            "other customer": who("bob", "customer"),
            "ops": who("olga", "ops"),
            "analyst": who("ann", "analyst"),
        }.items()
    }

    assert seen == {
        "owner": True,
        "agent": True,
        "auditor": True,
        "other customer": False,
        "ops": False,
        "analyst": False,
    }


def test_my_bookings_are_newest_first_paged_and_only_mine(
    store: MemoryReadModels, service: QueryService
) -> None:
    mine = []
    for i in range(5):
        doc = documents.booking_doc(
            customer_id="alice", created_at=documents.CREATED + dt.timedelta(minutes=i % 3)
        )
        store.put_document("bookings_v1", doc)
        mine.append(doc)
    store.put_document("bookings_v1", documents.booking_doc(customer_id="bob"))
    expected = [
        d["_id"] for d in sorted(mine, key=lambda d: (d["created_at"], d["_id"]), reverse=True)
    ]

    seen: list[str] = []
    page = run(service.bookings_of(who("alice", "customer"), limit=2))
    seen += [str(b.booking_id) for b in page.items]
    while page.next_cursor is not None:
        page = run(service.bookings_of(who("alice"), cursor=page.next_cursor, limit=2))
        seen += [str(b.booking_id) for b in page.items]

    assert seen == expected
    assert run(service.bookings_of(who("carol"))).items == []


def test_a_flight_cursor_is_no_booking_cursor(
    store: MemoryReadModels, service: QueryService
) -> None:
    flights(store, 3)
    page = run(service.search_flights("LHR", "JFK", DAY, limit=1))
    assert page.next_cursor is not None

    with pytest.raises(CursorError):
        run(service.bookings_of(who("alice"), cursor=page.next_cursor))


def test_sales_are_paged_by_day_then_route(store: MemoryReadModels, service: QueryService) -> None:
    for day in ("2026-11-01", "2026-11-02"):
        for route in (("CDG", "JFK"), ("LHR", "JFK")):
            store.put_document("sales_daily_v1", documents.sales_doc(day, *route))

    first = run(service.sales(dt.date(2026, 11, 1), dt.date(2026, 11, 2), limit=3))
    rest = run(
        service.sales(dt.date(2026, 11, 1), dt.date(2026, 11, 2), cursor=first.next_cursor, limit=3)
    )
    only = run(service.sales(dt.date(2026, 11, 2), dt.date(2026, 11, 2), origin="LHR"))

    assert [(s.date.isoformat(), s.origin) for s in first.items + rest.items] == [
        ("2026-11-01", "CDG"),
        ("2026-11-01", "LHR"),
        ("2026-11-02", "CDG"),
        ("2026-11-02", "LHR"),
    ]
    assert rest.next_cursor is None
    assert [(s.date.isoformat(), s.origin) for s in only.items] == [("2026-11-02", "LHR")]


def test_a_newer_read_model_version_is_read_once_it_is_active(
    store: MemoryReadModels, service: QueryService
) -> None:
    doc = documents.flight_doc(fares=[documents.fare_doc(seats=5)])
    store.put_document("flights_v2", doc)
    flight_id = uuid.UUID(doc["_id"])
    assert run(service.flight(flight_id)) is None

    store.put_document("read_model_versions", {"_id": "flights", "active": 2})

    assert run(service.flight(flight_id)) is not None
