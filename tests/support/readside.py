"""Seeding MongoDB and Redis as the projection workers would, or the in-memory read models."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, Protocol, TypeVar

import pymongo
import redis
import redis.asyncio

from flightbook.config.settings import Settings
from flightbook.contracts.readmodels import customer_channel
from flightbook.projections.ports import HashWrite
from flightbook.projections.projectors import booking_hash
from flightbook.projections.redis import RedisHashes
from flightbook.queries.memory import MemoryReadModels
from flightbook.queries.mongo import mongo_redis_read_models
from flightbook.queries.ports import ReadModels

T = TypeVar("T")


Document = dict[str, Any]
Announce = Sequence[tuple[str, str]]


class ReadSide(Protocol):
    """Where a test puts read-model data and reads it back through the ports."""

    def put_document(self, collection: str, document: Mapping[str, Any]) -> None: ...

    def put_hash(
        self, key: str, mapping: Mapping[str, int | str], *, announce: Announce = ()
    ) -> None:
        """A Redis hash, ``key`` without the deployment's prefix (``v1:seats:<id>``).

        Announced as the worker's script does: on the key's channel, and each
        ``(channel without prefix, message)`` of ``announce``.
        """
        ...

    def open(self) -> AbstractAsyncContextManager[ReadModels]: ...

    def run(self, check: Callable[[ReadModels], Awaitable[T]]) -> T:
        """Open the read models in a fresh event loop, run ``check`` on them, close them."""
        ...


class MemoryReadSide:
    def __init__(self) -> None:
        self.store = MemoryReadModels()

    def put_document(self, collection: str, document: Mapping[str, Any]) -> None:
        self.store.put_document(collection, document)

    def put_hash(
        self, key: str, mapping: Mapping[str, int | str], *, announce: Announce = ()
    ) -> None:
        self.store.put_hash(key, mapping, announce=announce)

    @asynccontextmanager
    async def open(self) -> AsyncIterator[ReadModels]:
        yield self.store.read_models()

    def run(self, check: Callable[[ReadModels], Awaitable[T]]) -> T:
        return _run(self, check)


class ServerReadSide:
    """The test's own MongoDB database and Redis prefix (``settings``)."""

    def __init__(self, settings: Settings) -> None:
        assert settings.mongo_url is not None
        assert settings.redis_url is not None
        self.settings = settings
        self.mongo: pymongo.MongoClient[Document] = pymongo.MongoClient(
            settings.mongo_url, tz_aware=True
        )
        self.db = self.mongo[settings.mongo_database]
        self.redis: redis.Redis = redis.Redis.from_url(settings.redis_url)

    def put_document(self, collection: str, document: Mapping[str, Any]) -> None:
        self.db[collection].replace_one({"_id": document["_id"]}, dict(document), upsert=True)

    def put_hash(
        self, key: str, mapping: Mapping[str, int | str], *, announce: Announce = ()
    ) -> None:
        """As the workers write it: through their version-guarded script (which announces
        the write), or field by field for a hash without a ``_v``."""
        prefix = self.settings.redis_prefix
        if "_v" in mapping:
            write = HashWrite(
                prefix + key,
                {k: str(v) for k, v in mapping.items()},
                tuple((prefix + channel, message) for channel, message in announce),
            )
            RedisHashes(self.redis).put_guarded([write])
            return
        for field, value in mapping.items():
            self.redis.hset(self.settings.redis_prefix + key, field, value)

    @asynccontextmanager
    async def open(self) -> AsyncIterator[ReadModels]:
        assert self.settings.redis_url is not None
        mongo: pymongo.AsyncMongoClient[Document] = pymongo.AsyncMongoClient(
            self.settings.mongo_url, tz_aware=True
        )
        cache = redis.asyncio.Redis.from_url(self.settings.redis_url)
        # version_ttl=0: a test that switches versions sees the switch at once
        models = mongo_redis_read_models(
            mongo[self.settings.mongo_database],
            cache,
            redis_prefix=self.settings.redis_prefix,
            version_ttl=0.0,
        )
        try:
            yield models
        finally:
            await models.changes.aclose()
            await cache.aclose()
            await mongo.close()

    def run(self, check: Callable[[ReadModels], Awaitable[T]]) -> T:
        return _run(self, check)

    def close(self) -> None:
        self.mongo.drop_database(self.settings.mongo_database)
        self.mongo.close()
        keys = list(self.redis.scan_iter(match=f"{self.settings.redis_prefix}*"))
        if keys:
            self.redis.delete(*keys)
        self.redis.close()


class Seeds(Protocol):
    """Read models that can be seeded as the workers write them."""

    def put_document(self, collection: str, document: Mapping[str, Any]) -> None: ...

    def put_hash(
        self, key: str, mapping: Mapping[str, int | str], *, announce: Announce = ()
    ) -> None: ...


def write_booking(seeds: Seeds, doc: Mapping[str, Any]) -> None:
    """As the bookings worker does: the document, then its hash (whose write is announced,
    on the booking's channel and its customer's)."""
    seeds.put_document("bookings_v1", doc)
    seeds.put_hash(
        f"v1:booking:{doc['_id']}",
        booking_hash(dict(doc)),
        announce=[(customer_channel(str(doc["customer_id"])), str(doc["_id"]))],
    )


def _run(side: ReadSide, check: Callable[[ReadModels], Awaitable[T]]) -> T:
    async def main() -> T:
        async with side.open() as models:
            return await check(models)

    return asyncio.run(main())
