"""A change feed on an asyncio queue: what a watch of a booking hands its reader.

Both the Redis hub (:class:`~flightbook.queries.redis.RedisBookingChanges`) and the
in-memory fake put one item in a watcher's queue per announcement; several announcements
waiting are answered by one read.
"""

from __future__ import annotations

import asyncio

__all__ = ("QueueFeed",)


class QueueFeed:
    """The :class:`~flightbook.queries.ports.ChangeFeed` of one watcher."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[None] = asyncio.Queue()

    def announce(self) -> None:
        self.queue.put_nowait(None)

    async def next_change(self, timeout: float) -> bool:
        try:
            await asyncio.wait_for(self.queue.get(), timeout)
        except TimeoutError:
            return False
        while not self.queue.empty():  # several announcements: one read answers them all
            self.queue.get_nowait()
        return True
