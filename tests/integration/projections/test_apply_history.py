"""A realistic history applied to MongoDB and Redis equals a fresh replay, whatever the delivery."""

from __future__ import annotations

import random
from typing import Any

import pytest

from flightbook.config.settings import Settings
from flightbook.contracts.envelope import Envelope
from flightbook.contracts.readmodels import DEAD_LETTERS
from flightbook.projections.engine import Targets
from flightbook.projections.ports import DeadLetter
from flightbook.projections.services import ProjectionServices
from flightbook.projections.tools.status import read_model_status
from flightbook.projections.tools.verify import (
    compare_read_models,
    expected_from_event_store,
    replay_read_models,
)
from flightbook.projections.watermarks import advance_low_watermark
from tests.support.catchup import catch_up
from tests.support.history import History

pytestmark = pytest.mark.integration

LIVE = Targets(documents=(1,), redis=(1,), analytics=(1,))
WORKER_OF = {"booking": "bookings", "inventory": "flights"}


def stored(services: ProjectionServices, context: str) -> list[Envelope]:
    items = services.reader.read(context, after=0, limit=100_000)
    return [item.envelope for item in items if item.envelope is not None]


def apply_all(
    services: ProjectionServices, envelopes: dict[str, list[Envelope]], batch: int = 25
) -> tuple[int, int]:
    applied = duplicates = 0
    for context in ("inventory", "booking"):
        engine = services.engine(WORKER_OF[context])
        found = envelopes[context]
        for start in range(0, len(found), batch):
            result = engine.apply(found[start : start + batch], LIVE)
            applied += result.applied
            duplicates += result.duplicates
        engine.refresh_analytics(LIVE)  # as the worker does when it has nothing to consume
    return applied, duplicates


def snapshot(services: ProjectionServices) -> dict[str, Any]:
    database = services.database
    names = sorted(n for n in database.list_collection_names() if "_v" in n)
    mongo = {name: sorted(database[name].find({}), key=lambda d: str(d["_id"])) for name in names}
    prefix = services.settings.redis_prefix
    keys = sorted(services.hashes.keys(prefix))
    return {"mongo": mongo, "redis": {key: services.hashes.get(key) for key in keys}}


def test_the_history_applied_twice_equals_a_fresh_replay_and_the_second_time_changes_nothing(
    settings: Settings, services: ProjectionServices, history: History
) -> None:
    envelopes = {c: stored(services, c) for c in ("booking", "inventory")}
    total = sum(len(e) for e in envelopes.values())

    first = apply_all(services, envelopes)
    after_first = snapshot(services)
    second = apply_all(services, envelopes, batch=7)

    assert first == (total, 0)
    assert second == (0, total)
    assert snapshot(services) == after_first
    assert (
        compare_read_models(replay_read_models(settings), services.database, services.redis) == []
    )
    named = services.database["bookings_v1"].find_one({"_id": str(history.named)})
    assert named is not None
    assert named["passengers"] == [{"name": "Ada Lovelace", "email": "ada@example.com"}]
    assert named["route"] == "LHR-JFK"
    doomed = services.database["flights_v1"].find_one({"_id": str(history.flights["doomed"])})
    assert doomed is not None
    assert doomed["status"] == "CANCELLED"


def test_lost_duplicated_and_reordered_messages_still_give_the_replayed_read_models(
    settings: Settings, services: ProjectionServices, history: History
) -> None:
    """Every aggregate's last event arrives; anything before it may be lost, repeated or
    late: gaps are repaired from the event store, repeats skipped."""
    rng = random.Random(3)
    delivered: dict[str, list[Envelope]] = {}
    for context in ("booking", "inventory"):
        envelopes = stored(services, context)
        last = {e.aggregate_id: e.aggregate_version for e in envelopes}
        kept = [
            e
            for e in envelopes
            if e.aggregate_version == last[e.aggregate_id] or rng.random() < 0.6
        ]
        kept += rng.sample(kept, len(kept) // 3)  # some twice
        rng.shuffle(kept)
        delivered[context] = kept

    apply_all(services, delivered, batch=11)

    assert (
        compare_read_models(replay_read_models(settings), services.database, services.redis) == []
    )
    checkpoint = services.progress.checkpoint("bookings", "booking")
    assert checkpoint.duplicates_skipped > 0
    assert checkpoint.events_applied == len(stored(services, "booking"))


def test_catching_up_from_the_event_store_completes_the_read_models_and_the_watermarks(
    settings: Settings, services: ProjectionServices, history: History
) -> None:
    heads = {c: services.reader.head(c) for c in ("booking", "inventory")}
    catch_up(services, "start")

    assert (
        compare_read_models(replay_read_models(settings), services.database, services.redis) == []
    )
    assert services.progress.checkpoint("bookings", "booking").low_watermark == heads["booking"]
    assert services.progress.checkpoint("flights", "inventory").low_watermark == heads["inventory"]
    statuses = {s.name: s for s in read_model_status(services.progress, services.reader)}
    assert all(
        c.lag_positions == 0 and c.lag_seconds == 0 for s in statuses.values() for c in s.contexts
    )


def test_the_low_watermark_stops_at_the_first_position_without_a_marker(
    services: ProjectionServices, history: History
) -> None:
    envelopes = stored(services, "booking")
    engine = services.engine("bookings")
    last = {e.aggregate_id: e for e in envelopes}  # nothing after it reveals it missing
    missing = min(last.values(), key=lambda e: e.position)
    engine.apply([e for e in envelopes if e.position != missing.position], LIVE)

    low = advance_low_watermark(services.progress, services.reader, "bookings", "booking")

    assert low == missing.position - 1
    engine.apply([missing], LIVE)
    assert advance_low_watermark(services.progress, services.reader, "bookings", "booking") == (
        envelopes[-1].position
    )


def test_verify_names_each_document_and_field_that_differs(
    settings: Settings, services: ProjectionServices, history: History
) -> None:
    apply_all(services, {c: stored(services, c) for c in ("booking", "inventory")})
    booking = str(history.named)
    flight = str(history.flights["big"])
    services.database["bookings_v1"].update_one({"_id": booking}, {"$set": {"status": "LOST"}})
    services.database["flights_v1"].delete_one({"_id": flight})
    services.redis.hset(f"{settings.redis_prefix}v1:booking:{booking}", "status", "LOST")

    differences = compare_read_models(
        replay_read_models(settings), services.database, services.redis
    )

    found = {(d.store, d.where, d.key, d.field, d.found) for d in differences}
    assert ("mongo", "bookings_v1", booking, "status", "LOST") in found
    assert ("mongo", "flights_v1", flight, "", "<missing>") in found
    assert ("redis", f"{settings.redis_prefix}v1:", f"booking:{booking}", "status", "LOST") in found
    assert len(differences) == 3
    assert all(d.last_event.startswith("version ") for d in differences)  # what touched it last


def test_a_dead_letter_is_replayed_once_what_it_needs_is_there(
    services: ProjectionServices, history: History
) -> None:
    from flightbook.projections.deadletters import letter_for_envelope
    from flightbook.projections.tools.deadletters import replay_dead_letters

    envelopes = stored(services, "booking")
    late = envelopes[-1]
    engine = services.engine("bookings")
    engine.apply([e for e in envelopes if e.aggregate_id != late.aggregate_id], LIVE)
    garbage = DeadLetter(
        id="bookings:t:0:1",
        read_model="bookings",
        topic="t",
        partition=0,
        offset=1,
        key=None,
        raw="\\xff not json",
        error="DecodeError",
        failed_at=late.occurred_at,
    )
    services.progress.add_dead_letter(garbage)
    services.progress.add_dead_letter(
        letter_for_envelope(
            "bookings", "booking", late, RuntimeError("store down"), late.occurred_at
        )
    )

    outcome = replay_dead_letters(services)

    assert (outcome.replayed, outcome.failed) == (1, 1)
    doc = services.database["bookings_v1"].find_one({"_id": str(late.aggregate_id)})
    assert doc is not None
    assert doc["_v"] == late.aggregate_version
    letters = {d["_id"]: d for d in services.database[DEAD_LETTERS].find({})}
    assert letters["bookings:t:0:1"]["replayed_at"] is None
    assert letters["bookings:t:0:1"]["attempts"] == 2
    assert services.progress.count_dead_letters("bookings") == 1


def test_verify_in_small_pages_finds_a_difference_in_the_last_page_and_a_bool_turned_number(
    settings: Settings, services: ProjectionServices, history: History
) -> None:
    """Pages of two events, two documents, two keys: every page boundary of the log is crossed.

    The last booking of the log is altered in MongoDB and in Redis, so those differences
    sit in the last page of every read; in the first booking only ``refundable`` turns
    from a bool into the number that equals it, which ``==`` alone would not see.
    """
    apply_all(services, {c: stored(services, c) for c in ("booking", "inventory")})
    bookings = stored(services, "booking")
    first, last = str(bookings[0].aggregate_id), str(bookings[-1].aggregate_id)
    assert first != last
    document = services.database["bookings_v1"].find_one({"_id": first})
    assert document is not None
    assert isinstance(document["refundable"], bool)
    number = int(document["refundable"])
    services.database["bookings_v1"].update_one({"_id": first}, {"$set": {"refundable": number}})
    services.database["bookings_v1"].update_one({"_id": last}, {"$set": {"status": "LOST"}})
    services.redis.hset(f"{settings.redis_prefix}v1:booking:{last}", "status", "LOST")

    expected = expected_from_event_store(
        services.reader, services.vault, redis_prefix=settings.redis_prefix, page_size=2
    )
    whole = replay_read_models(settings)
    differences = compare_read_models(expected, services.database, services.redis, page_size=2)

    assert (expected.documents, expected.hashes, expected.heads) == (
        whole.documents,
        whole.hashes,
        whole.heads,
    )
    found = {(d.store, d.where, d.key, d.field, d.found) for d in differences}
    assert found == {
        ("mongo", "bookings_v1", first, "refundable", number),
        ("mongo", "bookings_v1", last, "status", "LOST"),
        ("redis", f"{settings.redis_prefix}v1:", f"booking:{last}", "status", "LOST"),
    }
