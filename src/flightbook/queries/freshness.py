"""Read-your-writes: wait until a read model has applied the positions a command returned.

A command answers with ``X-Flightbook-Position`` (``booking:42,inventory:17``, see
:mod:`flightbook.http.positions`); a query may send it back as ``X-Flightbook-After``. Before
reading read model R, the query API waits until, for every position p of a context R
consumes, R has applied p: its ``applied_events`` marker exists, or
``projection_checkpoints {_id: "R:<context>"}.low_watermark >= p``.

Positions of contexts R does not consume are ignored: R will never apply them, so waiting
for them could only time out. (``GET /bookings`` after a payment therefore does not wait
for the payment; the booking's own events carry what the bookings read model shows.)
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from flightbook.contracts.readmodels import CONSUMES

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping

    from flightbook.queries.ports import ProgressReadModel

__all__ = ("NotCaughtUpError", "pending_positions", "wait_until_applied")

_FIRST_PAUSE = 0.01
_LONGEST_PAUSE = 0.1


class NotCaughtUpError(Exception):
    """The read model had not applied every awaited position within the bound.

    Attributes:
        read_model: the read model waited for.
        pending: ``context:position`` entries still not applied.
    """

    def __init__(self, read_model: str, pending: list[tuple[str, int]]) -> None:
        self.read_model = read_model
        self.pending = pending
        shown = ",".join(f"{context}:{position}" for context, position in pending)
        super().__init__(f"the {read_model} read model has not caught up with {shown} yet")


def pending_positions(read_model: str, positions: Mapping[str, int]) -> list[tuple[str, int]]:
    """The ``(context, position)`` pairs ``read_model`` must apply before it is read."""
    return [
        (context, positions[context])
        for context in CONSUMES.get(read_model, ())
        if positions.get(context, 0) > 0
    ]


async def wait_until_applied(
    progress: ProgressReadModel,
    read_model: str,
    positions: Mapping[str, int],
    *,
    timeout: float,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> None:
    """Return once ``read_model`` has applied every position of ``positions`` it consumes.

    Polls ``progress`` with short pauses (10 ms, doubling up to 100 ms).

    Raises:
        NotCaughtUpError: still not applied after ``timeout`` seconds.
    """
    pending = pending_positions(read_model, positions)
    deadline = clock() + timeout
    pause = _FIRST_PAUSE
    while True:
        pending = [
            (context, position)
            for context, position in pending
            if not await progress.has_applied(read_model, context, position)
        ]
        if not pending:
            return
        remaining = deadline - clock()
        if remaining <= 0:
            raise NotCaughtUpError(read_model, pending)
        await sleep(min(pause, remaining))
        pause = min(pause * 2, _LONGEST_PAUSE)
