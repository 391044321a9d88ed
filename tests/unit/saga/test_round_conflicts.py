"""A round refused by a concurrent writer is decided again, smaller, until it gets through."""

from __future__ import annotations

from typing import Any

import pytest
from eventsourcing.persistence import IntegrityError

from flightbook.domain.booking import BookingStatus
from flightbook.eventstore import batch as batch_module
from flightbook.saga.rounds import RoundFollower
from tests.support.memory import MemorySaga

pytestmark = pytest.mark.unit


def test_conflicting_rounds_shrink_and_the_bookings_end_as_without_conflicts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    saga = MemorySaga(batched=True)
    follower = saga.follower
    assert isinstance(follower, RoundFollower)
    flight_id = saga.schedule_flight(seats=10)
    bookings = [saga.request_booking(flight_id) for _ in range(6)]
    real_commit = batch_module.Batch.commit
    refused = 0
    sizes: list[int] = []

    def commit(self: batch_module.Batch, conn: Any = None) -> None:
        nonlocal refused
        sizes.append(follower._limit)  # the size of the round being stored
        if refused < 3:  # another writer got there first, three times running
            refused += 1
            raise IntegrityError("a concurrent writer changed an aggregate")
        real_commit(self, conn)

    monkeypatch.setattr(batch_module.Batch, "commit", commit)
    saga.settle()

    assert refused == 3
    assert sizes[:4] == [200, 100, 50, 25]  # halved after each refusal
    assert {saga.booking(b).status for b in bookings} == {BookingStatus.CONFIRMED}
    assert saga.flight(flight_id).sold("Y") == 6
