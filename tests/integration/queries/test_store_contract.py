"""One contract for the read-model readers, run on the in-memory fake and on MongoDB + Redis.

Documents are inserted as ``docs/read-model-shapes.md`` says the projection workers write
them; the fake must answer exactly as the real adapters do (STYLE G12).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import uuid

import pytest

from flightbook.queries.ports import ReadModels, SalesQuery
from tests.support import documents
from tests.support.readside import MemoryReadSide, ReadSide, ServerReadSide, write_booking

DAY = documents.DEPARTURE.date().isoformat()


@pytest.fixture
def memory() -> MemoryReadSide:
    return MemoryReadSide()


@pytest.fixture(params=["memory", pytest.param("servers", marks=pytest.mark.integration)])
def side(request: pytest.FixtureRequest) -> ReadSide:
    found: ReadSide = request.getfixturevalue(request.param)
    return found


def test_a_flight_is_found_by_id_and_an_unknown_one_is_none(side: ReadSide) -> None:
    doc = documents.flight_doc(fares=[documents.fare_doc("Y", seats=10, sold=4)])
    side.put_document("flights_v1", doc)

    async def check(models: ReadModels) -> None:
        found = await models.flights.find_flight(doc["_id"])
        assert found is not None
        assert str(found.flight_id) == doc["_id"]
        assert found.departure == documents.DEPARTURE
        assert found.fares[0].seats_left == 6
        assert await models.flights.find_flight(str(uuid.uuid4())) is None

    side.run(check)


def test_search_finds_the_route_and_day_by_departure_then_id_after_a_key(
    side: ReadSide,
) -> None:
    late = documents.flight_doc(departure=documents.DEPARTURE + dt.timedelta(hours=5))
    same_a, same_b = sorted(
        (documents.flight_doc(), documents.flight_doc()), key=lambda d: d["_id"]
    )  # same departure: id decides
    side.put_document("flights_v1", late)
    side.put_document("flights_v1", same_b)
    side.put_document("flights_v1", same_a)
    side.put_document("flights_v1", documents.flight_doc(origin="CDG"))
    side.put_document(
        "flights_v1", documents.flight_doc(departure=documents.DEPARTURE + dt.timedelta(days=1))
    )

    async def check(models: ReadModels) -> None:
        everything = await models.flights.search_flights("LHR", "JFK", DAY, after=None, limit=10)
        assert [str(f.flight_id) for f in everything] == [same_a["_id"], same_b["_id"], late["_id"]]
        first = await models.flights.search_flights("LHR", "JFK", DAY, after=None, limit=1)
        assert [str(f.flight_id) for f in first] == [same_a["_id"]]
        rest = await models.flights.search_flights(
            "LHR", "JFK", DAY, after=(documents.DEPARTURE, same_a["_id"]), limit=10
        )
        assert [str(f.flight_id) for f in rest] == [same_b["_id"], late["_id"]]
        assert await models.flights.search_flights("LHR", "CDG", DAY, after=None, limit=10) == []

    side.run(check)


def test_a_booking_is_found_by_id(side: ReadSide) -> None:
    doc = documents.booking_doc(status="CONFIRMED", passengers=["[erased]"])
    side.put_document("bookings_v1", doc)

    async def check(models: ReadModels) -> None:
        found = await models.bookings.find_booking(doc["_id"])
        assert found is not None
        assert (found.customer_id, found.status, found.created_at) == (
            "alice",
            "CONFIRMED",
            documents.CREATED,
        )
        assert [(p.name, p.email) for p in found.passengers] == [("[erased]", None)]
        assert await models.bookings.find_booking(str(uuid.uuid4())) is None

    side.run(check)


def test_a_customers_bookings_are_newest_first_then_by_id_and_only_theirs(
    side: ReadSide,
) -> None:
    docs = [
        documents.booking_doc(
            customer_id="alice", created_at=documents.CREATED + dt.timedelta(seconds=s)
        )
        for s in (0, 5, 5, 9)
    ]
    for doc in docs:
        side.put_document("bookings_v1", doc)
    side.put_document("bookings_v1", documents.booking_doc(customer_id="bob"))
    newest_first = sorted(docs, key=lambda d: (d["created_at"], d["_id"]), reverse=True)

    async def check(models: ReadModels) -> None:
        all_mine = await models.bookings.customer_bookings("alice", after=None, limit=10)
        assert [str(b.booking_id) for b in all_mine] == [d["_id"] for d in newest_first]
        second = newest_first[1]
        older = await models.bookings.customer_bookings(
            "alice", after=(second["created_at"], second["_id"]), limit=10
        )
        assert [str(b.booking_id) for b in older] == [d["_id"] for d in newest_first[2:]]
        assert len(await models.bookings.customer_bookings("bob", after=None, limit=10)) == 1
        assert await models.bookings.customer_bookings("carol", after=None, limit=10) == []

    side.run(check)


def test_the_active_version_decides_which_collection_and_keys_are_read(side: ReadSide) -> None:
    old = documents.booking_doc(status="REQUESTED")
    new = dict(old, status="CONFIRMED")
    side.put_document("bookings_v1", old)
    side.put_document("bookings_v3", new)
    side.put_hash(f"v1:seats:{old['flight_id']}", {"_v": 1, "Y": 10})
    side.put_hash(f"v2:seats:{old['flight_id']}", {"_v": 1, "Y": 4})

    async def before(models: ReadModels) -> tuple[str | None, dict[str, dict[str, int]]]:
        found = await models.bookings.find_booking(old["_id"])
        return found.status if found else None, await models.seats.seats_left([old["flight_id"]])

    assert side.run(before) == ("REQUESTED", {old["flight_id"]: {"Y": 10}})
    side.put_document("read_model_versions", {"_id": "bookings", "active": 3, "building": None})
    side.put_document("read_model_versions", {"_id": "redis", "active": 2, "building": None})
    assert side.run(before) == ("CONFIRMED", {old["flight_id"]: {"Y": 4}})


def test_seats_left_come_from_the_hashes_without_the_version_field(side: ReadSide) -> None:
    known, unknown = str(uuid.uuid4()), str(uuid.uuid4())
    side.put_hash(f"v1:seats:{known}", {"_v": 12, "Y": 3, "J": 0})

    async def check(models: ReadModels) -> dict[str, dict[str, int]]:
        return await models.seats.seats_left([known, unknown])

    assert side.run(check) == {known: {"Y": 3, "J": 0}}


def test_the_search_cache_gives_back_what_was_put(side: ReadSide) -> None:
    async def check(models: ReadModels) -> tuple[bytes | None, bytes | None, bytes | None]:
        miss = await models.search_cache.cached_search("LHR", "JFK", DAY)
        await models.search_cache.cache_search("LHR", "JFK", DAY, b'{"items":[]}', 60)
        hit = await models.search_cache.cached_search("LHR", "JFK", DAY)
        other = await models.search_cache.cached_search("LHR", "JFK", "2026-12-25")
        return miss, hit, other

    assert side.run(check) == (None, b'{"items":[]}', None)


def test_a_position_is_applied_by_its_marker_or_by_the_low_watermark(side: ReadSide) -> None:
    side.put_document("applied_events", {"_id": "bookings:booking:7", "at": documents.CREATED})
    side.put_document(
        "projection_checkpoints",
        {"_id": "bookings:booking", "low_watermark": 4, "max_applied": 7, "partitions": {}},
    )
    side.put_document("applied_events", {"_id": "flights:inventory:5", "at": documents.CREATED})

    async def check(models: ReadModels) -> list[bool]:
        return [
            await models.progress.has_applied("bookings", "booking", p) for p in (3, 4, 5, 6, 7)
        ] + [await models.progress.has_applied("bookings", "inventory", 5)]

    assert side.run(check) == [True, True, False, False, True, False]


def test_sales_are_filtered_by_period_and_route_and_ordered_by_day_then_route(
    side: ReadSide,
) -> None:
    for doc in (
        documents.sales_doc("2026-10-31"),
        documents.sales_doc("2026-11-02", "LHR", "JFK"),
        documents.sales_doc("2026-11-01", "LHR", "JFK"),
        documents.sales_doc("2026-11-01", "CDG", "JFK"),
        documents.sales_doc("2026-11-03"),
    ):
        side.put_document("sales_daily_v1", doc)
    start, end = dt.date(2026, 11, 1), dt.date(2026, 11, 2)

    async def check(models: ReadModels) -> list[list[str]]:
        a = models.analytics
        return [
            [
                f"{s.date}:{s.origin}"
                for s in await a.sales_days(SalesQuery(start, end, o, d, after, lim))
            ]
            for o, d, after, lim in (
                (None, None, None, 10),
                ("LHR", None, None, 10),
                (None, "CDG", None, 10),
                (None, None, ("2026-11-01", "CDG", "JFK"), 1),
            )
        ]

    assert side.run(check) == [
        ["2026-11-01:CDG", "2026-11-01:LHR", "2026-11-02:LHR"],
        ["2026-11-01:LHR", "2026-11-02:LHR"],
        [],
        ["2026-11-01:LHR"],
    ]


def test_load_factor_and_funnel_are_read_from_their_collections(side: ReadSide) -> None:
    flight_id = str(uuid.uuid4())
    side.put_document("load_factor_v1", documents.load_factor_doc(flight_id, "Y", seats=10, sold=5))
    side.put_document("load_factor_v1", documents.load_factor_doc(flight_id, "J", seats=2, sold=1))
    side.put_document(
        "load_factor_v1", documents.load_factor_doc(str(uuid.uuid4()), "Y", seats=9, sold=9)
    )
    for day in ("2026-11-02", "2026-11-01", "2026-12-01"):
        side.put_document("funnel_daily_v1", documents.funnel_doc(day))

    async def check(models: ReadModels) -> None:
        report = await models.analytics.load_factor(flight_id)
        assert report is not None
        assert [(f.fare, f.sold) for f in report.fares] == [("J", 1), ("Y", 5)]
        assert (report.seats, report.sold) == (12, 6)
        assert await models.analytics.load_factor(str(uuid.uuid4())) is None
        days = await models.analytics.funnel_days(dt.date(2026, 11, 1), dt.date(2026, 11, 30))
        assert [d.date.isoformat() for d in days] == ["2026-11-01", "2026-11-02"]
        assert days[0].rejected == {"NO_SEATS": 1}

    side.run(check)


def test_a_bookings_statuses_come_in_the_order_reached(side: ReadSide) -> None:
    at = documents.CREATED
    reached = {
        "REQUESTED": at,
        "SEATS_HELD": at + dt.timedelta(seconds=1),
        "PAYMENT_AUTHORIZED": at + dt.timedelta(seconds=2),
        "CONFIRMED": None,
        "REJECTED": None,
        "CANCELLED": None,
    }
    doc = {**documents.booking_doc(status="PAYMENT_AUTHORIZED"), "reached": reached, "_v": 3}
    write_booking(side, doc)  # the document, then its announced hash

    async def check(models: ReadModels) -> None:
        from_document = await models.bookings.status_path(doc["_id"])
        from_hash = await models.changes.latest(doc["_id"])
        for path in (from_document, from_hash):
            assert path is not None
            assert (path.version, path.customer_id) == (3, "alice")
            assert [(s.status, s.at) for s in path.steps] == [
                ("REQUESTED", at),
                ("SEATS_HELD", at + dt.timedelta(seconds=1)),
                ("PAYMENT_AUTHORIZED", at + dt.timedelta(seconds=2)),
            ]
        assert await models.bookings.status_path(str(uuid.uuid4())) is None
        assert await models.changes.latest(str(uuid.uuid4())) is None

    side.run(check)


def test_a_write_of_the_bookings_hash_is_announced_to_who_watches_it(side: ReadSide) -> None:
    booking_id, other = str(uuid.uuid4()), str(uuid.uuid4())

    async def check(models: ReadModels) -> None:
        async with models.changes.watch(booking_id) as feed:
            side.put_hash(f"v1:booking:{other}", {"_v": 1, "status": "REQUESTED"})
            assert not await feed.next_change(0.2)  # another booking's write
            side.put_hash(f"v1:booking:{booking_id}", {"_v": 2, "status": "SEATS_HELD"})
            assert await feed.next_change(10.0)

    side.run(check)


def test_a_watch_wakes_after_its_subscription_was_dropped_and_hears_what_came_later(
    servers: ServerReadSide,
) -> None:
    booking_id = str(uuid.uuid4())

    async def check(models: ReadModels) -> None:
        async with models.changes.watch(booking_id) as feed:
            servers.redis.client_kill_filter(_type="pubsub")  # Redis drops the subscription
            assert await feed.next_change(10.0)  # woken: it reads again, nothing is missed
            deadline = time.monotonic() + 10
            while not servers.redis.pubsub_numpat():  # subscribed again
                assert time.monotonic() < deadline, "the subscription did not come back"
                await asyncio.sleep(0.01)
            while await feed.next_change(0.1):  # the wake-up that follows it
                pass
            servers.put_hash(f"v1:booking:{booking_id}", {"_v": 2, "status": "SEATS_HELD"})
            assert await feed.next_change(10.0)

    servers.run(check)


def test_a_customers_status_paths_are_theirs_named_or_unfinished(side: ReadSide) -> None:
    unfinished = documents.booking_through(2)
    finished = documents.booking_through(4)
    named = documents.booking_through(4)
    others = documents.booking_through(1, customer_id="bob")
    for doc in (unfinished, finished, named, others):
        side.put_document("bookings_v1", doc)

    async def check(models: ReadModels) -> None:
        found = await models.bookings.status_paths(
            "alice", booking_ids=[named["_id"], others["_id"]], unfinished=True
        )
        assert set(found) == {unfinished["_id"], named["_id"]}
        assert [s.status for s in found[unfinished["_id"]].steps] == ["REQUESTED", "SEATS_HELD"]
        assert found[named["_id"]].version == 4
        only_named = await models.bookings.status_paths("alice", booking_ids=[finished["_id"]])
        assert set(only_named) == {finished["_id"]}
        assert await models.bookings.status_paths("alice") == {}

    side.run(check)


def test_a_bookings_write_is_announced_to_its_customers_watchers_only(side: ReadSide) -> None:
    mine, his = str(uuid.uuid4()), str(uuid.uuid4())

    async def check(models: ReadModels) -> None:
        async with models.changes.watch_customer("alice") as feed:
            write_booking(side, documents.booking_through(1, his, customer_id="bob"))
            assert await feed.next_changes(0.2) == set()  # another customer's booking
            write_booking(side, documents.booking_through(1, mine))
            write_booking(side, documents.booking_through(2, mine))
            changed: set[str] = set()
            deadline = asyncio.get_running_loop().time() + 10
            while not changed and asyncio.get_running_loop().time() < deadline:
                changed = await feed.next_changes(1.0)
            assert changed == {mine}

    side.run(check)
