"""An erasure reaches MongoDB and Redis by itself; a rebuild and a replay agree with it."""

from __future__ import annotations

import json

import pytest

from flightbook.config.settings import Settings
from flightbook.contracts import payloads
from flightbook.domain.booking import BookingStatus
from flightbook.projections.engine import Targets
from flightbook.projections.projectors import booking_hash
from flightbook.projections.services import ProjectionServices
from flightbook.projections.tools.rebuild import rebuild
from flightbook.projections.tools.verify import compare_read_models, replay_read_models
from tests.support.catchup import catch_up
from tests.support.erasure import book_sealed, record_erasure
from tests.support.history import History
from tests.support.saga import SagaHarness

pytestmark = pytest.mark.integration

LIVE = Targets(documents=(1,), redis=(1,), analytics=(1,))
NAME, EMAIL, TOKEN = "Grace Hopper-Erasable", "grace.erasable@example.org", "tok_ok_grace_4242"
PASSENGERS = [{"name": NAME, "email": EMAIL}, {"name": NAME + " Jr", "email": EMAIL}]


def project_everything(services: ProjectionServices) -> None:
    for worker in catch_up(services, "test"):
        worker.engine.refresh_analytics(LIVE)


def personal_data_in(services: ProjectionServices) -> list[str]:
    """Where the distinctive name, email or token shows in MongoDB or Redis."""
    found = []
    for name in services.database.list_collection_names():
        for doc in services.database[name].find({}):
            text = json.dumps(doc, default=str)
            found += [f"{name}:{doc['_id']}" for s in (NAME, EMAIL, TOKEN) if s in text]
    for key in services.redis.scan_iter(match=services.settings.redis_prefix + "*"):
        value = services.redis.dump(key) or b""
        found += [key.decode() for s in (NAME, EMAIL, TOKEN) if s.encode() in value]
    return found


def test_an_erasure_redacts_the_documents_and_a_rebuild_and_a_replay_agree(
    settings: Settings, services: ProjectionServices, harness: SagaHarness, history: History
) -> None:
    flight = history.flights["big"]
    grace = [
        book_sealed(harness, services.vault, flight, "grace", passengers=PASSENGERS, token=TOKEN)
        for _ in range(2)
    ]
    harness.settle()
    assert {harness.booking(b).status for b in grace} <= {
        BookingStatus.CONFIRMED,
        BookingStatus.REJECTED,
    }
    project_everything(services)
    before = services.database["bookings_v1"].find_one({"_id": str(grace[0])})
    assert before is not None
    assert before["passengers"][0] == {"name": NAME, "email": EMAIL}

    record_erasure(harness, services.vault, "grace")
    project_everything(services)  # the same apply as from Kafka, from the event store

    for booking_id in grace:
        doc = services.database["bookings_v1"].find_one({"_id": str(booking_id)})
        assert doc is not None
        assert doc["passengers"] == [{"name": "[erased]", "email": "[erased]"}] * 2
        assert doc["personal_data_erased"] is True
        hash_ = services.hashes.get(f"{settings.redis_prefix}v1:booking:{booking_id}")
        assert hash_ == booking_hash(doc)  # the statuses and whose booking: nothing personal
        assert NAME not in str(hash_)
        assert EMAIL not in str(hash_)
    assert personal_data_in(services) == []
    named = services.database["bookings_v1"].find_one({"_id": str(history.named)})
    assert named is not None  # another customer's booking is untouched
    assert named["passengers"] == [{"name": "Ada Lovelace", "email": "ada@example.com"}]
    assert "personal_data_erased" not in named
    assert (
        compare_read_models(replay_read_models(settings), services.database, services.redis) == []
    )
    erased_live = services.database["bookings_v1"].find_one({"_id": str(grace[0])})

    version = rebuild(services, "bookings", say=lambda _: None, grace_seconds=0, settle_seconds=0)

    rebuilt = services.database[f"bookings_v{version}"].find_one({"_id": str(grace[0])})
    assert rebuilt == erased_live
    assert personal_data_in(services) == []
    assert (
        compare_read_models(replay_read_models(settings), services.database, services.redis) == []
    )


def test_the_subject_erasure_is_applied_without_a_document_and_counts_for_the_watermark(
    services: ProjectionServices, harness: SagaHarness, history: History
) -> None:
    grace = book_sealed(
        harness, services.vault, history.flights["big"], "grace", passengers=PASSENGERS
    )
    harness.settle()
    record_erasure(harness, services.vault, "grace")

    project_everything(services)

    items = services.reader.read("booking", after=0, limit=100_000)
    subject = [
        i
        for i in items
        if i.envelope is not None and isinstance(i.envelope.payload, payloads.DataSubjectErased)
    ]
    assert len(subject) == 1
    assert services.database["bookings_v1"].find_one({"_id": str(subject[0].aggregate_id)}) is None
    assert services.database["bookings_v1"].find_one({"_id": str(grace)}) is not None
    checkpoint = services.progress.checkpoint("bookings", "booking")
    assert checkpoint.low_watermark == services.reader.head("booking")
