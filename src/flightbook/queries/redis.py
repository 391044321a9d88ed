"""Redis readers of the read models: seats, the search cache, changed bookings.

The bookings worker publishes on each ``booking:<id>`` hash it writes, on a channel named
like the key, and the booking's id on its customer's channel
(:func:`~flightbook.contracts.readmodels.customer_channel`); :class:`RedisBookingChanges`
listens there.

Redis is a cache here: when it fails, the readers log ``query.redis_unavailable`` and
answer as for a miss (MongoDB's figures are then used). :class:`RedisSearchCache` is the
one writer on the query side: it fills the cache that the flights worker invalidates.
"""

from __future__ import annotations

import contextlib
import time
from typing import TYPE_CHECKING, Any

import structlog
from redis.exceptions import RedisError

from flightbook.contracts.readmodels import (
    booking_key,
    customer_channel,
    redis_version_prefix,
    search_key,
    seats_key,
)
from flightbook.queries.ports import seats_from_hash

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Mapping, Sequence

    import redis.asyncio
    from redis.asyncio.client import PubSub

    from flightbook.queries.ports import Versions

__all__ = ("RedisBookingChanges", "RedisSearchCache", "RedisSeats")

_log = structlog.get_logger("flightbook.queries")


class _RedisReader:
    def __init__(self, client: redis.asyncio.Redis, *, prefix: str, versions: Versions) -> None:
        self._client = client
        self._prefix = prefix
        self._versions = versions

    async def _key(self, key: str) -> str:
        version = await self._versions.active_version("redis")
        return redis_version_prefix(self._prefix, version) + key


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
                found[flight_id] = seats_from_hash(raw)
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


class _Subscription:
    def __init__(self, pubsub: PubSub) -> None:
        self._pubsub = pubsub

    async def next_change(self, timeout: float) -> bool:
        # get_message answers None at once for the subscription's own confirmation: wait on
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            message = await self._pubsub.get_message(ignore_subscribe_messages=True, timeout=left)
            if message is not None:
                return True
        return False


class _CustomerSubscription:
    def __init__(self, pubsub: PubSub) -> None:
        self._pubsub = pubsub

    async def next_changes(self, timeout: float) -> set[str]:
        changed: set[str] = set()
        deadline = time.monotonic() + timeout
        while not changed and (left := deadline - time.monotonic()) > 0:
            message = await self._pubsub.get_message(ignore_subscribe_messages=True, timeout=left)
            while message is not None:  # then whatever else arrived: one read answers them all
                data = message.get("data")
                changed.add(data.decode() if isinstance(data, bytes) else str(data))
                message = await self._pubsub.get_message(
                    ignore_subscribe_messages=True, timeout=0.0
                )
        return changed


class RedisBookingChanges(_RedisReader):
    """The ``booking:<id>`` and ``customer:<digest>`` channels the bookings worker publishes on.

    Args:
        client: a ``redis.asyncio`` client. Owned by the caller; each watch takes a
            connection of its own from its pool while it lasts.
        prefix: the deployment's ``redis_prefix``.
        versions: the active versions (read model ``redis``).
    """

    @contextlib.asynccontextmanager
    async def watch(self, booking_id: str) -> AsyncIterator[_Subscription]:
        channel = await self._key(booking_key(booking_id))
        pubsub = self._client.pubsub()
        try:
            await pubsub.subscribe(channel)
            yield _Subscription(pubsub)
        finally:
            await pubsub.aclose()  # type: ignore[no-untyped-call]

    @contextlib.asynccontextmanager
    async def watch_customer(self, customer_id: str) -> AsyncIterator[_CustomerSubscription]:
        channel = self._prefix + customer_channel(customer_id)  # no version: see its docstring
        pubsub = self._client.pubsub()
        try:
            await pubsub.subscribe(channel)
            yield _CustomerSubscription(pubsub)
        finally:
            await pubsub.aclose()  # type: ignore[no-untyped-call]
