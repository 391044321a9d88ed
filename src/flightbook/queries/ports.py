"""The query side's ports: what the query API reads, whatever holds it.

Shapes, names and versions are those of :mod:`flightbook.contracts.readmodels` and
``docs/read-model-shapes.md``. Adapters: :mod:`.mongo` and :mod:`.redis`; the in-memory
fake: :mod:`.memory`. One contract suite runs on both (STYLE G12).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import datetime as dt
    from collections.abc import Collection, Mapping, Sequence
    from contextlib import AbstractAsyncContextManager

    from flightbook.queries import models
    from flightbook.queries.cursors import TimeKey

__all__ = (
    "AnalyticsReadModel",
    "BookingChanges",
    "BookingReadModel",
    "ChangeFeed",
    "CustomerFeed",
    "Document",
    "FlightReadModel",
    "ProgressReadModel",
    "ReadModels",
    "SalesKey",
    "SalesQuery",
    "SearchCache",
    "SeatCounts",
    "Versions",
    "seats_from_hash",
)

Document = dict[str, Any]
SalesKey = tuple[str, str, str]
"""A sales row's sort key: ``(date, origin, destination)``."""


@dataclass(frozen=True)
class SalesQuery:
    """Which sales rows to read: days ``start``..``end``, a route filter, a page."""

    start: dt.date
    end: dt.date
    origin: str | None = None
    destination: str | None = None
    after: SalesKey | None = None
    """Only rows after this ``(date, origin, destination)``."""
    limit: int = 100


@runtime_checkable
class Versions(Protocol):
    """The active version of each read model."""

    async def active_version(self, read_model: str) -> int: ...


@runtime_checkable
class FlightReadModel(Protocol):
    """The ``flights`` read model: one document per flight."""

    async def find_flight(self, flight_id: str) -> models.FlightView | None: ...

    async def search_flights(
        self, origin: str, destination: str, day: str, *, after: TimeKey | None, limit: int
    ) -> list[models.FlightView]:
        """Flights of the route departing on ``day`` (UTC), by departure then id.

        Only those after ``after`` (a ``(departure, flight_id)``), at most ``limit``.
        """
        ...


@runtime_checkable
class BookingReadModel(Protocol):
    """The ``bookings`` read model: one document per booking."""

    async def find_booking(self, booking_id: str) -> models.BookingView | None: ...

    async def status_path(self, booking_id: str) -> models.StatusPath | None:
        """The statuses the booking reached, oldest first (None: no such booking)."""
        ...

    async def customer_bookings(
        self, customer_id: str, *, after: TimeKey | None, limit: int
    ) -> list[models.BookingView]:
        """The customer's bookings, newest first (``created_at`` then id, descending).

        Only those strictly older than ``after``, at most ``limit``.
        """
        ...

    async def status_paths(
        self, customer_id: str, *, booking_ids: Collection[str] = (), unfinished: bool = False
    ) -> dict[str, models.StatusPath]:
        """The statuses of some of the customer's bookings, by booking id.

        Those among ``booking_ids`` and (``unfinished``) every one of theirs whose status
        is not final yet. Another customer's booking is never among them, whatever
        ``booking_ids`` says.
        """
        ...


@runtime_checkable
class AnalyticsReadModel(Protocol):
    """The ``analytics`` read model: sales, load factor and funnel collections."""

    async def sales_days(self, query: SalesQuery) -> list[models.SalesDay]:
        """Sales rows of the query's days (inclusive) by day, origin, destination."""
        ...

    async def load_factor(self, flight_id: str) -> models.LoadFactorReport | None: ...

    async def funnel_days(self, start: dt.date, end: dt.date) -> list[models.FunnelDay]: ...


@runtime_checkable
class ProgressReadModel(Protocol):
    """How far the projection workers got (for ``X-Flightbook-After``)."""

    async def has_applied(self, read_model: str, context: str, position: int) -> bool:
        """True once ``read_model`` applied the event at ``position`` of ``context``'s log."""
        ...


@runtime_checkable
class SeatCounts(Protocol):
    """Seats left per flight and fare, as fresh as the Redis worker keeps them."""

    async def seats_left(self, flight_ids: Sequence[str]) -> dict[str, dict[str, int]]:
        """``{flight id: {fare code: seats left}}`` for the flights Redis knows."""
        ...


@runtime_checkable
class SearchCache(Protocol):
    """Hot search answers, keyed by route and day, invalidated by the flights worker."""

    async def cached_search(self, origin: str, destination: str, day: str) -> bytes | None: ...

    async def cache_search(
        self, origin: str, destination: str, day: str, answer: bytes, ttl_seconds: int
    ) -> None: ...


@runtime_checkable
class ChangeFeed(Protocol):
    """Announcements that one booking's read model changed (it is to be read again)."""

    async def next_change(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s; True when a change was announced meanwhile."""
        ...


@runtime_checkable
class CustomerFeed(Protocol):
    """Announcements that some of one customer's bookings changed."""

    async def next_changes(self, timeout: float) -> set[str]:
        """The ids of the bookings announced within ``timeout`` s (empty: none was).

        It returns at the first announcement, with every other that arrived by then.
        """
        ...


@runtime_checkable
class BookingChanges(Protocol):
    """Where the bookings worker announces each booking it wrote: its ``booking:<id>`` hash."""

    def watch(self, booking_id: str) -> AbstractAsyncContextManager[ChangeFeed]:
        """Announcements from now on (so a read after entering misses none)."""
        ...

    async def latest(self, booking_id: str) -> models.StatusPath | None:
        """The statuses in the booking's announced hash.

        None: no hash, or an older one without them (the document then answers).
        """
        ...

    async def aclose(self) -> None:
        """Stop listening (when the app stops)."""
        ...

    def watch_customer(self, customer_id: str) -> AbstractAsyncContextManager[CustomerFeed]:
        """The customer's bookings' announcements from now on (a read after it misses none)."""
        ...


@dataclass(frozen=True)
class ReadModels:
    """Everything the query API reads."""

    flights: FlightReadModel
    bookings: BookingReadModel
    analytics: AnalyticsReadModel
    progress: ProgressReadModel
    seats: SeatCounts
    search_cache: SearchCache
    changes: BookingChanges


def seats_from_hash(raw: Mapping[Any, Any]) -> dict[str, int]:
    seats: dict[str, int] = {}
    for field, value in raw.items():
        name = field.decode() if isinstance(field, bytes) else str(field)
        if name.startswith("_"):  # "_v": the version guard, not a fare
            continue
        try:
            seats[name] = int(value)
        except (TypeError, ValueError):
            continue
    return seats
