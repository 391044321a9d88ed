"""In-memory fakes of the projection ports, behaving as the MongoDB and Redis adapters do.

They back the unit tests and ``flightbook audit verify`` (a fresh replay in memory).
"""

from __future__ import annotations

import copy
import datetime as dt
import decimal
import uuid
from dataclasses import replace
from typing import TYPE_CHECKING

from flightbook.projections.ports import Checkpoint, DeadLetter, GuardedWrite, VersionInfo

if TYPE_CHECKING:
    from collections.abc import Collection, Iterator, Mapping, Sequence

    from flightbook.contracts.readmodels import Index
    from flightbook.projections.ports import BatchProgress, Document, HashWrite

__all__ = ("MemoryDocuments", "MemoryHashes", "MemoryProgress")


_IMMUTABLE = frozenset(
    (str, int, float, bool, type(None), dt.datetime, dt.date, decimal.Decimal, uuid.UUID)
)


def _clone(value: object) -> object:
    """A deep copy of a document's value: what ``copy.deepcopy`` gives, many times cheaper.

    Documents are dicts and lists of immutable scalars, which are shared rather than
    copied; anything else falls back to ``copy.deepcopy`` (ADR 0028).
    """
    kind = type(value)
    if kind is dict:
        return {k: _clone(v) for k, v in value.items()}  # type: ignore[attr-defined]
    if kind is list:
        return [_clone(v) for v in value]  # type: ignore[attr-defined]
    if kind in _IMMUTABLE:
        return value
    return copy.deepcopy(value)


def _copy(doc: Document) -> Document:
    return {k: _clone(v) for k, v in doc.items()}


def _project(doc: Document, fields: Sequence[str]) -> Document:
    if not fields:
        return _copy(doc)
    return {k: _clone(v) for k, v in doc.items() if k == "_id" or k in fields}


class MemoryDocuments:
    """:class:`DocumentStore` in dicts (unit tests, the in-memory replay of ``verify``)."""

    def __init__(self) -> None:
        self.collections: dict[str, dict[str, Document]] = {}
        self.indexes: dict[str, list[Index]] = {}

    def _collection(self, name: str) -> dict[str, Document]:
        return self.collections.setdefault(name, {})

    def get_many(self, collection: str, ids: Collection[str]) -> dict[str, Document]:
        stored = self.collections.get(collection, {})
        return {i: _copy(stored[i]) for i in ids if i in stored}

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
                stored[write.id] = {**_copy(write.document), "_id": write.id}
            else:
                failed.add(write.id)
        return failed

    def put_many(
        self, collection: str, documents: Sequence[Document], key: Sequence[str] = ("_id",)
    ) -> None:
        stored = self._collection(collection)
        for doc in documents:
            current = stored.get(str(doc["_id"]), {})
            stored[str(doc["_id"])] = {**current, **_copy(doc)}  # like $set

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
        self.published: list[tuple[str, str]] = []
        """``(channel, message)`` of each announcement, in order, as Redis would publish them."""

    def put_guarded(self, writes: Sequence[HashWrite]) -> int:
        written = 0
        for write in writes:
            current = self.data.get(write.key)
            if current is not None and int(current.get("_v", "0")) >= int(write.fields["_v"]):
                continue
            self.data[write.key] = {**(current or {}), **write.fields}
            self.published += [(write.key, write.fields["_v"]), *write.announce]
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


class MemoryProgress:
    """:class:`ProgressStore` in dicts."""

    def __init__(self) -> None:
        self._versions: dict[str, VersionInfo] = {}
        self._checkpoints: dict[tuple[str, str], Checkpoint] = {}
        self.markers: dict[tuple[str, str, int], dt.datetime] = {}
        self.letters: dict[str, DeadLetter] = {}
        self.stale_keys: dict[tuple[str, str], int] = {}

    def versions(self) -> dict[str, VersionInfo]:
        return dict(self._versions)

    def start_building(self, read_model: str, version: int) -> None:
        current = self._versions.get(read_model, VersionInfo())
        self._versions[read_model] = replace(current, building=version)

    def stop_building(self, read_model: str) -> None:
        current = self._versions.get(read_model, VersionInfo())
        self._versions[read_model] = replace(current, building=None)

    def switch(self, read_model: str, version: int) -> None:
        self._versions[read_model] = VersionInfo(active=version, building=None)

    def checkpoint(self, read_model: str, context: str) -> Checkpoint:
        return self._checkpoints.get((read_model, context), Checkpoint(read_model, context))

    def _update(self, read_model: str, context: str, **changes: object) -> None:
        self._checkpoints[(read_model, context)] = replace(
            self.checkpoint(read_model, context),
            **changes,  # type: ignore[arg-type]
        )

    def record_batch(self, read_model: str, context: str, batch: BatchProgress) -> None:
        current = self.checkpoint(read_model, context)
        self._update(
            read_model,
            context,
            max_applied=max(current.max_applied, batch.last_position),
            last_applied_at=batch.at,
            events_applied=current.events_applied + batch.applied,
            duplicates_skipped=current.duplicates_skipped + batch.duplicates,
        )

    def raise_low_watermark(self, read_model: str, context: str, position: int) -> None:
        current = self.checkpoint(read_model, context)
        self._update(read_model, context, low_watermark=max(current.low_watermark, position))

    def merge_partitions(self, read_model: str, context: str, offsets: Mapping[str, int]) -> None:
        merged = dict(self.checkpoint(read_model, context).partitions)
        for key, offset in offsets.items():
            merged[key] = max(merged.get(key, 0), offset)
        self._update(read_model, context, partitions=merged)

    def reset_partitions(self, read_model: str, context: str) -> None:
        self._update(read_model, context, partitions={})

    def mark_applied(
        self, read_model: str, context: str, positions: Collection[int], at: dt.datetime
    ) -> None:
        for position in positions:
            self.markers.setdefault((read_model, context, position), at)

    def applied_between(self, read_model: str, context: str, after: int, upto: int) -> set[int]:
        return {
            p
            for (r, c, p) in self.markers
            if r == read_model and c == context and after < p <= upto
        }

    def purge_markers(self, before: dt.datetime) -> int:
        doomed = [k for k, at in self.markers.items() if at < before]
        for key in doomed:
            del self.markers[key]
        return len(doomed)

    def add_dead_letter(self, letter: DeadLetter) -> None:
        current = self.letters.get(letter.id)
        if current is None:
            self.letters[letter.id] = letter
        else:
            self.letters[letter.id] = replace(
                current, error=letter.error, replayed_at=None, attempts=current.attempts + 1
            )

    def dead_letters(
        self, read_model: str | None = None, *, pending: bool = True
    ) -> list[DeadLetter]:
        found = [
            letter
            for letter in self.letters.values()
            if (read_model is None or letter.read_model == read_model)
            and (not pending or letter.replayed_at is None)
        ]
        return sorted(found, key=lambda letter: (letter.failed_at, letter.id))

    def count_dead_letters(self, read_model: str) -> int:
        return len(self.dead_letters(read_model))

    def mark_replayed(self, letter_id: str, at: dt.datetime) -> None:
        self.letters[letter_id] = replace(self.letters[letter_id], replayed_at=at)

    def mark_failed_again(self, letter_id: str, error: str, at: dt.datetime) -> None:
        current = self.letters[letter_id]
        self.letters[letter_id] = replace(current, error=error, attempts=current.attempts + 1)

    def mark_stale(self, read_model: str, keys: Collection[str]) -> None:
        for key in keys:
            self.stale_keys[(read_model, key)] = self.stale_keys.get((read_model, key), 0) + 1

    def stale(self, read_model: str) -> dict[str, int]:
        return {k: rev for (r, k), rev in self.stale_keys.items() if r == read_model}

    def clear_stale(self, read_model: str, seen: Mapping[str, int]) -> None:
        for key, revision in seen.items():
            if self.stale_keys.get((read_model, key)) == revision:
                del self.stale_keys[(read_model, key)]
