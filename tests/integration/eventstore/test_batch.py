"""A batch never leaves a gap in an aggregate's versions, whatever its writer believed.

The saga decides on aggregates it keeps in memory (ADR 0020). If a round's COMMIT failed
and the memory kept the round's changes, the next round would build on events that are
not stored: a flight at version 13 in memory, 11 in the log, and a batch starting at 14.
The primary key (aggregate id, version) does not refuse that; the batch's INSERT does, as
a conflict, so the writer decides again on what the log holds.
"""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from eventsourcing.persistence import IntegrityError

from flightbook.domain.inventory import FlightInventory
from flightbook.eventstore.batch import Batch, session
from tests.support.builders import a_flight
from tests.support.writeside import WriteSide

pytestmark = pytest.mark.integration

IN_AN_HOUR = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)


def _stored_versions(write_side: WriteSide, aggregate_id: uuid.UUID) -> list[int]:
    recorder = write_side.inventory.recorder
    return [e.originator_version for e in recorder.select_events(aggregate_id)]


def _hold(flight: FlightInventory) -> None:
    flight.hold_seats(uuid.uuid4(), "Y", 1, IN_AN_HOUR)


def _store_together(write_side: WriteSide, *flights: FlightInventory) -> None:
    """The flights' pending events in one batch, committed in one session."""
    batch = Batch(write_side.store.applications)
    batch.collect(write_side.inventory, list(flights))
    with session(write_side.store.applications) as conn:
        batch.commit(conn)


def test_a_batch_built_on_events_that_were_never_stored_stores_nothing(
    write_side: WriteSide,
) -> None:
    flight_id = write_side.schedule_flight(seats=10)
    in_memory = write_side.flight(flight_id)
    _hold(in_memory)
    _hold(in_memory)
    in_memory.collect_events()  # versions 2 and 3: decided, their commit lost
    _hold(in_memory)  # version 4, on top of them
    newcomer = a_flight(seats=5)  # a new aggregate in the same batch

    with pytest.raises(IntegrityError, match="does not follow"):
        _store_together(write_side, in_memory, newcomer)

    assert _stored_versions(write_side, flight_id) == [1]
    assert _stored_versions(write_side, newcomer.id) == []


def test_a_batch_that_follows_the_stored_versions_is_stored_whole(
    write_side: WriteSide,
) -> None:
    flight_id = write_side.schedule_flight(seats=10)
    flight = write_side.flight(flight_id)
    _hold(flight)
    _hold(flight)  # versions 2 and 3 in one batch: 3 follows 2, which the batch holds
    newcomer = a_flight(seats=5)

    _store_together(write_side, flight, newcomer)

    assert _stored_versions(write_side, flight_id) == [1, 2, 3]
    assert _stored_versions(write_side, newcomer.id) == [1]
    assert write_side.flight(flight_id).held("Y") == 2
