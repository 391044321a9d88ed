"""``GET /bookings/{id}/events``: a booking's statuses pushed as Server-Sent Events.

Each status the booking reaches is one ``status`` event; its ``data`` is a
:class:`~flightbook.queries.models.StatusEvent` (status, when, the read model's version,
whether it is final) and its ``id`` counts the statuses sent so far (1 = ``REQUESTED``).
A client that reconnects with ``Last-Event-ID: n`` gets the statuses after the n-th, so
a dropped connection loses and repeats nothing. The id is that count, not the read
model's version: the bookings worker applies events in batches, so one version can
reveal two statuses, and a version alone would not say which of them a client had. The
stream ends after a final status (``CONFIRMED``, ``REJECTED``, ``CANCELLED``); a comment
line every :data:`KEEPALIVE_SECONDS` keeps idle proxies from closing it.

Each open stream holds one Redis subscription; a process holds at most
:data:`MAX_STREAMS` at once and answers 503 with ``Retry-After`` beyond.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

import msgspec
from litestar.response import ServerSentEvent, ServerSentEventMessage

from flightbook.http.problems import Problem

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator
    from uuid import UUID

    from flightbook.queries.models import StatusEvent
    from flightbook.queries.service import QueryService

__all__ = ("KEEPALIVE_SECONDS", "MAX_STREAMS", "StreamGate", "status_stream")

KEEPALIVE_SECONDS = 15.0
MAX_STREAMS = 500
_encoder = msgspec.json.Encoder()


class StreamGate:
    """Counts the open streams of one process."""

    def __init__(self, limit: int = MAX_STREAMS) -> None:
        self.limit = limit
        self.open = 0

    def check(self) -> None:
        """Before a stream is answered: 503 when the process holds its limit."""
        if self.open >= self.limit:
            raise Problem(
                503,
                "too_many_streams",
                "this server holds as many open streams as it may; retry shortly",
                headers={"Retry-After": "1"},
            )

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """One stream counted while it runs (from its first byte to its end, however it ends)."""
        self.open += 1
        try:
            yield
        finally:
            self.open -= 1


def status_stream(
    service: QueryService, booking_id: UUID, *, after: int, gate: StreamGate
) -> ServerSentEvent:
    """The response that streams the booking's statuses after the ``after``-th."""
    gate.check()
    events = service.status_events(booking_id, after=after, keepalive=KEEPALIVE_SECONDS)
    return ServerSentEvent(_messages(events, after=after, gate=gate))


async def _messages(
    events: AsyncIterator[StatusEvent | None], *, after: int, gate: StreamGate
) -> AsyncIterator[ServerSentEventMessage]:
    number = after
    # counted inside the body: a stream that never starts (the client went) is never counted
    with gate.held():
        async for event in events:
            if event is None:
                yield ServerSentEventMessage(data=None, comment="keep-alive")  # no event
                continue
            number += 1
            yield ServerSentEventMessage(
                data=_encoder.encode(event).decode(), event="status", id=number
            )
