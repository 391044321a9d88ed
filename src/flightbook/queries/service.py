"""The query use cases over the read-model ports.

Paging, the search cache, fresh seats, who may see a booking, and read-your-writes.
No HTTP here (that is :mod:`.http`).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING
from uuid import UUID

import msgspec

from flightbook.queries import models
from flightbook.queries.cursors import (
    decode_cursor,
    decode_time_key,
    encode_cursor,
    encode_time_key,
)
from flightbook.queries.freshness import (
    NotCaughtUpError,
    pending_positions,
    wait_until_applied,
)
from flightbook.queries.ports import SalesQuery

if TYPE_CHECKING:
    import datetime as dt
    from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence

    from flightbook.http.tokens import Principal
    from flightbook.queries.ports import ReadModels

__all__ = (
    "MAX_PAGE",
    "SEARCH_CACHE_SECONDS",
    "SEE_ANY_BOOKING",
    "QueryService",
    "may_see",
    "status_changes",
)

MAX_PAGE = 100
"""The largest ``limit`` of the flight and booking lists (and what the search cache holds)."""
SEARCH_CACHE_SECONDS = 60
_QUIET_SECONDS = 0.25
"""How long a stream waiting for a booking just written waits for its announcement before it
asks whether the command's positions were applied without it (an unknown booking)."""
SEE_ANY_BOOKING = ("agent", "auditor")
"""Roles that may read any booking; everyone else only their own."""

_page_encoder = msgspec.json.Encoder()
_page_decoder = msgspec.json.Decoder(models.FlightPage)


def may_see(principal: Principal, booking: models.BookingView | models.StatusPath) -> bool:
    """The booking's customer, an agent or an auditor."""
    return booking.customer_id == principal.subject or principal.has(*SEE_ANY_BOOKING)


def _flight_cursor(flight: models.FlightView) -> str:
    return encode_time_key("flights", (flight.departure, str(flight.flight_id)))


def _booking_cursor(booking: models.BookingView) -> str:
    return encode_time_key("bookings", (booking.created_at, str(booking.booking_id)))


def status_changes(
    booking_id: str, path: models.StatusPath, *, after: int
) -> list[models.StatusChange]:
    """The statuses of ``path`` after its first ``after``, numbered from ``after + 1``."""
    return [
        models.StatusChange(
            booking_id=UUID(booking_id),
            status=step.status,
            at=step.at,
            version=path.version,
            final=step.status in models.FINAL_STATUSES,
            seq=seq,
        )
        for seq, step in enumerate(path.steps[after:], start=after + 1)
    ]


class QueryService:
    """What the query API can be asked.

    Args:
        read_models: the readers (real or in memory).
        wait_seconds: how long a read-your-writes query waits for its read model.
    """

    def __init__(self, read_models: ReadModels, *, wait_seconds: float) -> None:
        self.read_models = read_models
        self.wait_seconds = wait_seconds

    async def wait_for(self, read_model: str, positions: Mapping[str, int]) -> None:
        """Return once ``read_model`` has applied ``positions`` (those it consumes).

        Raises:
            NotCaughtUpError: it has not within ``wait_seconds``.
        """
        await wait_until_applied(
            self.read_models.progress, read_model, positions, timeout=self.wait_seconds
        )

    # flights

    async def search_flights(
        self,
        origin: str,
        destination: str,
        day: dt.date,
        *,
        cursor: str | None = None,
        limit: int = 20,
        use_cache: bool = True,
    ) -> models.FlightPage:
        """Flights of a route on a day (UTC), by departure.

        The first page comes from the search cache when it has it (else MongoDB, and the
        cache is filled with the first ``MAX_PAGE`` flights); later pages from MongoDB.
        Seats left are then taken from Redis for the flights it knows.

        Raises:
            CursorError: ``cursor`` is not one this list gave out.
        """
        date = day.isoformat()
        flights = self.read_models.flights
        if cursor is not None:
            after = decode_time_key("flights", cursor)
            found = await flights.search_flights(
                origin, destination, date, after=after, limit=limit + 1
            )
            items = found[:limit]
            next_cursor = _flight_cursor(items[-1]) if len(found) > limit else None
        else:
            first = await self._first_search_page(origin, destination, date, use_cache=use_cache)
            items = first.items[:limit]
            next_cursor = (
                _flight_cursor(items[-1]) if len(first.items) > limit else first.next_cursor
            )
        return models.FlightPage(items=await self._fresh_seats(items), next_cursor=next_cursor)

    async def _first_search_page(
        self, origin: str, destination: str, date: str, *, use_cache: bool
    ) -> models.FlightPage:
        cache = self.read_models.search_cache
        if use_cache:
            cached = await cache.cached_search(origin, destination, date)
            if cached is not None:
                try:
                    return _page_decoder.decode(cached)
                except msgspec.DecodeError:
                    pass  # not ours (or an older shape): read MongoDB and replace it
        found = await self.read_models.flights.search_flights(
            origin, destination, date, after=None, limit=MAX_PAGE + 1
        )
        page = models.FlightPage(
            items=found[:MAX_PAGE],
            next_cursor=_flight_cursor(found[MAX_PAGE - 1]) if len(found) > MAX_PAGE else None,
        )
        await cache.cache_search(
            origin, destination, date, _page_encoder.encode(page), SEARCH_CACHE_SECONDS
        )
        return page

    async def flight(self, flight_id: UUID) -> models.FlightView | None:
        found = await self.read_models.flights.find_flight(str(flight_id))
        if found is None:
            return None
        return (await self._fresh_seats([found]))[0]

    async def _fresh_seats(self, flights: Sequence[models.FlightView]) -> list[models.FlightView]:
        if not flights:
            return []
        seats = await self.read_models.seats.seats_left([str(f.flight_id) for f in flights])
        return [models.with_seats_left(f, seats.get(str(f.flight_id), {})) for f in flights]

    # bookings

    async def booking(self, booking_id: UUID, principal: Principal) -> models.BookingView | None:
        """The booking if ``principal`` may see it; else None, as if it did not exist."""
        found = await self.read_models.bookings.find_booking(str(booking_id))
        if found is None or not may_see(principal, found):
            return None
        return found

    async def status_path(self, booking_id: UUID, principal: Principal) -> models.StatusPath | None:
        """The statuses the booking reached, if ``principal`` may see it (else None).

        From the booking's Redis hash, which the bookings worker writes after the document
        (so what it shows can be read back); from the document when the hash is missing.
        """
        found = await self._status_path(str(booking_id))
        return found if found is not None and may_see(principal, found) else None

    async def _status_path(self, booking_id: str) -> models.StatusPath | None:
        found = await self.read_models.changes.latest(booking_id)
        if found is None:
            found = await self.read_models.bookings.status_path(booking_id)
        return found

    async def arriving_status_path(
        self, booking_id: UUID, principal: Principal, positions: Mapping[str, int]
    ) -> models.StatusPath | None:
        """:meth:`status_path`, once the read model has the booking, for who just wrote it.

        A client that opens the booking's status stream right after ``POST /bookings``
        sends the command's positions; the booking may not be in the read model yet. This
        listens on the booking's change feed and reads again on each announcement (no
        polling), until the booking is there, or the positions are applied without it (it
        does not exist: None), for at most ``wait_seconds``. The positions are asked for
        only when no announcement came for a while.

        Raises:
            NotCaughtUpError: neither within ``wait_seconds``.
        """
        key = str(booking_id)
        pending = pending_positions("bookings", positions)
        deadline = time.monotonic() + self.wait_seconds
        async with self.read_models.changes.watch(key) as feed:
            while True:
                found = await self._status_path(key)
                if found is not None:
                    return found if may_see(principal, found) else None
                remaining = deadline - time.monotonic()
                if remaining > 0 and await feed.next_change(min(remaining, _QUIET_SECONDS)):
                    continue  # announced: read again
                progress = self.read_models.progress
                pending = [p for p in pending if not await progress.has_applied("bookings", *p)]
                if not pending:  # applied; it may have been written since the read above
                    found = await self._status_path(key)
                    return found if found is not None and may_see(principal, found) else None
                if time.monotonic() >= deadline:
                    raise NotCaughtUpError("bookings", pending)

    async def status_events(
        self, booking_id: UUID, *, after: int, keepalive: float
    ) -> AsyncIterator[models.StatusEvent | None]:
        """The booking's statuses after its first ``after``, each once, in the order reached.

        Ends after a final status (:data:`models.FINAL_STATUSES`); yields None when
        ``keepalive`` seconds passed with nothing new. The caller checked that the booking
        is the principal's (:meth:`status_path`). It listens before it reads, so a status
        written between the two is not missed, and reads again on each announcement, so what
        it pushes can be read back at once.
        """
        key = str(booking_id)
        async with self.read_models.changes.watch(key) as feed:
            sent = after
            while True:
                path = await self._status_path(key)
                if path is not None:
                    for step in path.steps[sent:]:
                        yield models.StatusEvent(
                            booking_id=booking_id,
                            status=step.status,
                            at=step.at,
                            version=path.version,
                            final=step.status in models.FINAL_STATUSES,
                        )
                    sent = max(sent, len(path.steps))
                    if any(step.status in models.FINAL_STATUSES for step in path.steps):
                        return
                if not await feed.next_change(keepalive):
                    yield None

    async def customer_status_changes(
        self, customer_id: str, *, since: Mapping[str, int], wait: float = 30.0
    ) -> AsyncGenerator[models.StatusChange, None]:
        """The statuses of the customer's bookings, each once, in order per booking; never ends.

        First what each unfinished booking of theirs, and each booking named in ``since``,
        reached after its first ``since[id]`` (0 for one not named); then every status
        any of their bookings reaches, as the bookings worker announces it on the customer's
        channel. It listens before it reads, so a status written between the two is not
        missed, and reads the documents again on each announcement (``wait`` s at most
        between listens), so what it sends can be read back at once. A booking of another
        customer is never read, whatever ``since`` names (:meth:`BookingReadModel.status_paths`).
        """
        bookings = self.read_models.bookings
        async with self.read_models.changes.watch_customer(customer_id) as feed:
            sent = dict(since)
            paths = await bookings.status_paths(customer_id, booking_ids=sent, unfinished=True)
            while True:
                for booking_id, path in sorted(paths.items()):
                    for change in status_changes(booking_id, path, after=sent.get(booking_id, 0)):
                        sent[booking_id] = change.seq
                        yield change
                changed: set[str] = set()
                while not changed:
                    changed = await feed.next_changes(wait)
                paths = await bookings.status_paths(customer_id, booking_ids=changed)

    async def bookings_of(
        self, principal: Principal, *, cursor: str | None = None, limit: int = 20
    ) -> models.BookingPage:
        """The caller's own bookings, newest first.

        Raises:
            CursorError: ``cursor`` is not one this list gave out.
        """
        after = decode_time_key("bookings", cursor) if cursor is not None else None
        found = await self.read_models.bookings.customer_bookings(
            principal.subject, after=after, limit=limit + 1
        )
        items = found[:limit]
        next_cursor = _booking_cursor(items[-1]) if len(found) > limit else None
        return models.BookingPage(items=items, next_cursor=next_cursor)

    # analytics

    async def sales(
        self,
        start: dt.date,
        end: dt.date,
        *,
        origin: str | None = None,
        destination: str | None = None,
        cursor: str | None = None,
        limit: int = 100,
    ) -> models.SalesPage:
        """Sales per day and route, by day then route.

        Raises:
            CursorError: ``cursor`` is not one this list gave out.
        """
        after = None
        if cursor is not None:
            day, origin_after, destination_after = decode_cursor("sales", cursor, 3)
            after = (day, origin_after, destination_after)
        found = await self.read_models.analytics.sales_days(
            SalesQuery(start, end, origin, destination, after, limit + 1)
        )
        items = found[:limit]
        next_cursor = None
        if len(found) > limit:
            last = items[-1]
            next_cursor = encode_cursor(
                "sales", last.date.isoformat(), last.origin, last.destination
            )
        return models.SalesPage(items=items, next_cursor=next_cursor)

    async def load_factor(self, flight_id: UUID) -> models.LoadFactorReport | None:
        return await self.read_models.analytics.load_factor(str(flight_id))

    async def funnel(self, start: dt.date, end: dt.date) -> models.FunnelReport:
        days = await self.read_models.analytics.funnel_days(start, end)
        return models.FunnelReport(items=days, totals=models.funnel_totals(days, start))
