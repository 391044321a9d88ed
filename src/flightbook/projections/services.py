"""The clients and adapters the projection tools need, opened from settings and closed together.

The workers (``flightbook.bootstrap.build_projection_worker``), ``flightbook projections
...`` and ``flightbook audit verify`` all use :func:`open_services`; nothing connects at
import time (STYLE G5).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pymongo
import redis
from psycopg_pool import ConnectionPool

from flightbook.config.settings import require
from flightbook.eventstore.pii import PersonalDataVault, build_vault
from flightbook.projections.engine import Engine
from flightbook.projections.history import EventStoreReader, StoreLookups
from flightbook.projections.kinds import kind_for
from flightbook.projections.mongo import MongoDocuments, MongoProgress
from flightbook.projections.redis import RedisHashes

if TYPE_CHECKING:
    from pymongo.database import Database

    from flightbook.config.settings import Settings
    from flightbook.projections.kinds import Kind

__all__ = ("ProjectionServices", "open_services")


@dataclass
class ProjectionServices:
    """Everything a projection worker or tool talks to."""

    settings: Settings
    pool: ConnectionPool
    mongo: pymongo.MongoClient[dict[str, Any]]
    redis: redis.Redis
    database: Database[dict[str, Any]] = field(init=False)
    reader: EventStoreReader = field(init=False)
    vault: PersonalDataVault = field(init=False)
    documents: MongoDocuments = field(init=False)
    hashes: RedisHashes = field(init=False)
    progress: MongoProgress = field(init=False)
    _lookups: StoreLookups | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        # The adapters follow from the three clients.
        self.database = self.mongo[self.settings.mongo_database]
        self.reader = EventStoreReader(self.pool)
        self.vault = build_vault(self.settings, self.pool)
        self.documents = MongoDocuments(self.database)
        self.hashes = RedisHashes(self.redis)
        self.progress = MongoProgress(self.database)

    def kind(self, worker: str) -> Kind:
        """The worker kind (``bookings`` or ``flights``)."""
        if self._lookups is None:
            self._lookups = StoreLookups(self.reader, self.vault)
        return kind_for(worker, self._lookups)

    def engine(self, worker: str) -> Engine:
        """An engine writing MongoDB and Redis for ``worker``."""
        return Engine(
            self.kind(worker),
            documents=self.documents,
            hashes=self.hashes,
            history=self.reader,
            progress=self.progress,
            redis_prefix=self.settings.redis_prefix,
        )

    def close(self) -> None:
        try:
            self.redis.close()
            self.mongo.close()
        finally:
            self.pool.close()

    def __enter__(self) -> ProjectionServices:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def open_services(
    settings: Settings, *, pool_size: int = 4, name: str = "projections"
) -> ProjectionServices:
    """Open PostgreSQL, MongoDB and Redis clients for the projections."""
    url = require(settings.postgres_url, "postgres_url")
    pool = ConnectionPool(url, min_size=1, max_size=pool_size, open=True, name=name)
    try:
        client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(
            require(settings.mongo_url, "mongo_url"), serverSelectionTimeoutMS=5000, tz_aware=True
        )
        cache = redis.Redis.from_url(
            require(settings.redis_url, "redis_url"), socket_timeout=10, socket_connect_timeout=5
        )
    except Exception:
        pool.close()
        raise
    return ProjectionServices(settings, pool, client, cache)
