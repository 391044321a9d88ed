"""Aggregates held in memory follow their log: in order, known ones passed over, gaps dropped."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest

from flightbook.domain.booking import Booking, RejectionReason
from flightbook.eventstore.applications import EventStore
from flightbook.eventstore.cache import AggregateCache
from flightbook.eventstore.metadata import recording
from tests.support.memory import START, memory_store, request_booking, schedule_flight

pytestmark = pytest.mark.unit


def _events_of(store: EventStore, booking_id: uuid.UUID) -> list[Any]:
    app = store.bookings
    return [app.mapper.to_domain_event(e) for e in app.recorder.select_events(booking_id)]


def test_a_held_aggregate_follows_its_events_without_reading_the_log() -> None:
    store = memory_store()
    booking_id = request_booking(store, schedule_flight(store))
    cache = AggregateCache(store.bookings)
    held = cache.held_or_load([booking_id])[booking_id]
    assert cache.loaded_events == 1

    booking = store.bookings.booking(booking_id)  # another writer moves it on
    booking.mark_seats_held(START + dt.timedelta(minutes=10))
    with recording(actor="saga"):
        store.bookings.record(booking)
    first, second = _events_of(store, booking_id)

    cache.apply(first)  # already held: passed over
    cache.apply(second)  # the next one: applied

    again = cache.held_or_load([booking_id])[booking_id]
    assert again is held
    assert isinstance(again, Booking)
    assert again.version == 2
    assert again.hold_expires_at is not None
    assert cache.loaded_events == 1  # no read


def test_an_event_after_a_gap_drops_the_aggregate_which_is_read_again() -> None:
    store = memory_store()
    booking_id = request_booking(store, schedule_flight(store))
    cache = AggregateCache(store.bookings)
    cache.held_or_load([booking_id])
    booking = store.bookings.booking(booking_id)
    booking.mark_seats_held(START + dt.timedelta(minutes=10))
    booking.reject(RejectionReason.HOLD_EXPIRED)
    with recording(actor="saga"):
        store.bookings.record(booking)
    events = _events_of(store, booking_id)

    cache.apply(events[-1])  # version 3 while version 1 is held: a gap

    assert cache.version_of(booking_id) is None
    assert cache.held_or_load([booking_id])[booking_id].version == len(events)
