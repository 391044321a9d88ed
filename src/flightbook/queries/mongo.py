"""MongoDB readers of the read models (the query API only reads; the workers write).

Every reader resolves the active version of its read model per request (cached at most
``ttl`` seconds, :class:`MongoVersions`).
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Generic, TypeVar

from flightbook.contracts.readmodels import (
    CHECKPOINTS,
    DEFAULT_VERSION,
    MARKERS,
    VERSIONS,
    checkpoint_id,
    collection,
    marker_id,
)
from flightbook.queries import models
from flightbook.queries.ports import ReadModels
from flightbook.queries.redis import RedisBookingChanges, RedisSearchCache, RedisSeats

if TYPE_CHECKING:
    import datetime as dt
    from collections.abc import Callable, Collection

    import redis.asyncio
    from pymongo.asynchronous.collection import AsyncCollection
    from pymongo.asynchronous.database import AsyncDatabase

    from flightbook.queries.cursors import TimeKey
    from flightbook.queries.ports import Document, SalesQuery, Versions

__all__ = (
    "MongoAnalytics",
    "MongoBookings",
    "MongoFlights",
    "MongoProgress",
    "MongoVersions",
    "mongo_redis_read_models",
)

T = TypeVar("T")
_SALES_ORDER = [("date", 1), ("origin", 1), ("destination", 1)]


def _after(query: Document, alternatives: list[Document]) -> Document:
    # An explicit $and: the local stack's MongoDB-compatible server drops the other
    # conditions of a query for an $or branch that has several fields.
    return {"$and": [query, {"$or": alternatives}]}


def _time_key_filter(query: Document, field: str, after: TimeKey, *, descending: bool) -> Document:
    at, identifier = after
    op = "$lt" if descending else "$gt"
    return _after(query, [{field: {op: at}}, {field: at, "_id": {op: identifier}}])


class MongoVersions:
    """The active versions in ``read_model_versions``, re-read at most every ``ttl`` seconds.

    Args:
        database: the read models' database. Owned by the caller.
        ttl: how long a read is trusted.
        clock: monotonic seconds (tests pass their own).
    """

    def __init__(
        self,
        database: AsyncDatabase[Document],
        *,
        ttl: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._collection = database[VERSIONS]
        self._ttl = ttl
        self._clock = clock
        self._active: dict[str, int] = {}
        self._read_at: float | None = None
        self._reading: asyncio.Future[dict[str, int]] | None = None

    async def active_version(self, read_model: str) -> int:
        now = self._clock()
        if self._read_at is None or now - self._read_at >= self._ttl:
            # one read for every request that finds the figures stale meanwhile
            if self._reading is None:
                self._reading = asyncio.ensure_future(self._read())
                reading = self._reading
                try:  # shielded: a request that goes away does not cancel the others' read
                    self._active, self._read_at = await asyncio.shield(reading), now
                finally:
                    self._reading = None
            else:
                return (await asyncio.shield(self._reading)).get(read_model, DEFAULT_VERSION)
        return self._active.get(read_model, DEFAULT_VERSION)

    async def _read(self) -> dict[str, int]:
        active: dict[str, int] = {}
        async for doc in self._collection.find({}, {"active": 1}):
            value = doc.get("active")
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                active[str(doc["_id"])] = value
        return active


class _MongoReader:
    def __init__(self, database: AsyncDatabase[Document], versions: Versions) -> None:
        self._database = database
        self._versions = versions

    async def _collection(self, read_model: str, name: str) -> AsyncCollection[Document]:
        version = await self._versions.active_version(read_model)
        return self._database[collection(name, version)]


class _MongoDocuments(_MongoReader, Generic[T]):
    """A document read model: one document per aggregate, listed by ``(order_by, _id)``."""

    read_model: str
    order_by: str
    newest_first: bool
    view: Callable[[Document], T]

    async def _find(self, document_id: str) -> T | None:
        documents = await self._collection(self.read_model, self.read_model)
        found = await documents.find_one({"_id": document_id})
        return self.view(found) if found is not None else None

    async def _page(self, query: Document, after: TimeKey | None, limit: int) -> list[T]:
        documents = await self._collection(self.read_model, self.read_model)
        if after is not None:
            query = _time_key_filter(query, self.order_by, after, descending=self.newest_first)
        order = -1 if self.newest_first else 1
        found = documents.find(query).sort([(self.order_by, order), ("_id", order)]).limit(limit)
        return [self.view(doc) async for doc in found]


class MongoFlights(_MongoDocuments[models.FlightView]):
    """The ``flights_v<N>`` collection.

    Args:
        database: the read models' database. Owned by the caller.
        versions: the active versions.
    """

    read_model, order_by, newest_first = "flights", "departure", False
    view = staticmethod(models.flight_from_document)

    async def find_flight(self, flight_id: str) -> models.FlightView | None:
        return await self._find(flight_id)

    async def search_flights(
        self, origin: str, destination: str, day: str, *, after: TimeKey | None, limit: int
    ) -> list[models.FlightView]:
        query: Document = {"origin": origin, "destination": destination, "date": day}
        return await self._page(query, after, limit)


class MongoBookings(_MongoDocuments[models.BookingView]):
    """The ``bookings_v<N>`` collection.

    Args:
        database: the read models' database. Owned by the caller.
        versions: the active versions.
    """

    read_model, order_by, newest_first = "bookings", "created_at", True
    view = staticmethod(models.booking_from_document)

    async def find_booking(self, booking_id: str) -> models.BookingView | None:
        return await self._find(booking_id)

    async def status_path(self, booking_id: str) -> models.StatusPath | None:
        documents = await self._collection(self.read_model, self.read_model)
        found = await documents.find_one(
            {"_id": booking_id}, {"reached": 1, "_v": 1, "customer_id": 1}
        )
        return models.status_path_from_document(found) if found is not None else None

    async def customer_bookings(
        self, customer_id: str, *, after: TimeKey | None, limit: int
    ) -> list[models.BookingView]:
        query: Document = {"customer_id": customer_id}
        return await self._page(query, after, limit)

    async def status_paths(
        self, customer_id: str, *, booking_ids: Collection[str] = (), unfinished: bool = False
    ) -> dict[str, models.StatusPath]:
        documents = await self._collection(self.read_model, self.read_model)
        queries: list[Document] = []
        if booking_ids:
            queries.append({"_id": {"$in": sorted(booking_ids)}, "customer_id": customer_id})
        if unfinished:  # served by the (customer_id, created_at) index
            queries.append(
                {"customer_id": customer_id, "status": {"$in": list(models.UNFINISHED_STATUSES)}}
            )
        found: dict[str, models.StatusPath] = {}
        for query in queries:  # two queries, not an $or (the local stand-in mishandles those)
            async for doc in documents.find(query, {"reached": 1, "_v": 1}):
                found[str(doc["_id"])] = models.status_path_from_document(doc)
        return found


class MongoAnalytics(_MongoReader):
    """The ``sales_daily_v<N>``, ``load_factor_v<N>`` and ``funnel_daily_v<N>`` collections.

    Args:
        database: the read models' database. Owned by the caller.
        versions: the active versions.
    """

    async def sales_days(self, query: SalesQuery) -> list[models.SalesDay]:
        collection = await self._collection("analytics", "sales_daily")
        found: Document = {"date": {"$gte": query.start.isoformat(), "$lte": query.end.isoformat()}}
        if query.origin is not None:
            found["origin"] = query.origin
        if query.destination is not None:
            found["destination"] = query.destination
        if query.after is not None:
            # Field by field rather than on the "<date>:<route>" _id: the local stack's
            # MongoDB-compatible server mis-compares date-like strings that are not dates.
            day, first, last = query.after
            found = _after(
                found,
                [
                    {"date": {"$gt": day}},
                    {"date": day, "origin": {"$gt": first}},
                    {"date": day, "origin": first, "destination": {"$gt": last}},
                ],
            )
        rows = collection.find(found).sort(_SALES_ORDER).limit(query.limit)
        return [models.sales_from_document(doc) async for doc in rows]

    async def load_factor(self, flight_id: str) -> models.LoadFactorReport | None:
        collection = await self._collection("analytics", "load_factor")
        docs = await collection.find({"flight_id": flight_id}).sort("_id", 1).to_list(None)
        return models.load_factor_from_documents(docs)

    async def funnel_days(self, start: dt.date, end: dt.date) -> list[models.FunnelDay]:
        collection = await self._collection("analytics", "funnel_daily")
        query = {"date": {"$gte": start.isoformat(), "$lte": end.isoformat()}}
        return [
            models.funnel_from_document(doc) async for doc in collection.find(query).sort("date", 1)
        ]


class MongoProgress:
    """``projection_checkpoints`` and ``applied_events`` (not versioned).

    Args:
        database: the read models' database. Owned by the caller.
    """

    def __init__(self, database: AsyncDatabase[Document]) -> None:
        self._checkpoints = database[CHECKPOINTS]
        self._markers = database[MARKERS]

    async def has_applied(self, read_model: str, context: str, position: int) -> bool:
        # The watermark answers for old positions (markers are purged after an hour),
        # the marker for a position applied ahead of a gap below it.
        checkpoint = await self._checkpoints.find_one(
            {"_id": checkpoint_id(read_model, context)}, {"low_watermark": 1}
        )
        if checkpoint is not None:
            watermark = checkpoint.get("low_watermark")
            if isinstance(watermark, int) and watermark >= position:
                return True
        marker = await self._markers.find_one(
            {"_id": marker_id(read_model, context, position)}, {"_id": 1}
        )
        return marker is not None


def mongo_redis_read_models(
    database: AsyncDatabase[Document],
    client: redis.asyncio.Redis,
    *,
    redis_prefix: str,
    version_ttl: float = 1.0,
) -> ReadModels:
    """The real readers over one MongoDB database and one Redis (both owned by the caller)."""
    versions = MongoVersions(database, ttl=version_ttl)
    return ReadModels(
        flights=MongoFlights(database, versions),
        bookings=MongoBookings(database, versions),
        analytics=MongoAnalytics(database, versions),
        progress=MongoProgress(database),
        seats=RedisSeats(client, prefix=redis_prefix, versions=versions),
        search_cache=RedisSearchCache(client, prefix=redis_prefix, versions=versions),
        changes=RedisBookingChanges(client, prefix=redis_prefix, versions=versions),
    )
