"""The engine on in-memory stores: ordered, idempotent apply; gaps repaired; derived models."""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid

import msgspec
import pytest

from flightbook.contracts.envelope import Envelope
from flightbook.contracts.payloads import (
    BookingConfirmed,
    BookingPaymentAuthorized,
    BookingRejected,
    BookingRequested,
    BookingSeatsHeld,
    DataSubjectErased,
    HoldConfirmed,
    Money,
    PassengersErased,
    SeatsHeld,
)
from flightbook.projections.engine import Engine, RepairError, Targets
from flightbook.projections.history import StoredItem
from flightbook.projections.kinds import BookingsKind, FlightsKind
from flightbook.projections.memory import MemoryDocuments, MemoryHashes, MemoryProgress
from flightbook.projections.ports import GuardedWrite
from tests.support.projections import DEPARTURE, FakeHistory, FakeLookups, Log, scheduled

pytestmark = pytest.mark.unit

LIVE = Targets(documents=(1,), redis=(1,), analytics=(1,))


class Setup:
    def __init__(self) -> None:
        self.flights = Log("inventory")
        self.bookings = Log("booking")
        self.history = FakeHistory({"booking": self.bookings, "inventory": self.flights})
        self.documents = MemoryDocuments()
        self.hashes = MemoryHashes()
        self.progress = MemoryProgress()
        self.flight = uuid.uuid4()
        self.flights.add(self.flight, scheduled(seats=5))
        self.lookups = FakeLookups({str(self.flight): ("LHR", "JFK")})

    def engine(self, kind: str, documents: MemoryDocuments | None = None) -> Engine:
        return Engine(
            BookingsKind(self.lookups) if kind == "bookings" else FlightsKind(),
            documents=documents or self.documents,
            hashes=self.hashes,
            history=self.history,
            progress=self.progress,
            redis_prefix="fb:",
            clock=lambda: dt.datetime(2031, 1, 1, tzinfo=dt.UTC),
        )

    def book(self, *, confirm: bool = True) -> uuid.UUID:
        booking = uuid.uuid4()
        self.bookings.add(
            booking,
            BookingRequested(
                customer_id="alice",
                flight_id=self.flight,
                fare="Y",
                passenger_count=1,
                passengers="sealed",
                price=Money(amount=45000, currency="EUR"),
                refundable=False,
            ),
        )
        self.bookings.add(booking, BookingSeatsHeld(hold_expires_at=DEPARTURE))
        if confirm:
            self.bookings.add(booking, BookingPaymentAuthorized(payment_id=uuid.uuid4()))
            self.bookings.add(booking, BookingConfirmed())
        else:
            self.bookings.add(booking, BookingRejected(reason="PAYMENT_DECLINED"))
        return booking

    def snapshot(self) -> tuple[object, object]:
        return (
            {k: dict(v) for k, v in self.documents.collections.items()},
            dict(self.hashes.data),
        )


@pytest.fixture
def setup() -> Setup:
    return Setup()


def test_a_history_applied_twice_changes_nothing_the_second_time(setup: Setup) -> None:
    """The second delivery is all duplicates: counted, skipped, documents untouched."""
    for _ in range(3):
        setup.book()
    setup.book(confirm=False)
    engine = setup.engine("bookings")

    first = engine.apply(setup.bookings.envelopes, LIVE)
    after_first = setup.snapshot()
    second = engine.apply(setup.bookings.envelopes, LIVE)

    assert (first.applied, first.duplicates) == (15, 0)
    assert (second.applied, second.duplicates) == (0, 15)
    assert setup.snapshot() == after_first
    docs = setup.documents.collections["bookings_v1"]
    assert sorted(d["status"] for d in docs.values()) == ["CONFIRMED"] * 3 + ["REJECTED"]
    assert {d["_v"] for d in docs.values() if d["status"] == "CONFIRMED"} == {4}


def test_an_erasure_replayed_any_number_of_times_leaves_the_same_redacted_documents(
    setup: Setup,
) -> None:
    kept, erased = setup.book(), setup.book(confirm=False)
    subject = uuid.uuid4()
    setup.bookings.add(erased, PassengersErased(booking_id=erased, reason="customer_request"))
    setup.bookings.add(
        subject, DataSubjectErased(customer_id="alice", reason="customer_request", bookings=1)
    )
    engine = setup.engine("bookings")

    first = engine.apply(setup.bookings.envelopes, LIVE)
    after_first = setup.snapshot()
    again = engine.apply(setup.bookings.envelopes, LIVE)
    one_by_one = [engine.apply([e], LIVE) for e in setup.bookings.envelopes]

    docs = setup.documents.collections["bookings_v1"]
    assert set(docs) == {str(kept), str(erased)}  # no document for the data subject
    assert docs[str(erased)]["passengers"] == [{"name": "[erased]", "email": "[erased]"}]
    assert docs[str(erased)]["personal_data_erased"] is True
    assert docs[str(kept)]["passengers"] == [{"name": "sealed-0", "email": "alice@example.com"}]
    assert (first.applied, first.duplicates) == (9, 0)  # 4 + 4 booking events + the subject's
    assert (again.applied, again.duplicates) == (1, 8)  # the subject's is not a document's
    assert setup.snapshot() == after_first
    assert sum(r.duplicates for r in one_by_one) == 8
    assert setup.lookups.forgotten == ["alice"] * 2 + ["alice"]  # its cached keys, each time
    positions = set(range(1, setup.bookings.position + 1))
    assert setup.progress.applied_between("bookings", "booking", 0, 100) == positions


def test_envelopes_of_one_aggregate_are_applied_in_version_order_whatever_their_order(
    setup: Setup,
) -> None:
    setup.book()
    engine = setup.engine("bookings")

    result = engine.apply(list(reversed(setup.bookings.envelopes)), LIVE)

    assert (result.applied, result.repaired) == (4, 0)
    (doc,) = setup.documents.collections["bookings_v1"].values()
    assert (doc["status"], doc["_v"], doc["_pos"]) == ("CONFIRMED", 4, 4)


def test_a_gap_is_repaired_from_the_event_store(setup: Setup) -> None:
    """Versions 2 and 3 never arrive: the engine reads them from the event store."""
    booking = setup.book()
    engine = setup.engine("bookings")
    first, _, _, last = setup.bookings.envelopes

    engine.apply([first], LIVE)
    result = engine.apply([last], LIVE)

    assert setup.history.asked == [{booking: (1, 4)}]
    assert (result.applied, result.repaired, result.duplicates) == (3, 3, 0)
    assert result.positions == {2, 3, 4}
    doc = setup.documents.collections["bookings_v1"][str(booking)]
    assert (doc["status"], doc["_v"]) == ("CONFIRMED", 4)
    assert setup.progress.applied_between("bookings", "booking", 0, 10) == {1, 2, 3, 4}


def test_a_document_that_does_not_exist_yet_is_built_from_the_start(setup: Setup) -> None:
    setup.book()
    engine = setup.engine("bookings")

    engine.apply([setup.bookings.envelopes[2]], LIVE)

    (doc,) = setup.documents.collections["bookings_v1"].values()
    assert (doc["status"], doc["_v"]) == ("PAYMENT_AUTHORIZED", 3)


def test_a_gap_the_event_store_cannot_fill_is_a_poison_message(setup: Setup) -> None:
    """A message from nowhere goes to the dead letters; the rest of the batch is applied."""
    setup.book()
    stranger = msgspec.structs.replace(
        Log("booking", position=100).add(uuid.uuid4(), BookingConfirmed()), aggregate_version=2
    )
    engine = setup.engine("bookings")
    poisoned: list[tuple[Envelope, Exception]] = []

    with pytest.raises(RepairError):
        engine.apply([stranger], LIVE)
    result = engine.apply_isolating(
        [*setup.bookings.envelopes, stranger], LIVE, lambda e, x: poisoned.append((e, x))
    )

    assert [(e.position, type(x).__name__) for e, x in poisoned] == [(101, "RepairError")]
    assert result.applied == 4
    assert len(setup.documents.collections["bookings_v1"]) == 1


def test_a_private_event_in_a_repaired_history_advances_the_version(setup: Setup) -> None:
    booking = setup.book()
    first, second, third, fourth = setup.bookings.envelopes
    # version 3 of the stored history is an event that is never published
    setup.bookings.items[2] = StoredItem(3, booking, 3, third.occurred_at, None)
    engine = setup.engine("bookings")
    engine.apply([first, second], LIVE)

    engine.apply([fourth], LIVE)

    doc = setup.documents.collections["bookings_v1"][str(booking)]
    assert (doc["status"], doc["_v"], doc["payment_id"]) == ("CONFIRMED", 4, None)


def test_redis_hashes_and_analytics_are_derived_from_the_documents(setup: Setup) -> None:
    booking = setup.book()
    setup.book(confirm=False)
    bookings = setup.engine("bookings")
    flights = setup.engine("flights")
    setup.hashes.data["fb:v1:search:LHR:JFK:2031-12-24"] = {"cached": "yes"}
    setup.flights.add(
        setup.flight, SeatsHeld(booking_id=booking, fare_code="Y", seats=1, expires_at=DEPARTURE)
    )
    setup.flights.add(setup.flight, HoldConfirmed(booking_id=booking, fare_code="Y", seats=1))

    bookings.apply(setup.bookings.envelopes, LIVE)
    flights.apply(setup.flights.envelopes, LIVE)
    stale = setup.progress.stale("bookings")
    refreshed = bookings.refresh_analytics(LIVE)

    announced = setup.hashes.get(f"fb:v1:booking:{booking}") or {}
    assert (announced["_v"], announced["status"]) == ("4", "CONFIRMED")
    assert [k for k in announced if k.startswith("at:")] == [
        "at:REQUESTED",
        "at:SEATS_HELD",
        "at:PAYMENT_AUTHORIZED",
        "at:CONFIRMED",
    ]
    assert setup.hashes.get(f"fb:v1:seats:{setup.flight}") == {"_v": "3", "Y": "4", "J": "2"}
    assert setup.hashes.get("fb:v1:search:LHR:JFK:2031-12-24") is None
    assert (len(stale), refreshed, setup.progress.stale("bookings")) == (1, 1, {})
    (sales,) = setup.documents.collections["sales_daily_v1"].values()
    assert (sales["bookings_confirmed"], sales["revenue"]["amount"]) == (1, 45000)
    (funnel,) = setup.documents.collections["funnel_daily_v1"].values()
    assert (funnel["requested"], funnel["confirmed"]) == (2, 1)
    assert funnel["rejected"] == {"PAYMENT_DECLINED": 1}
    load = setup.documents.collections["load_factor_v1"][f"{setup.flight}:Y"]
    assert (load["sold"], load["load_factor"]) == (1, 0.2)


def test_markers_and_the_checkpoint_follow_the_documents(setup: Setup) -> None:
    setup.book()
    engine = setup.engine("bookings")

    engine.apply(setup.bookings.envelopes, LIVE)
    engine.apply(setup.bookings.envelopes, LIVE)

    checkpoint = setup.progress.checkpoint("bookings", "booking")
    assert (checkpoint.max_applied, checkpoint.events_applied) == (4, 4)
    assert checkpoint.duplicates_skipped == 4
    assert setup.progress.applied_between("bookings", "booking", 0, 100) == {1, 2, 3, 4}


def test_a_rebuild_target_writes_only_its_version_and_no_markers(setup: Setup) -> None:
    setup.book()
    engine = setup.engine("bookings")

    engine.apply(setup.bookings.envelopes, Targets(documents=(2,), markers=False))

    assert set(setup.documents.collections) == {"bookings_v2"}
    assert setup.hashes.data == {}
    assert setup.progress.markers == {}


def test_while_a_version_is_built_both_versions_are_written(setup: Setup) -> None:
    setup.book()
    engine = setup.engine("bookings")

    engine.apply(setup.bookings.envelopes, Targets(documents=(1, 2), redis=(1, 2)))

    assert setup.documents.collections["bookings_v1"] == setup.documents.collections["bookings_v2"]
    assert len(setup.hashes.keys("fb:v1:booking:")) == len(setup.hashes.keys("fb:v2:booking:")) == 1


class RacingDocuments(MemoryDocuments):
    """Another worker applies the same events between this worker's read and its write."""

    def __init__(self, other: Engine | None = None) -> None:
        super().__init__()
        self.other = other
        self.raced = False
        self.pending: list[Envelope] = []

    def write_guarded(self, collection: str, writes: list[GuardedWrite]) -> set[str]:  # type: ignore[override]
        if not self.raced and self.other is not None:
            self.raced = True
            self.other.apply(self.pending, Targets(documents=(1,), markers=False))
        return super().write_guarded(collection, writes)


def test_a_guard_that_no_longer_holds_makes_the_aggregate_be_read_again(setup: Setup) -> None:
    setup.book()
    racing = RacingDocuments()
    rival = setup.engine("bookings", racing)
    racing.pending = setup.bookings.envelopes[:2]
    engine = setup.engine("bookings", racing)
    racing.other = rival

    result = engine.apply(setup.bookings.envelopes, Targets(documents=(1,), markers=False))

    (doc,) = racing.collections["bookings_v1"].values()
    assert (doc["status"], doc["_v"]) == ("CONFIRMED", 4)
    assert (result.applied, result.duplicates) == (2, 2)


def test_day_analytics_wait_for_a_refresh_and_are_then_recomputed_once(setup: Setup) -> None:
    first = setup.book()
    bookings = setup.engine("bookings")
    bookings.apply(setup.bookings.envelopes, LIVE)
    setup.book(confirm=False)
    bookings.apply(setup.bookings.envelopes[4:], LIVE)

    assert "sales_daily_v1" not in setup.documents.collections  # not yet: only marked stale
    assert len(setup.progress.stale("bookings")) == 1  # one day, marked by both batches
    assert bookings.refresh_analytics(LIVE) == 1
    assert bookings.refresh_analytics(LIVE) == 0  # nothing stale any more
    (funnel,) = setup.documents.collections["funnel_daily_v1"].values()
    assert (funnel["requested"], funnel["confirmed"]) == (2, 1)
    assert str(first) in setup.documents.collections["bookings_v1"]


def test_a_redelivered_batch_marks_its_days_stale_again(setup: Setup) -> None:
    setup.book()
    bookings = setup.engine("bookings")
    bookings.apply(setup.bookings.envelopes, LIVE)
    bookings.refresh_analytics(LIVE)
    setup.documents.collections["funnel_daily_v1"].clear()  # as if lost before the mark

    result = bookings.apply(setup.bookings.envelopes, LIVE)  # all duplicates now
    bookings.refresh_analytics(LIVE)

    assert (result.applied, result.duplicates) == (0, 4)
    (funnel,) = setup.documents.collections["funnel_daily_v1"].values()
    assert funnel["confirmed"] == 1


def test_without_a_progress_store_day_analytics_are_written_at_once(setup: Setup) -> None:
    setup.book()
    engine = Engine(
        BookingsKind(setup.lookups),
        documents=setup.documents,
        hashes=setup.hashes,
        history=setup.history,
        progress=None,
        redis_prefix="fb:",
    )

    engine.apply(setup.bookings.envelopes, LIVE)

    (sales,) = setup.documents.collections["sales_daily_v1"].values()
    assert sales["bookings_confirmed"] == 1
    assert engine.refresh_analytics(LIVE) == 0


def test_a_bookings_hash_write_is_announced_on_its_customers_channel_by_digest(
    setup: Setup,
) -> None:
    booking = setup.book()
    digest = hashlib.sha256(b"alice").hexdigest()[:32]

    setup.engine("bookings").apply(setup.bookings.envelopes, LIVE)
    setup.engine("flights").apply(setup.flights.envelopes, LIVE)

    assert (f"fb:customer:{digest}", str(booking)) in setup.hashes.published
    assert (f"fb:v1:booking:{booking}", "4") in setup.hashes.published
    customer = [c for c, _ in setup.hashes.published if c.startswith("fb:customer:")]
    assert customer == [f"fb:customer:{digest}"]  # once per batch; the flights worker: none
    assert all("alice" not in channel for channel, _ in setup.hashes.published)
