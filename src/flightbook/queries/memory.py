"""The read models in dictionaries, shaped and queried as in MongoDB and Redis."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import time
from typing import TYPE_CHECKING, Any

from flightbook.contracts import readmodels
from flightbook.queries import models
from flightbook.queries.feeds import QueueFeed
from flightbook.queries.ports import ReadModels, seats_from_hash

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Collection, Mapping, Sequence

    from flightbook.queries.cursors import TimeKey
    from flightbook.queries.ports import Document, SalesKey, SalesQuery

__all__ = ("MemoryReadModels",)


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
        self._watchers: dict[str, list[QueueFeed]] = {}
        self._customer_watchers: dict[str, list[asyncio.Queue[str]]] = {}

    # seeding, as the projection workers would

    def put_document(self, name: str, document: Mapping[str, Any]) -> None:
        self.collections.setdefault(name, {})[str(document["_id"])] = dict(document)

    def put_hash(
        self,
        key: str,
        mapping: Mapping[str, int | str],
        *,
        announce: Sequence[tuple[str, str]] = (),
    ) -> None:
        """Write the hash and announce it, as the worker's script does.

        On the key's own channel, and each ``(channel, message)`` of ``announce`` (the
        channel without prefix).
        """
        self.hashes.setdefault(key, {}).update({k: str(v) for k, v in mapping.items()})
        for feed in self._watchers.get(key, []):
            feed.announce()
        for channel, message in announce:
            for customer_queue in self._customer_watchers.get(channel, []):
                customer_queue.put_nowait(message)

    def watching(self, key: str) -> bool:
        """Whether a change feed listens on ``key`` now (tests wait for it)."""
        return bool(self._watchers.get(key))

    def delete_key(self, key: str) -> None:
        self.hashes.pop(key, None)
        self.strings.pop(key, None)

    def read_models(self) -> ReadModels:
        ports = dataclasses.fields(ReadModels)
        return ReadModels(**{port.name: self for port in ports})  # this fake is every port

    # helpers

    def _docs(self, read_model: str, name: str) -> list[Document]:
        name = readmodels.collection(name, self._version(read_model))
        self.reads[name] = self.reads.get(name, 0) + 1
        return list(self.collections.get(name, {}).values())

    def _version(self, read_model: str) -> int:
        doc = self.collections.get(readmodels.VERSIONS, {}).get(read_model)
        value = doc.get("active") if doc else None
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
        return readmodels.DEFAULT_VERSION

    def _key(self, key: str) -> str:
        return readmodels.redis_version_prefix("", self._version("redis")) + key

    # ports

    async def active_version(self, read_model: str) -> int:
        return self._version(read_model)

    async def find_flight(self, flight_id: str) -> models.FlightView | None:
        found = [d for d in self._docs("flights", "flights") if d["_id"] == flight_id]
        return models.flight_from_document(found[0]) if found else None

    async def search_flights(
        self, origin: str, destination: str, day: str, *, after: TimeKey | None, limit: int
    ) -> list[models.FlightView]:
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
        return [models.flight_from_document(d) for d in docs[:limit]]

    async def find_booking(self, booking_id: str) -> models.BookingView | None:
        found = [d for d in self._docs("bookings", "bookings") if d["_id"] == booking_id]
        return models.booking_from_document(found[0]) if found else None

    async def status_path(self, booking_id: str) -> models.StatusPath | None:
        found = [d for d in self._docs("bookings", "bookings") if d["_id"] == booking_id]
        return models.status_path_from_document(found[0]) if found else None

    @contextlib.asynccontextmanager
    async def watch(self, booking_id: str) -> AsyncIterator[QueueFeed]:
        key = self._key(readmodels.booking_key(booking_id))
        feed = QueueFeed()
        self._watchers.setdefault(key, []).append(feed)
        try:
            yield feed
        finally:
            self._watchers[key].remove(feed)

    async def latest(self, booking_id: str) -> models.StatusPath | None:
        raw = self.hashes.get(self._key(readmodels.booking_key(booking_id)))
        return models.status_path_from_hash(raw) if raw else None

    async def aclose(self) -> None:
        """Nothing to close (the Redis hub's listener stops here)."""

    @contextlib.asynccontextmanager
    async def watch_customer(self, customer_id: str) -> AsyncIterator[_CustomerFeed]:
        channel = readmodels.customer_channel(customer_id)
        queue: asyncio.Queue[str] = asyncio.Queue()
        self._customer_watchers.setdefault(channel, []).append(queue)
        try:
            yield _CustomerFeed(queue)
        finally:
            self._customer_watchers[channel].remove(queue)

    async def status_paths(
        self, customer_id: str, *, booking_ids: Collection[str] = (), unfinished: bool = False
    ) -> dict[str, models.StatusPath]:
        wanted = set(booking_ids)
        return {
            str(d["_id"]): models.status_path_from_document(d)
            for d in self._docs("bookings", "bookings")
            if d["customer_id"] == customer_id
            and (
                str(d["_id"]) in wanted
                or (unfinished and d["status"] in models.UNFINISHED_STATUSES)
            )
        }

    async def customer_bookings(
        self, customer_id: str, *, after: TimeKey | None, limit: int
    ) -> list[models.BookingView]:
        docs = sorted(
            (d for d in self._docs("bookings", "bookings") if d["customer_id"] == customer_id),
            key=_newest_first,
            reverse=True,
        )
        if after is not None:
            docs = [d for d in docs if _newest_first(d) < after]
        return [models.booking_from_document(d) for d in docs[:limit]]

    async def sales_days(self, query: SalesQuery) -> list[models.SalesDay]:
        docs = sorted(
            (
                d
                for d in self._docs("analytics", "sales_daily")
                if query.start.isoformat() <= d["date"] <= query.end.isoformat()
                and query.origin in (None, d["origin"])
                and query.destination in (None, d["destination"])
                and (query.after is None or _sales_key(d) > query.after)
            ),
            key=_sales_key,
        )
        return [models.sales_from_document(d) for d in docs[: query.limit]]

    async def load_factor(self, flight_id: str) -> models.LoadFactorReport | None:
        docs = sorted(
            (d for d in self._docs("analytics", "load_factor") if d["flight_id"] == flight_id),
            key=lambda d: str(d["_id"]),
        )
        return models.load_factor_from_documents(docs)

    async def funnel_days(self, start: dt.date, end: dt.date) -> list[models.FunnelDay]:
        docs = sorted(
            (
                d
                for d in self._docs("analytics", "funnel_daily")
                if start.isoformat() <= d["date"] <= end.isoformat()
            ),
            key=lambda d: str(d["date"]),
        )
        return [models.funnel_from_document(d) for d in docs]

    async def has_applied(self, read_model: str, context: str, position: int) -> bool:
        checkpoint = self.collections.get(readmodels.CHECKPOINTS, {}).get(
            readmodels.checkpoint_id(read_model, context)
        )
        watermark = checkpoint.get("low_watermark") if checkpoint else None
        if isinstance(watermark, int) and watermark >= position:
            return True
        return readmodels.marker_id(read_model, context, position) in self.collections.get(
            readmodels.MARKERS, {}
        )

    async def seats_left(self, flight_ids: Sequence[str]) -> dict[str, dict[str, int]]:
        found: dict[str, dict[str, int]] = {}
        for flight_id in flight_ids:
            raw = self.hashes.get(self._key(readmodels.seats_key(flight_id)))
            if raw:
                found[flight_id] = seats_from_hash(raw)
        return found

    async def cached_search(self, origin: str, destination: str, day: str) -> bytes | None:
        key = self._key(readmodels.search_key(origin, destination, day))
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
        key = self._key(readmodels.search_key(origin, destination, day))
        self.strings[key] = (answer, self._clock() + ttl_seconds)


class _CustomerFeed:
    def __init__(self, queue: asyncio.Queue[str]) -> None:
        self._queue = queue

    async def next_changes(self, timeout: float) -> set[str]:
        try:
            first = await asyncio.wait_for(self._queue.get(), timeout)
        except TimeoutError:
            return set()
        changed = {first}
        while not self._queue.empty():
            changed.add(self._queue.get_nowait())
        return changed
