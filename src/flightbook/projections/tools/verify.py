"""Proof that the read models agree with the event store (``flightbook audit verify``).

:func:`replay_read_models` rebuilds every read model in memory from the event store alone,
with the same projectors and engine as the workers (in-memory stores, no Kafka);
:func:`compare_read_models` compares that, document by document and field by field, with
the active versions in MongoDB and Redis. The search cache (``search:*``) is a cache with a
TTL and is not compared; the progress collections are not read models.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import msgspec
from psycopg_pool import ConnectionPool

from flightbook.config.settings import require
from flightbook.contracts.readmodels import COLLECTIONS, collection, redis_version_prefix
from flightbook.eventstore.pii import PersonalDataVault, build_vault
from flightbook.projections.engine import Engine, Targets, recompute_analytics, replay
from flightbook.projections.history import EventStoreReader, StoreLookups
from flightbook.projections.kinds import BookingsKind, FlightsKind
from flightbook.projections.memory import MemoryDocuments, MemoryHashes
from flightbook.projections.mongo import MongoProgress
from flightbook.projections.ports import VersionInfo
from flightbook.projections.redis import RedisHashes

if TYPE_CHECKING:
    from collections.abc import Callable

    import redis
    from pymongo.database import Database

    from flightbook.config.settings import Settings
    from flightbook.contracts.envelope import Envelope
    from flightbook.projections.kinds import Kind

__all__ = (
    "Difference",
    "ExpectedReadModels",
    "compare_read_models",
    "expected_from_event_store",
    "replay_read_models",
)

Document = dict[str, Any]
_HASH_KINDS = ("seats:", "booking:")
_PROGRESS_EVERY = 10_000
PAGE_SIZE = 5000
"""Events read from the log per query, documents per MongoDB batch, keys per Redis page."""


@dataclass(frozen=True)
class Difference:
    """One place where a read model is not what the event store says."""

    store: str
    """``mongo``, ``redis`` or ``eventstore`` (an event the projectors cannot apply)."""
    where: str
    """The collection (``bookings_v2``) or the Redis key prefix."""
    key: str
    """The document id or the Redis key (after the version prefix)."""
    field: str
    """The field path (``fares[0].held``); empty when the whole document differs."""
    expected: object
    found: object
    last_event: str = ""
    """The last event that touched it per the event store (aggregate version, position)."""

    def __str__(self) -> str:
        place = f"{self.where} {self.key}" + (f" {self.field}" if self.field else "")
        last = f" (last event: {self.last_event})" if self.last_event else ""
        return f"{self.store}: {place}: expected {self.expected!r}, found {self.found!r}{last}"


@dataclass
class ExpectedReadModels:
    """Every read model as the event store says it must be (version-less names)."""

    documents: dict[str, dict[str, Document]]
    """Collection name (``bookings``) -> id -> document."""
    hashes: dict[str, dict[str, str]]
    """Redis key after the version prefix (``seats:<id>``) -> fields."""
    redis_prefix: str
    heads: dict[str, int] = field(default_factory=dict)
    """The event-log position each context was replayed to."""
    errors: list[Difference] = field(default_factory=list)
    """Events the projectors could not apply (the workers dead-letter them too)."""


def _quiet(_line: str) -> None:
    pass


class _Progress:
    """A line about every 10,000 positions of a replay, and one at its end."""

    def __init__(self, say: Callable[[str], None], context: str, head: int) -> None:
        self._say = say
        self._context = context
        self._head = head
        self._shown = 0

    def __call__(self, position: int, _result: object) -> None:
        if position - self._shown >= _PROGRESS_EVERY or position >= self._head:
            self._shown = position
            self._say(f"replayed {self._context} up to position {position} of {self._head}")


def expected_from_event_store(
    reader: EventStoreReader,
    vault: PersonalDataVault | None,
    *,
    redis_prefix: str,
    say: Callable[[str], None] = _quiet,
    page_size: int = PAGE_SIZE,
) -> ExpectedReadModels:
    """Replay both logs into in-memory stores and return what they hold.

    The logs are read ``page_size`` events per query (keyset pages on the position).
    ``say`` gets a progress line about every 10,000 events.
    """
    documents = MemoryDocuments()
    hashes = MemoryHashes()
    errors: list[Difference] = []
    kinds: list[Kind] = [FlightsKind(), BookingsKind(StoreLookups(reader, vault))]
    heads: dict[str, int] = {}
    targets = Targets(documents=(1,), redis=(1,), markers=False)
    for kind in kinds:
        engine = Engine(
            kind, documents=documents, hashes=hashes, history=reader, progress=None, redis_prefix=""
        )
        head = reader.head(kind.context)

        def on_poison(envelope: Envelope, exc: Exception, context: str = kind.context) -> None:
            errors.append(
                Difference(
                    "eventstore",
                    context,
                    str(envelope.aggregate_id),
                    f"position {envelope.position}",
                    "applicable",
                    f"{type(exc).__name__}: {exc}",
                )
            )

        heads[kind.context] = replay(
            engine,
            reader,
            after=0,
            upto=head,
            targets=lambda: targets,
            on_poison=on_poison,
            batch_size=page_size,
            on_batch=_Progress(say, kind.context, head),
        )
    recompute_analytics(documents, bookings_version=1, flights_version=1, target_version=1)
    names = [name for names in COLLECTIONS.values() for name in names]
    version_prefix = redis_version_prefix("", 1)
    return ExpectedReadModels(
        documents={name: documents.collections.get(collection(name, 1), {}) for name in names},
        hashes={
            key.removeprefix(version_prefix): fields
            for key, fields in hashes.data.items()
            if key.removeprefix(version_prefix).startswith(_HASH_KINDS)
        },
        redis_prefix=redis_prefix,
        heads=heads,
        errors=errors,
    )


def replay_read_models(
    settings: Settings, say: Callable[[str], None] = _quiet
) -> ExpectedReadModels:
    """A fresh in-memory replay of the whole event store (every read model, version-less)."""
    url = require(settings.postgres_url, "postgres_url")
    with ConnectionPool(url, min_size=1, max_size=2, name="verify") as pool:
        reader = EventStoreReader(pool)
        return expected_from_event_store(
            reader, build_vault(settings, pool), redis_prefix=settings.redis_prefix, say=say
        )


def _diff(
    path: str, expected: object, found: object, out: list[tuple[str, object, object]]
) -> None:
    if isinstance(expected, dict) and isinstance(found, dict):
        for name in sorted(set(expected) | set(found), key=str):
            _diff(
                f"{path}.{name}" if path else str(name),
                expected.get(name, _MISSING),
                found.get(name, _MISSING),
                out,
            )
    elif isinstance(expected, list) and isinstance(found, list) and len(expected) == len(found):
        for index, (e, f) in enumerate(zip(expected, found, strict=True)):
            _diff(f"{path}[{index}]", e, f, out)
    elif not _equal(expected, found):
        out.append((path, expected, found))


class _Missing:
    def __repr__(self) -> str:
        return "<missing>"


_MISSING = _Missing()


def _equal(expected: object, found: object) -> bool:
    if isinstance(expected, dt.datetime) and isinstance(found, dt.datetime):
        return expected == found
    if type(expected) is bool or type(found) is bool:
        return type(expected) is type(found) and expected == found
    return expected == found


def _last_event(expected: object) -> str:
    if not isinstance(expected, dict) or "_v" not in expected:
        return ""
    position = expected.get("_pos")
    return f"version {expected['_v']}" + (f" at position {position}" if position else "")


_SORTED = msgspec.json.Encoder(order="sorted")


def _same(want: object, have: object) -> bool:
    """Whether :func:`_diff` would find nothing, without walking the document.

    ``==`` tells every difference :func:`_equal` tells but one, ``True`` against ``1``
    (or ``False`` against ``0``), which JSON tells apart; anything else is walked.
    """
    if want != have:
        return False
    try:
        return _SORTED.encode(want) == _SORTED.encode(have)
    except (TypeError, msgspec.EncodeError):
        return False


def _compare(
    store: str,
    where: str,
    expected: dict[str, Document] | dict[str, dict[str, str]],
    found: dict[str, Document] | dict[str, dict[str, str]],
) -> list[Difference]:
    differences = []
    for key in sorted(set(expected) | set(found)):
        want = expected.get(key)
        have = found.get(key)
        last = _last_event(want)
        if want is None or have is None:
            differences.append(
                Difference(store, where, key, "", want or "<missing>", have or "<missing>", last)
            )
            continue
        if _same(want, have):
            continue
        fields: list[tuple[str, object, object]] = []
        _diff("", want, have, fields)
        differences += [Difference(store, where, key, f, e, h, last) for f, e, h in fields]
    return differences


def compare_read_models(
    expected: ExpectedReadModels,
    mongo: Database[Any],
    redis: redis.Redis,
    say: Callable[[str], None] = _quiet,
    page_size: int = PAGE_SIZE,
) -> list[Difference]:
    """Every difference between ``expected`` and the active read models (empty: they agree).

    Each collection is read in batches of ``page_size`` documents, the Redis hashes in
    pipelines of ``page_size`` keys: a round trip per page, never one per document.
    """
    differences = list(expected.errors)
    versions = MongoProgress(mongo).versions()
    for read_model, names in COLLECTIONS.items():
        version = versions.get(read_model, VersionInfo()).active
        for name in names:
            where = collection(name, version)
            say(f"comparing {where} ({len(expected.documents.get(name, {}))} documents expected)")
            found_docs = mongo[where].find({}, batch_size=page_size)
            stored = {str(doc["_id"]): doc for doc in found_docs}
            differences += _compare("mongo", where, expected.documents.get(name, {}), stored)
    prefix = redis_version_prefix(
        expected.redis_prefix, versions.get("redis", VersionInfo()).active
    )
    say(f"comparing the Redis hashes under {prefix} ({len(expected.hashes)} expected)")
    hashes = RedisHashes(redis)
    found: dict[str, dict[str, str]] = {}
    for kind in _HASH_KINDS:
        for key, fields in hashes.get_many(hashes.keys(prefix + kind), chunk=page_size).items():
            found[key.removeprefix(prefix)] = fields
    differences += _compare("redis", prefix, expected.hashes, found)
    return differences
