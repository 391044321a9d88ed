"""One contract for the projection stores, run on the in-memory fakes and on MongoDB and Redis.

The fakes back the unit tests and the in-memory replay of ``audit verify``; this suite keeps
them honest (STYLE G12).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from flightbook.config.settings import Settings
from flightbook.contracts.readmodels import Index
from flightbook.projections.memory import MemoryDocuments, MemoryHashes, MemoryProgress
from flightbook.projections.mongo import MongoDocuments, MongoProgress
from flightbook.projections.ports import (
    BatchProgress,
    DeadLetter,
    DocumentStore,
    GuardedWrite,
    HashStore,
    HashWrite,
    ProgressStore,
)
from flightbook.projections.redis import RedisHashes
from tests.support.system import eventually

AT = dt.datetime(2031, 1, 1, 12, 0, 0, 123000, tzinfo=dt.UTC)


def memory_and(real: str) -> list[object]:
    """A contract fixture's two sides: the in-memory fake (a unit test) and ``real``."""
    return [
        pytest.param("memory", marks=pytest.mark.unit),
        pytest.param(real, marks=pytest.mark.integration),
    ]


@pytest.fixture(params=memory_and("mongo"))
def documents(request: pytest.FixtureRequest) -> DocumentStore:
    if request.param == "memory":
        return MemoryDocuments()
    return MongoDocuments(request.getfixturevalue("mongo"))


@pytest.fixture(params=memory_and("redis"))
def hashes(request: pytest.FixtureRequest) -> tuple[HashStore, str]:
    if request.param == "memory":
        return MemoryHashes(), "fb:"
    settings: Settings = request.getfixturevalue("settings")
    return RedisHashes(request.getfixturevalue("cache")), settings.redis_prefix


@pytest.fixture(params=memory_and("mongo"))
def progress(request: pytest.FixtureRequest) -> ProgressStore:
    if request.param == "memory":
        return MemoryProgress()
    store = MongoProgress(request.getfixturevalue("mongo"))
    store.ensure_indexes()
    return store


def doc(identifier: str, version: int, **fields: object) -> dict[str, object]:
    return {"_id": identifier, "_v": version, "at": AT, "nested": {"list": [{"a": 1}]}, **fields}


# -- documents --------------------------------------------------------------------------------


def test_a_new_document_is_inserted_once(documents: DocumentStore) -> None:
    documents.ensure_indexes("c_v1", [Index((("customer_id", 1), ("created_at", -1)))])

    first = documents.write_guarded("c_v1", [GuardedWrite("a", None, doc("a", 1))])
    again = documents.write_guarded("c_v1", [GuardedWrite("a", None, doc("a", 1, x=2))])

    assert (first, again) == (set(), {"a"})
    assert documents.get_many("c_v1", ["a", "b"]) == {"a": doc("a", 1)}


def test_a_replace_holds_only_while_the_version_is_the_one_read(documents: DocumentStore) -> None:
    documents.write_guarded(
        "c_v1", [GuardedWrite("a", None, doc("a", 1)), GuardedWrite("b", None, doc("b", 1))]
    )

    failed = documents.write_guarded(
        "c_v1",
        [
            GuardedWrite("a", 1, doc("a", 2, status="ok")),
            GuardedWrite("b", 5, doc("b", 6)),
            GuardedWrite("c", 1, doc("c", 2)),
        ],
    )

    assert failed == {"b", "c"}
    assert documents.get_many("c_v1", ["a", "b", "c"]) == {
        "a": doc("a", 2, status="ok"),
        "b": doc("b", 1),
    }


def test_put_many_overwrites_by_key_even_with_date_like_ids(documents: DocumentStore) -> None:
    """Analytics ids start like dates ("2031-01-01:LHR-JFK"): written by their key fields."""
    key = ("date", "origin", "destination")
    row = {"_id": "2031-01-01:LHR-JFK", "date": "2031-01-01", "origin": "LHR", "destination": "JFK"}

    documents.put_many("s_v1", [{**row, "n": 1, "by": {"EUR": 1}}], key)
    documents.put_many("s_v1", [{**row, "n": 2, "by": {"EUR": 2}}], key)

    assert list(documents.scan("s_v1")) == [{**row, "n": 2, "by": {"EUR": 2}}]
    assert documents.find_in("s_v1", "date", ["2031-01-01"], ("n",)) == [
        {"_id": "2031-01-01:LHR-JFK", "n": 2}
    ]


def test_find_in_scan_and_drop(documents: DocumentStore) -> None:
    documents.put_many("d_v1", [{"_id": f"k{n}", "day": f"d{n % 2}", "n": n} for n in range(4)])

    found = documents.find_in("d_v1", "day", ["d1"], ("n",))

    assert sorted(d["n"] for d in found) == [1, 3]
    assert set(found[0]) == {"_id", "n"}
    assert len(list(documents.scan("d_v1"))) == 4
    documents.drop("d_v1")
    assert list(documents.scan("d_v1")) == []


# -- hashes -----------------------------------------------------------------------------------


def test_a_hash_is_written_only_over_a_lower_version(hashes: tuple[HashStore, str]) -> None:
    store, prefix = hashes
    key = prefix + "v1:seats:f"

    written = store.put_guarded([HashWrite(key, {"_v": "3", "Y": "7"})])
    older = store.put_guarded([HashWrite(key, {"_v": "2", "Y": "9"})])
    same = store.put_guarded([HashWrite(key, {"_v": "3", "Y": "8"})])
    newer = store.put_guarded([HashWrite(key, {"_v": "10", "Y": "1"})])

    assert (written, older, same, newer) == (1, 0, 0, 1)
    assert store.get(key) == {"_v": "10", "Y": "1"}


def _heard(request: pytest.FixtureRequest, store: HashStore, channels: list[str]) -> Any:
    """A function giving the ``(channel, message)`` announcements on ``channels`` so far."""
    if isinstance(store, MemoryHashes):
        return lambda: [p for p in store.published if p[0] in channels]
    pubsub = request.getfixturevalue("cache").pubsub()
    pubsub.subscribe(*channels)
    request.addfinalizer(pubsub.close)
    heard: list[tuple[str, str]] = []

    def drain() -> list[tuple[str, str]]:
        while (
            message := pubsub.get_message(ignore_subscribe_messages=True, timeout=0.5)
        ) is not None:
            heard.append((message["channel"].decode(), message["data"].decode()))
        return heard

    return drain


def test_a_write_is_announced_on_its_key_and_its_channels_and_a_refused_one_is_not(
    hashes: tuple[HashStore, str], request: pytest.FixtureRequest
) -> None:
    store, prefix = hashes
    key, channel = prefix + "v1:booking:b", prefix + "customer:c"
    heard = _heard(request, store, [key, channel])

    store.put_guarded([HashWrite(key, {"_v": "2", "status": "SEATS_HELD"}, ((channel, "b"),))])
    store.put_guarded([HashWrite(key, {"_v": "1", "status": "REQUESTED"}, ((channel, "b"),))])
    store.put_guarded([HashWrite(key, {"_v": "3", "status": "CONFIRMED"}, ((channel, "b"),))])

    assert eventually(heard, lambda got: len(got) >= 4, what="four announcements") == [
        (key, "2"),
        (channel, "b"),
        (key, "3"),
        (channel, "b"),
    ]
    assert store.get(key) == {"_v": "3", "status": "CONFIRMED"}


def test_keys_by_prefix_and_deletes(hashes: tuple[HashStore, str]) -> None:
    store, prefix = hashes
    store.put_guarded([HashWrite(prefix + f"v1:booking:{n}", {"_v": "1"}) for n in range(3)])
    store.put_guarded([HashWrite(prefix + "v2:booking:0", {"_v": "1"})])

    assert store.keys(prefix + "v1:") == [prefix + f"v1:booking:{n}" for n in range(3)]
    assert store.get_many([prefix + "v1:booking:2", prefix + "v1:missing"]) == {
        prefix + "v1:booking:2": {"_v": "1"}
    }
    store.delete([prefix + "v1:booking:0", prefix + "v1:missing"])
    assert store.delete_prefix(prefix + "v1:") == 2
    assert store.keys(prefix + "v1:") == []
    assert store.get(prefix + "v2:booking:0") == {"_v": "1"}


# -- progress ---------------------------------------------------------------------------------


def test_versions_default_to_one_and_switch(progress: ProgressStore) -> None:
    assert progress.versions() == {}

    progress.start_building("bookings", 2)
    building = progress.versions()["bookings"]
    progress.switch("bookings", 2)

    assert (building.active, building.building) == (1, 2)
    assert (progress.versions()["bookings"].active, progress.versions()["bookings"].building) == (
        2,
        None,
    )


def test_checkpoints_only_move_forward(progress: ProgressStore) -> None:
    progress.record_batch("bookings", "booking", BatchProgress(9, applied=3, duplicates=1, at=AT))
    progress.record_batch("bookings", "booking", BatchProgress(5, applied=2, duplicates=0, at=AT))
    progress.raise_low_watermark("bookings", "booking", 7)
    progress.raise_low_watermark("bookings", "booking", 4)
    progress.merge_partitions("bookings", "booking", {"t.booking.events:0": 10})
    progress.merge_partitions("bookings", "booking", {"t.booking.events:0": 8, "t.x:1": 3})

    checkpoint = progress.checkpoint("bookings", "booking")

    assert (checkpoint.max_applied, checkpoint.low_watermark) == (9, 7)
    assert (checkpoint.events_applied, checkpoint.duplicates_skipped) == (5, 1)
    assert checkpoint.partitions == {"t.booking.events:0": 10, "t.x:1": 3}
    assert isinstance(checkpoint.last_applied_at, dt.datetime)
    progress.reset_partitions("bookings", "booking")
    assert progress.checkpoint("bookings", "booking").partitions == {}


def test_markers_are_kept_once_and_purged_by_age(progress: ProgressStore) -> None:
    progress.mark_applied("flights", "inventory", [1, 2, 5], AT)
    progress.mark_applied("flights", "inventory", [2, 6], AT + dt.timedelta(hours=2))
    progress.mark_applied("bookings", "booking", [3], AT)

    assert progress.applied_between("flights", "inventory", 1, 6) == {2, 5, 6}
    assert progress.purge_markers(AT + dt.timedelta(hours=1)) == 4
    assert progress.applied_between("flights", "inventory", 0, 10) == {6}
    progress.mark_applied("flights", "inventory", [999, 1000, 1001, 2500, 2501], AT)
    assert progress.applied_between("flights", "inventory", 998, 2500) == {999, 1000, 1001, 2500}


def test_dead_letters_are_listed_replayed_and_counted(progress: ProgressStore) -> None:
    letter = DeadLetter(
        id="bookings:t:0:5",
        read_model="bookings",
        topic="t",
        partition=0,
        offset=5,
        key="k",
        raw="{not json",
        error="DecodeError: bad",
        failed_at=AT,
    )
    progress.add_dead_letter(letter)
    progress.add_dead_letter(letter)  # delivered again
    progress.add_dead_letter(
        DeadLetter(**{**letter.__dict__, "id": "flights:t:0:1", "read_model": "flights"})
    )

    (pending,) = progress.dead_letters("bookings")
    assert (pending.attempts, pending.raw, pending.failed_at) == (2, "{not json", AT)
    assert progress.count_dead_letters("bookings") == 1
    progress.mark_failed_again(letter.id, "still bad", AT)
    progress.mark_replayed(letter.id, AT)
    assert progress.dead_letters("bookings") == []
    (replayed,) = progress.dead_letters("bookings", pending=False)
    assert (replayed.error, replayed.attempts) == ("still bad", 3)
    assert replayed.replayed_at is not None
    assert len(progress.dead_letters()) == 1


def test_stale_analytics_keys_stay_until_recomputed_at_their_revision(
    progress: ProgressStore,
) -> None:
    progress.mark_stale("bookings", ["2026-11-01", "2026-11-02"])
    progress.mark_stale("flights", ["2026-11-01"])
    seen = progress.stale("bookings")
    progress.mark_stale("bookings", ["2026-11-02"])  # changed again while being recomputed

    progress.clear_stale("bookings", seen)

    assert set(seen) == {"2026-11-01", "2026-11-02"}
    assert list(progress.stale("bookings")) == ["2026-11-02"]
    assert list(progress.stale("flights")) == ["2026-11-01"]
    progress.clear_stale("bookings", progress.stale("bookings"))
    assert progress.stale("bookings") == {}
