"""The ports the projection engine writes through, and in-memory fakes that behave the same.

:class:`DocumentStore` is a MongoDB database of versioned collections, :class:`HashStore`
the Redis read model. The fakes back the unit tests and ``flightbook audit verify`` (a
fresh replay in memory); one contract suite runs on the fakes and on the MongoDB and Redis
adapters (``tests/*/projections/test_store_contract.py``, STYLE G12).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from collections.abc import Collection, Iterator, Sequence

__all__ = (
    "ANALYTICS_KEYS",
    "INDEXES",
    "DocumentStore",
    "GuardedWrite",
    "HashStore",
    "HashWrite",
    "Index",
    "MemoryDocuments",
    "MemoryHashes",
)

Document = dict[str, Any]


@dataclass(frozen=True)
class GuardedWrite:
    """A whole document to write only if the stored one is still at ``expected_version``."""

    id: str
    expected_version: int | None
    """The ``_v`` the stored document must have; None: there must be no document yet."""
    document: Document


@dataclass(frozen=True)
class HashWrite:
    """A whole hash to write only if the stored ``_v`` is lower than ``fields["_v"]``."""

    key: str
    fields: dict[str, str]


@dataclass(frozen=True)
class Index:
    """A secondary index: ``(field, 1 | -1)`` pairs."""

    keys: tuple[tuple[str, int], ...]
    unique: bool = False


INDEXES: dict[str, tuple[Index, ...]] = {
    "bookings": (
        # (customer_id, created_at desc) serves "my bookings, newest first"; nx-27017 rejects
        # every insert into a collection with an index on ``_id`` besides its own.
        Index((("customer_id", 1), ("created_at", -1))),
        Index((("flight_id", 1),)),
        Index((("date", 1),)),
    ),
    "flights": (
        Index((("origin", 1), ("destination", 1), ("date", 1), ("departure", 1))),
        Index((("date", 1),)),
    ),
    "sales_daily": (Index((("date", 1), ("origin", 1), ("destination", 1))),),
    "load_factor": (Index((("flight_id", 1),)), Index((("date", 1),))),
    "funnel_daily": (Index((("date", 1),)),),
}
"""Indexes of each versioned collection (by its name without ``_v<N>``)."""

ANALYTICS_KEYS: dict[str, tuple[str, ...]] = {
    "sales_daily": ("date", "origin", "destination"),
    "funnel_daily": ("date",),
    "load_factor": ("_id",),
}
"""What an analytics document is found by when it is written: its ``_id`` (the only field
nx-27017 finds through an index), or, where the ``_id`` starts like a date (which nx-27017
cannot find by ``_id``), the fields the ``_id`` is made of."""


class DocumentStore(Protocol):
    """Versioned read-model collections (MongoDB)."""

    def get_many(self, collection: str, ids: Collection[str]) -> dict[str, Document]:
        """The stored documents among ``ids``, by id."""
        ...

    def write_guarded(self, collection: str, writes: Sequence[GuardedWrite]) -> set[str]:
        """Write each document whose guard holds; return the ids whose guard did not."""
        ...

    def put_many(
        self, collection: str, documents: Sequence[Document], key: Sequence[str] = ("_id",)
    ) -> None:
        """Write whole documents (insert or overwrite), unguarded.

        ``key``: the fields that identify a document (its ``_id`` is derived from them).
        """
        ...

    def find_in(
        self, collection: str, field: str, values: Collection[object], fields: Sequence[str] = ()
    ) -> list[Document]:
        """Documents whose ``field`` is one of ``values`` (only ``fields`` and ``_id`` if given)."""
        ...

    def scan(self, collection: str, fields: Sequence[str] = ()) -> Iterator[Document]:
        """Every document of the collection."""
        ...

    def drop(self, collection: str) -> None: ...

    def ensure_indexes(self, collection: str, indexes: Sequence[Index]) -> None:
        """Create the indexes if missing (idempotent)."""
        ...


class HashStore(Protocol):
    """Redis hashes guarded by their ``_v`` field, and plain keys to delete."""

    def put_guarded(self, writes: Sequence[HashWrite]) -> int:
        """Write each hash whose stored ``_v`` is lower (or absent); return how many were."""
        ...

    def get(self, key: str) -> dict[str, str] | None: ...

    def get_many(self, keys: Sequence[str]) -> dict[str, dict[str, str]]:
        """The hashes among ``keys`` that exist, by key (one round trip per thousand)."""
        ...

    def delete(self, keys: Sequence[str]) -> None: ...

    def keys(self, prefix: str) -> list[str]:
        """Every key starting with ``prefix``."""
        ...

    def delete_prefix(self, prefix: str) -> int:
        """Delete every key starting with ``prefix``; return how many."""
        ...


def _project(doc: Document, fields: Sequence[str]) -> Document:
    if not fields:
        return copy.deepcopy(doc)
    return {k: copy.deepcopy(v) for k, v in doc.items() if k == "_id" or k in fields}


class MemoryDocuments:
    """:class:`DocumentStore` in dicts (unit tests, the in-memory replay of ``verify``)."""

    def __init__(self) -> None:
        self.collections: dict[str, dict[str, Document]] = {}
        self.indexes: dict[str, list[Index]] = {}

    def _collection(self, name: str) -> dict[str, Document]:
        return self.collections.setdefault(name, {})

    def get_many(self, collection: str, ids: Collection[str]) -> dict[str, Document]:
        stored = self.collections.get(collection, {})
        return {i: copy.deepcopy(stored[i]) for i in ids if i in stored}

    def write_guarded(self, collection: str, writes: Sequence[GuardedWrite]) -> set[str]:
        stored = self._collection(collection)
        failed: set[str] = set()
        for write in writes:
            current = stored.get(write.id)
            if write.expected_version is None:
                ok = current is None
            else:
                ok = current is not None and current.get("_v") == write.expected_version
            if ok:
                stored[write.id] = {**copy.deepcopy(write.document), "_id": write.id}
            else:
                failed.add(write.id)
        return failed

    def put_many(
        self, collection: str, documents: Sequence[Document], key: Sequence[str] = ("_id",)
    ) -> None:
        stored = self._collection(collection)
        for doc in documents:
            current = stored.get(str(doc["_id"]), {})
            stored[str(doc["_id"])] = {**current, **copy.deepcopy(doc)}  # like $set

    def find_in(
        self, collection: str, field: str, values: Collection[object], fields: Sequence[str] = ()
    ) -> list[Document]:
        wanted = set(values)
        return [
            _project(doc, fields)
            for doc in self.collections.get(collection, {}).values()
            if doc.get(field) in wanted
        ]

    def scan(self, collection: str, fields: Sequence[str] = ()) -> Iterator[Document]:
        for doc in list(self.collections.get(collection, {}).values()):
            yield _project(doc, fields)

    def drop(self, collection: str) -> None:
        self.collections.pop(collection, None)
        self.indexes.pop(collection, None)

    def ensure_indexes(self, collection: str, indexes: Sequence[Index]) -> None:
        known = self.indexes.setdefault(collection, [])
        known.extend(index for index in indexes if index not in known)


class MemoryHashes:
    """:class:`HashStore` in a dict."""

    def __init__(self) -> None:
        self.data: dict[str, dict[str, str]] = {}

    def put_guarded(self, writes: Sequence[HashWrite]) -> int:
        written = 0
        for write in writes:
            current = self.data.get(write.key)
            if current is not None and int(current.get("_v", "0")) >= int(write.fields["_v"]):
                continue
            self.data[write.key] = {**(current or {}), **write.fields}
            written += 1
        return written

    def get(self, key: str) -> dict[str, str] | None:
        found = self.data.get(key)
        return dict(found) if found is not None else None

    def get_many(self, keys: Sequence[str]) -> dict[str, dict[str, str]]:
        return {key: dict(self.data[key]) for key in keys if key in self.data}

    def delete(self, keys: Sequence[str]) -> None:
        for key in keys:
            self.data.pop(key, None)

    def keys(self, prefix: str) -> list[str]:
        return sorted(k for k in self.data if k.startswith(prefix))

    def delete_prefix(self, prefix: str) -> int:
        doomed = self.keys(prefix)
        self.delete(doomed)
        return len(doomed)
