"""Read-your-writes: which positions a read model waits for, and how long."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from flightbook.queries.freshness import (
    NotCaughtUpError,
    pending_positions,
    wait_until_applied,
)
from flightbook.queries.memory import MemoryReadModels

pytestmark = pytest.mark.unit


class FakeTime:
    """A clock that only moves when the waiter sleeps; ``on_sleep`` runs at each sleep."""

    def __init__(self, on_sleep: Callable[[int], None] = lambda _n: None) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []
        self.on_sleep = on_sleep

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        self.on_sleep(len(self.sleeps))


def wait(
    store: MemoryReadModels, read_model: str, positions: dict[str, int], time: FakeTime
) -> None:
    asyncio.run(
        wait_until_applied(
            store, read_model, positions, timeout=2.0, clock=time.clock, sleep=time.sleep
        )
    )


def test_each_read_model_waits_only_for_the_contexts_it_consumes() -> None:
    positions = {"booking": 4, "inventory": 9, "payment": 2}

    assert pending_positions("bookings", positions) == [("booking", 4)]
    assert pending_positions("flights", positions) == [("inventory", 9)]
    assert pending_positions("analytics", positions) == []


def test_a_position_of_a_context_the_read_model_ignores_does_not_wait() -> None:
    time = FakeTime()

    wait(MemoryReadModels(), "bookings", {"payment": 7, "inventory": 3}, time)

    assert time.sleeps == []


def test_an_applied_marker_answers_at_once() -> None:
    store = MemoryReadModels()
    store.put_document("applied_events", {"_id": "bookings:booking:5"})
    time = FakeTime()

    wait(store, "bookings", {"booking": 5}, time)

    assert time.sleeps == []


def test_a_low_watermark_at_or_past_the_position_answers_at_once() -> None:
    """Markers are purged after an hour; the watermark still proves the old position."""
    store = MemoryReadModels()
    store.put_document("projection_checkpoints", {"_id": "flights:inventory", "low_watermark": 9})
    time = FakeTime()

    wait(store, "flights", {"inventory": 9}, time)

    assert time.sleeps == []


def test_it_polls_until_the_marker_appears_with_growing_pauses() -> None:
    store = MemoryReadModels()

    def apply_on_fifth_sleep(n: int) -> None:
        if n == 5:
            store.put_document("applied_events", {"_id": "bookings:booking:3"})

    time = FakeTime(apply_on_fifth_sleep)

    wait(store, "bookings", {"booking": 3}, time)

    assert len(time.sleeps) == 5
    assert time.sleeps == sorted(time.sleeps)
    assert max(time.sleeps) <= 0.1


def test_without_the_marker_it_gives_up_at_the_bound_naming_what_is_missing() -> None:
    store = MemoryReadModels()
    store.put_document("applied_events", {"_id": "flights:booking:3"})  # another read model's
    store.put_document("projection_checkpoints", {"_id": "bookings:booking", "low_watermark": 2})
    time = FakeTime()

    with pytest.raises(NotCaughtUpError) as raised:
        wait(store, "bookings", {"booking": 3}, time)

    assert raised.value.read_model == "bookings"
    assert raised.value.pending == [("booking", 3)]
    assert "booking:3" in str(raised.value)
    assert time.now == pytest.approx(102.0)
