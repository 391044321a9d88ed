"""Redis readers of the read models: seats, the search cache, changed bookings.

The bookings worker publishes on each ``booking:<id>`` hash it writes, on a channel named
like the key, and the booking's id on its customer's channel
(:func:`~flightbook.contracts.readmodels.customer_channel`); :class:`RedisBookingChanges`
listens there: one pattern subscription per process for the bookings' channels, fanned out
to the streams that watch a booking, and a subscription per socket for a customer's.

Redis is a cache here: when it fails, the readers log ``query.redis_unavailable`` and
answer as for a miss (MongoDB's figures are then used). :class:`RedisSearchCache` is the
one writer on the query side: it fills the cache that the flights worker invalidates.
"""

from __future__ import annotations

import asyncio
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
from flightbook.queries import models
from flightbook.queries.feeds import QueueFeed
from flightbook.queries.ports import seats_from_hash

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Mapping, Sequence

    import redis.asyncio
    from redis.asyncio.client import PubSub

    from flightbook.queries.ports import Versions

__all__ = ("RedisBookingChanges", "RedisSearchCache", "RedisSeats")

_log = structlog.get_logger("flightbook.queries")


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


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


_RETRY_SECONDS = 0.5
_READY_SECONDS = 5.0
_IDLE_SECONDS = 1.0


def _glob_escaped(text: str) -> str:
    """``text`` matched literally in a Redis glob pattern."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


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

    One ``PSUBSCRIBE`` on ``<prefix>v*:booking:*`` (every version of the read model, so a
    stream keeps hearing its booking across a switch of versions), started with the first
    watch: a watch costs no Redis command and no connection of its own, and an
    announcement reaches the watchers of its booking only. When the connection fails, every
    watcher is woken (it reads again) and the subscription is made again; once it holds, they
    are woken once more, so an announcement missed meanwhile costs a read, never a status.
    A customer's channel (:meth:`watch_customer`, the WebSocket) is a subscription of its
    own, for as long as the socket lasts.

    Args:
        client: a ``redis.asyncio`` client (owned by the caller; the subscription takes one
            connection of its pool until :meth:`aclose`).
        prefix: the deployment's ``redis_prefix``.
        versions: the active versions (read model ``redis``), for :meth:`latest`.
    """

    def __init__(self, client: redis.asyncio.Redis, *, prefix: str, versions: Versions) -> None:
        super().__init__(client, prefix=prefix, versions=versions)
        self._pattern = f"{_glob_escaped(prefix)}v*:{booking_key('*')}"
        self._watchers: dict[str, set[QueueFeed]] = {}
        self._listening = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @contextlib.asynccontextmanager
    async def watch(self, booking_id: str) -> AsyncIterator[QueueFeed]:
        feed = QueueFeed()
        self._watchers.setdefault(booking_id, set()).add(feed)
        try:
            await self._listen_started()
            yield feed
        finally:
            watchers = self._watchers.get(booking_id)
            if watchers is not None:
                watchers.discard(feed)
                if not watchers:
                    del self._watchers[booking_id]

    async def latest(self, booking_id: str) -> models.StatusPath | None:
        try:
            raw = await self._client.hgetall(await self._key(booking_key(booking_id)))
        except RedisError as exc:
            _log.warning("query.redis_unavailable", read="booking", error=repr(exc))
            return None
        return models.status_path_from_hash({_text(k): _text(v) for k, v in raw.items()})

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _listen_started(self) -> None:
        """Once the subscription holds (the read that follows a watch misses nothing).

        Raises:
            RedisError: it does not hold within a few seconds (Redis is away).
        """
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._listen(), name="booking-changes")
        if not self._listening.is_set():
            try:
                await asyncio.wait_for(self._listening.wait(), _READY_SECONDS)
            except TimeoutError:
                raise RedisError("the booking changes subscription does not hold") from None

    async def _listen(self) -> None:
        failed = False
        while True:
            pubsub = self._client.pubsub()
            try:
                await pubsub.psubscribe(self._pattern)
                while await pubsub.get_message(timeout=_IDLE_SECONDS) is None:
                    pass  # until Redis confirms the subscription
                self._listening.set()
                if failed:
                    self._wake_all()  # what was announced while it did not hold
                failed = False
                while True:
                    # a bounded wait: the client's socket timeout would end an unbounded one
                    message = await pubsub.get_message(
                        ignore_subscribe_messages=True, timeout=_IDLE_SECONDS
                    )
                    if message is not None and message.get("type") == "pmessage":
                        self._announce(message["channel"])
            except (RedisError, OSError) as exc:
                failed = True
                self._listening.clear()
                self._wake_all()
                _log.warning("query.redis_unavailable", read="booking changes", error=repr(exc))
                await asyncio.sleep(_RETRY_SECONDS)
            finally:
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]

    def _announce(self, channel: bytes | str) -> None:
        name = channel.decode() if isinstance(channel, bytes) else channel
        for feed in self._watchers.get(name.rsplit(":", 1)[-1], ()):
            feed.announce()

    def _wake_all(self) -> None:
        for feeds in self._watchers.values():
            for feed in feeds:
                feed.announce()

    @contextlib.asynccontextmanager
    async def watch_customer(self, customer_id: str) -> AsyncIterator[_CustomerSubscription]:
        channel = self._prefix + customer_channel(customer_id)  # no version: see its docstring
        pubsub = self._client.pubsub()
        try:
            await pubsub.subscribe(channel)
            yield _CustomerSubscription(pubsub)
        finally:
            await pubsub.aclose()  # type: ignore[no-untyped-call]
