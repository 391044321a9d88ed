"""How a benchmark client learns its booking's outcome: pushed to it, or by polling.

``push`` (the default) opens ``GET /bookings/{id}/events`` with the command's position as
``X-Flightbook-After`` and reads the stream until its final status, as an app would;
``poll`` asks ``GET /bookings/{id}`` again and again, backing off to every 100 ms, as the
clients did before the push existed (kept to measure what the push saves).
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import TYPE_CHECKING

from flightbook.bench.sse import events_of

if TYPE_CHECKING:
    from flightbook.bench.client import HttpConnection

__all__ = ("WAYS", "outcome")

WAYS = ("push", "poll")
FINAL_STATUSES = frozenset({"CONFIRMED", "REJECTED", "CANCELLED"})
_FIRST_POLL = 0.025
_LONGEST_POLL = 0.1
"""Polling every 20 ms from 32 clients (the first version) made the query API use a whole
core and took that CPU from the pipeline being measured (BENCHMARKS.md)."""


async def outcome(
    way: str,
    queries: HttpConnection,
    *,
    auth: dict[str, str],
    booking_id: str,
    position: str,
    give_up: float,
) -> str | None:
    """The booking's final status, learnt ``way``; None if not known by ``give_up``.

    ``give_up`` is a :func:`time.perf_counter` time; ``position`` the command's
    ``X-Flightbook-Position`` (read-your-writes).
    """
    if way == "push":
        return await _pushed(queries, auth, booking_id, position, give_up)
    if way == "poll":
        return await _polled(queries, auth, booking_id, position, give_up)
    raise ValueError(f"unknown way {way!r}; ways: {', '.join(WAYS)}")


async def _pushed(
    queries: HttpConnection, auth: dict[str, str], booking_id: str, position: str, give_up: float
) -> str | None:
    headers = {**auth, "X-Flightbook-After": position} if position else dict(auth)
    seen = 0
    while (left := give_up - time.perf_counter()) > 0:
        if seen:
            headers["Last-Event-ID"] = str(seen)
        try:
            response = await asyncio.wait_for(
                queries.request("GET", f"/bookings/{booking_id}/events", headers=headers), left
            )
        except (TimeoutError, OSError, asyncio.IncompleteReadError):
            await queries.close()  # mid-stream, or gone: a new connection next time
            continue
        if response.status == 503:  # not caught up, or the stream cap: as the answer says
            await asyncio.sleep(float(response.headers.get("retry-after", "1")))
            continue
        if response.status != 200:
            return None
        for event in events_of(response.body):
            if event.get("event") != "status":
                continue
            seen = int(event["id"])
            status = str(json.loads(event["data"])["status"])
            if status in FINAL_STATUSES:
                return status
        # the stream ended before a final status (a server going away): resume after ``seen``
    return None


async def _polled(
    queries: HttpConnection, auth: dict[str, str], booking_id: str, position: str, give_up: float
) -> str | None:
    headers = {**auth, "X-Flightbook-After": position} if position else dict(auth)
    pause = _FIRST_POLL
    while time.perf_counter() < give_up:
        response = await queries.request("GET", f"/bookings/{booking_id}", headers=headers)
        headers = auth
        if response.status == 200:
            status = str(json.loads(response.body)["status"])
            if status in FINAL_STATUSES:
                return status
        await asyncio.sleep(pause)
        pause = min(pause * 1.5, _LONGEST_POLL)
    return None
