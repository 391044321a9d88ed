"""The relay holding the lock reads each checkpoint once and writes them once per round."""

from __future__ import annotations

import pytest

from flightbook.relay.relay import HeldCheckpoints, MemoryCheckpoints

pytestmark = pytest.mark.unit


class CountedCheckpoints(MemoryCheckpoints):
    def __init__(self, positions: dict[str, int]) -> None:
        super().__init__(positions)
        self.reads = 0
        self.writes: list[dict[str, int]] = []

    def position(self, context: str) -> int:
        self.reads += 1
        return super().position(context)

    def advance_many(self, positions: dict[str, int]) -> None:
        self.writes.append(dict(positions))
        super().advance_many(positions)


def test_a_checkpoint_is_read_once_and_then_known() -> None:
    stored = CountedCheckpoints({"booking": 7})
    held = HeldCheckpoints(stored)

    assert [held.position("booking") for _ in range(3)] == [7, 7, 7]
    held.advance("booking", 9)

    assert held.position("booking") == 9
    assert stored.reads == 1


def test_the_moved_checkpoints_are_written_together_at_the_flush_and_only_then() -> None:
    stored = CountedCheckpoints({"booking": 7})
    held = HeldCheckpoints(stored)
    held.advance("booking", 9)
    held.advance("payment", 4)

    assert stored.positions() == {"booking": 7}  # nothing written before the flush
    held.flush()
    held.flush()  # nothing moved since: no write

    assert stored.writes == [{"booking": 9, "payment": 4}]
    assert stored.positions() == {"booking": 9, "payment": 4}
