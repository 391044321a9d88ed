"""Readers of the read models: ports, MongoDB and Redis adapters, an in-memory fake.

The fake behaves as the adapters do: one contract suite runs on both (STYLE G12).

Shapes, names and versions are those of ``docs/read-model-shapes.md``:

- MongoDB collections are ``<name>_v<N>``; N is the ``active`` version of the read model
  (``bookings``, ``flights``, ``analytics``) in ``read_model_versions`` (1 when absent),
  re-read at most once a second per process (:class:`MongoVersions`).
- Redis keys are ``<redis_prefix>v<N>:...`` with N the active version of read model ``redis``.
- Progress for read-your-writes: ``projection_checkpoints`` (``low_watermark``) and the
  ``applied_events`` markers.

The adapters only read, except :class:`RedisSearchCache`, which fills the search cache
that the flights worker invalidates. Redis is a cache here: when it fails, the readers log
``query.redis_unavailable`` and answer as for a miss (MongoDB's figures are then used).
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import structlog
from redis.exceptions import RedisError

from flightbook.queries.models import (
    BookingView,
    FlightView,
    FunnelDay,
    LoadFactorReport,
    SalesDay,
    booking_from_document,
    flight_from_document,
    funnel_from_document,
    load_factor_from_documents,
    sales_from_document,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    import redis.asyncio
    from pymongo.asynchronous.collection import AsyncCollection
    from pymongo.asynchronous.database import AsyncDatabase

    from flightbook.queries.cursors import TimeKey

__all__ = (
    "DEFAULT_VERSION",
    "AnalyticsReadModel",
    "BookingReadModel",
    "FlightReadModel",
    "MemoryReadModels",
    "MongoAnalytics",
    "MongoBookings",
    "MongoFlights",
    "MongoProgress",
    "MongoVersions",
    "ProgressReadModel",
    "ReadModels",
    "RedisSearchCache",
    "RedisSeats",
    "SalesKey",
    "SearchCache",
    "SeatCounts",
    "Versions",
    "mongo_redis_read_models",
)

DEFAULT_VERSION = 1
"""The version of a read model that ``read_model_versions`` does not mention."""
VERSIONS = "read_model_versions"
CHECKPOINTS = "projection_checkpoints"
MARKERS = "applied_events"
_log = structlog.get_logger("flightbook.queries")

Document = dict[str, Any]
SalesKey = tuple[str, str, str]
"""A sales row's sort key: ``(date, origin, destination)``."""
_SALES_ORDER = [("date", 1), ("origin", 1), ("destination", 1)]


# -- ports ----------------------------------------------------------------------------------


@runtime_checkable
class Versions(Protocol):
    """The active version of each read model."""

    async def active_version(self, read_model: str) -> int: ...


@runtime_checkable
class FlightReadModel(Protocol):
    """The ``flights`` read model: one document per flight."""

    async def find_flight(self, flight_id: str) -> FlightView | None: ...

    async def search_flights(
        self, origin: str, destination: str, day: str, *, after: TimeKey | None, limit: int
    ) -> list[FlightView]:
        """Flights of the route departing on ``day`` (UTC), by departure then id.

        Only those after ``after`` (a ``(departure, flight_id)``), at most ``limit``.
        """
        ...


@runtime_checkable
class BookingReadModel(Protocol):
    """The ``bookings`` read model: one document per booking."""

    async def find_booking(self, booking_id: str) -> BookingView | None: ...

    async def customer_bookings(
        self, customer_id: str, *, after: TimeKey | None, limit: int
    ) -> list[BookingView]:
        """The customer's bookings, newest first (``created_at`` then id, descending).

        Only those strictly older than ``after``, at most ``limit``.
        """
        ...


@runtime_checkable
class AnalyticsReadModel(Protocol):
    """The ``analytics`` read model: sales, load factor and funnel collections."""

    async def sales_days(
        self,
        start: dt.date,
        end: dt.date,
        *,
        origin: str | None,
        destination: str | None,
        after: SalesKey | None,
        limit: int,
    ) -> list[SalesDay]:
        """Sales rows of days ``start``..``end`` (inclusive) by day, origin, destination.

        Only those after ``after`` (a ``(date, origin, destination)``), at most ``limit``.
        """
        ...

    async def load_factor(self, flight_id: str) -> LoadFactorReport | None: ...

    async def funnel_days(self, start: dt.date, end: dt.date) -> list[FunnelDay]: ...


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


@dataclass(frozen=True)
class ReadModels:
    """Everything the query API reads."""

    flights: FlightReadModel
    bookings: BookingReadModel
    analytics: AnalyticsReadModel
    progress: ProgressReadModel
    seats: SeatCounts
    search_cache: SearchCache


def search_key(origin: str, destination: str, day: str) -> str:
    """The search cache key (without ``<redis_prefix>v<N>:``)."""
    return f"search:{origin}:{destination}:{day}"


def seats_key(flight_id: str) -> str:
    """The seats-left hash key (without ``<redis_prefix>v<N>:``)."""
    return f"seats:{flight_id}"


def _seats_from_hash(raw: Mapping[Any, Any]) -> dict[str, int]:
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


def _after(query: Document, alternatives: list[Document]) -> Document:
    # An explicit $and: the local stack's MongoDB-compatible server drops the other
    # conditions of a query for an $or branch that has several fields.
    return {"$and": [query, {"$or": alternatives}]}


def _time_key_filter(query: Document, field: str, after: TimeKey, *, descending: bool) -> Document:
    at, identifier = after
    op = "$lt" if descending else "$gt"
    return _after(query, [{field: {op: at}}, {field: at, "_id": {op: identifier}}])


# -- MongoDB --------------------------------------------------------------------------------


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

    async def active_version(self, read_model: str) -> int:
        now = self._clock()
        if self._read_at is None or now - self._read_at >= self._ttl:
            active: dict[str, int] = {}
            async for doc in self._collection.find({}, {"active": 1}):
                value = doc.get("active")
                if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                    active[str(doc["_id"])] = value
            self._active, self._read_at = active, now
        return self._active.get(read_model, DEFAULT_VERSION)


class _MongoReader:
    def __init__(self, database: AsyncDatabase[Document], versions: Versions) -> None:
        self._database = database
        self._versions = versions

    async def _collection(self, read_model: str, name: str) -> AsyncCollection[Document]:
        version = await self._versions.active_version(read_model)
        return self._database[f"{name}_v{version}"]


class MongoFlights(_MongoReader):
    """The ``flights_v<N>`` collection.

    Args:
        database: the read models' database. Owned by the caller.
        versions: the active versions.
    """

    async def find_flight(self, flight_id: str) -> FlightView | None:
        collection = await self._collection("flights", "flights")
        doc = await collection.find_one({"_id": flight_id})
        return flight_from_document(doc) if doc is not None else None

    async def search_flights(
        self, origin: str, destination: str, day: str, *, after: TimeKey | None, limit: int
    ) -> list[FlightView]:
        collection = await self._collection("flights", "flights")
        query: Document = {"origin": origin, "destination": destination, "date": day}
        if after is not None:
            query = _time_key_filter(query, "departure", after, descending=False)
        found = collection.find(query).sort([("departure", 1), ("_id", 1)]).limit(limit)
        return [flight_from_document(doc) async for doc in found]


class MongoBookings(_MongoReader):
    """The ``bookings_v<N>`` collection.

    Args:
        database: the read models' database. Owned by the caller.
        versions: the active versions.
    """

    async def find_booking(self, booking_id: str) -> BookingView | None:
        collection = await self._collection("bookings", "bookings")
        doc = await collection.find_one({"_id": booking_id})
        return booking_from_document(doc) if doc is not None else None

    async def customer_bookings(
        self, customer_id: str, *, after: TimeKey | None, limit: int
    ) -> list[BookingView]:
        collection = await self._collection("bookings", "bookings")
        query: Document = {"customer_id": customer_id}
        if after is not None:
            query = _time_key_filter(query, "created_at", after, descending=True)
        found = collection.find(query).sort([("created_at", -1), ("_id", -1)]).limit(limit)
        return [booking_from_document(doc) async for doc in found]


class MongoAnalytics(_MongoReader):
    """The ``sales_daily_v<N>``, ``load_factor_v<N>`` and ``funnel_daily_v<N>`` collections.

    Args:
        database: the read models' database. Owned by the caller.
        versions: the active versions.
    """

    async def sales_days(
        self,
        start: dt.date,
        end: dt.date,
        *,
        origin: str | None,
        destination: str | None,
        after: SalesKey | None,
        limit: int,
    ) -> list[SalesDay]:
        collection = await self._collection("analytics", "sales_daily")
        query: Document = {"date": {"$gte": start.isoformat(), "$lte": end.isoformat()}}
        if origin is not None:
            query["origin"] = origin
        if destination is not None:
            query["destination"] = destination
        if after is not None:
            # Field by field rather than on the "<date>:<route>" _id: the local stack's
            # MongoDB-compatible server mis-compares date-like strings that are not dates.
            day, first, last = after
            query = _after(
                query,
                [
                    {"date": {"$gt": day}},
                    {"date": day, "origin": {"$gt": first}},
                    {"date": day, "origin": first, "destination": {"$gt": last}},
                ],
            )
        found = collection.find(query).sort(_SALES_ORDER).limit(limit)
        return [sales_from_document(doc) async for doc in found]

    async def load_factor(self, flight_id: str) -> LoadFactorReport | None:
        collection = await self._collection("analytics", "load_factor")
        docs = await collection.find({"flight_id": flight_id}).sort("_id", 1).to_list(None)
        return load_factor_from_documents(docs)

    async def funnel_days(self, start: dt.date, end: dt.date) -> list[FunnelDay]:
        collection = await self._collection("analytics", "funnel_daily")
        query = {"date": {"$gte": start.isoformat(), "$lte": end.isoformat()}}
        return [funnel_from_document(doc) async for doc in collection.find(query).sort("date", 1)]


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
            {"_id": f"{read_model}:{context}"}, {"low_watermark": 1}
        )
        if checkpoint is not None:
            watermark = checkpoint.get("low_watermark")
            if isinstance(watermark, int) and watermark >= position:
                return True
        marker = await self._markers.find_one(
            {"_id": f"{read_model}:{context}:{position}"}, {"_id": 1}
        )
        return marker is not None


# -- Redis ----------------------------------------------------------------------------------


class _RedisReader:
    def __init__(self, client: redis.asyncio.Redis, *, prefix: str, versions: Versions) -> None:
        self._client = client
        self._prefix = prefix
        self._versions = versions

    async def _key(self, key: str) -> str:
        return f"{self._prefix}v{await self._versions.active_version('redis')}:{key}"


class RedisSeats(_RedisReader):
    """The ``seats:<flight id>`` hashes.

    Args:
        client: a ``redis.asyncio`` client. Owned by the caller.
        prefix: the deployment's ``redis_prefix``.
        versions: the active versions (read model ``redis``).
    """

    async def seats_left(self, flight_ids: Sequence[str]) -> dict[str, dict[str, int]]:
        if not flight_ids:
            return {}
        keys = [await self._key(seats_key(flight_id)) for flight_id in flight_ids]
        try:
            async with self._client.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.hgetall(key)
                hashes: list[Mapping[Any, Any]] = await pipe.execute()
        except RedisError as exc:
            _log.warning("query.redis_unavailable", read="seats", error=repr(exc))
            return {}
        found: dict[str, dict[str, int]] = {}
        for flight_id, raw in zip(flight_ids, hashes, strict=True):
            if raw:
                found[flight_id] = _seats_from_hash(raw)
        return found


class RedisSearchCache(_RedisReader):
    """The ``search:<origin>:<destination>:<date>`` strings.

    Args:
        client: a ``redis.asyncio`` client. Owned by the caller.
        prefix: the deployment's ``redis_prefix``.
        versions: the active versions (read model ``redis``).
    """

    async def cached_search(self, origin: str, destination: str, day: str) -> bytes | None:
        key = await self._key(search_key(origin, destination, day))
        try:
            value = await self._client.get(key)
        except RedisError as exc:
            _log.warning("query.redis_unavailable", read="search", error=repr(exc))
            return None
        if isinstance(value, str):
            return value.encode()
        return value

    async def cache_search(
        self, origin: str, destination: str, day: str, answer: bytes, ttl_seconds: int
    ) -> None:
        key = await self._key(search_key(origin, destination, day))
        try:
            await self._client.set(key, answer, ex=ttl_seconds)
        except RedisError as exc:
            _log.warning("query.redis_unavailable", write="search", error=repr(exc))


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
    )


# -- in memory ------------------------------------------------------------------------------


def _sales_key(doc: Mapping[str, Any]) -> SalesKey:
    return str(doc["date"]), str(doc["origin"]), str(doc["destination"])


def _newest_first(doc: Mapping[str, Any]) -> tuple[dt.datetime, str]:
    return _as_utc(doc["created_at"]), str(doc["_id"])


def _as_utc(value: dt.datetime) -> dt.datetime:
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


class MemoryReadModels:
    """The read models in dictionaries, shaped and queried as in MongoDB and Redis.

    Seed it as the workers would write: :meth:`put_document` into a collection by its full
    name (``bookings_v1``, ``read_model_versions``...), :meth:`put_hash` a Redis hash by
    its key without the prefix (``v1:seats:<id>``). It implements every port.

    Args:
        clock: monotonic seconds, for the search cache's expiry.
    """

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.collections: dict[str, dict[str, Document]] = {}
        self.hashes: dict[str, dict[str, str]] = {}
        self.strings: dict[str, tuple[bytes, float]] = {}
        self.reads: dict[str, int] = {}
        """How many times each collection was queried (tests assert cache hits with it)."""
        self._clock = clock

    # seeding, as the projection workers would

    def put_document(self, collection: str, document: Mapping[str, Any]) -> None:
        self.collections.setdefault(collection, {})[str(document["_id"])] = dict(document)

    def put_hash(self, key: str, mapping: Mapping[str, int | str]) -> None:
        self.hashes.setdefault(key, {}).update({k: str(v) for k, v in mapping.items()})

    def delete_key(self, key: str) -> None:
        self.hashes.pop(key, None)
        self.strings.pop(key, None)

    def read_models(self) -> ReadModels:
        return ReadModels(
            flights=self,
            bookings=self,
            analytics=self,
            progress=self,
            seats=self,
            search_cache=self,
        )

    # helpers

    def _docs(self, read_model: str, name: str) -> list[Document]:
        collection = f"{name}_v{self._version(read_model)}"
        self.reads[collection] = self.reads.get(collection, 0) + 1
        return list(self.collections.get(collection, {}).values())

    def _version(self, read_model: str) -> int:
        doc = self.collections.get(VERSIONS, {}).get(read_model)
        value = doc.get("active") if doc else None
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
        return DEFAULT_VERSION

    def _key(self, key: str) -> str:
        return f"v{self._version('redis')}:{key}"

    # ports

    async def active_version(self, read_model: str) -> int:
        return self._version(read_model)

    async def find_flight(self, flight_id: str) -> FlightView | None:
        found = [d for d in self._docs("flights", "flights") if d["_id"] == flight_id]
        return flight_from_document(found[0]) if found else None

    async def search_flights(
        self, origin: str, destination: str, day: str, *, after: TimeKey | None, limit: int
    ) -> list[FlightView]:
        docs = sorted(
            (
                d
                for d in self._docs("flights", "flights")
                if (d["origin"], d["destination"], d["date"]) == (origin, destination, day)
            ),
            key=lambda d: (_as_utc(d["departure"]), str(d["_id"])),
        )
        if after is not None:
            docs = [d for d in docs if (_as_utc(d["departure"]), str(d["_id"])) > after]
        return [flight_from_document(d) for d in docs[:limit]]

    async def find_booking(self, booking_id: str) -> BookingView | None:
        found = [d for d in self._docs("bookings", "bookings") if d["_id"] == booking_id]
        return booking_from_document(found[0]) if found else None

    async def customer_bookings(
        self, customer_id: str, *, after: TimeKey | None, limit: int
    ) -> list[BookingView]:
        docs = sorted(
            (d for d in self._docs("bookings", "bookings") if d["customer_id"] == customer_id),
            key=_newest_first,
            reverse=True,
        )
        if after is not None:
            docs = [d for d in docs if _newest_first(d) < after]
        return [booking_from_document(d) for d in docs[:limit]]

    async def sales_days(
        self,
        start: dt.date,
        end: dt.date,
        *,
        origin: str | None,
        destination: str | None,
        after: SalesKey | None,
        limit: int,
    ) -> list[SalesDay]:
        docs = sorted(
            (
                d
                for d in self._docs("analytics", "sales_daily")
                if start.isoformat() <= d["date"] <= end.isoformat()
                and origin in (None, d["origin"])
                and destination in (None, d["destination"])
                and (after is None or _sales_key(d) > after)
            ),
            key=_sales_key,
        )
        return [sales_from_document(d) for d in docs[:limit]]

    async def load_factor(self, flight_id: str) -> LoadFactorReport | None:
        docs = sorted(
            (d for d in self._docs("analytics", "load_factor") if d["flight_id"] == flight_id),
            key=lambda d: str(d["_id"]),
        )
        return load_factor_from_documents(docs)

    async def funnel_days(self, start: dt.date, end: dt.date) -> list[FunnelDay]:
        docs = sorted(
            (
                d
                for d in self._docs("analytics", "funnel_daily")
                if start.isoformat() <= d["date"] <= end.isoformat()
            ),
            key=lambda d: str(d["date"]),
        )
        return [funnel_from_document(d) for d in docs]

    async def has_applied(self, read_model: str, context: str, position: int) -> bool:
        checkpoint = self.collections.get(CHECKPOINTS, {}).get(f"{read_model}:{context}")
        watermark = checkpoint.get("low_watermark") if checkpoint else None
        if isinstance(watermark, int) and watermark >= position:
            return True
        return f"{read_model}:{context}:{position}" in self.collections.get(MARKERS, {})

    async def seats_left(self, flight_ids: Sequence[str]) -> dict[str, dict[str, int]]:
        found: dict[str, dict[str, int]] = {}
        for flight_id in flight_ids:
            raw = self.hashes.get(self._key(seats_key(flight_id)))
            if raw:
                found[flight_id] = _seats_from_hash(raw)
        return found

    async def cached_search(self, origin: str, destination: str, day: str) -> bytes | None:
        key = self._key(search_key(origin, destination, day))
        entry = self.strings.get(key)
        if entry is None:
            return None
        value, expires_at = entry
        if self._clock() >= expires_at:
            del self.strings[key]
            return None
        return value

    async def cache_search(
        self, origin: str, destination: str, day: str, answer: bytes, ttl_seconds: int
    ) -> None:
        key = self._key(search_key(origin, destination, day))
        self.strings[key] = (answer, self._clock() + ttl_seconds)
