"""MongoDB adapters of the projection ports: versioned documents and the workers' progress.

Kept to what the local stand-in (nx-27017) and MongoDB both do (STACK.md): whole documents
and whole arrays (never ``$push``), ``bulk_write`` for every batch, inserts that fail with
``DuplicateKeyError`` for "already there", ``find``/``$in`` rather than aggregation
operators. A replace guarded by ``{_id, _v}`` does not say *which* one missed inside a
bulk, so the ids are read back when fewer matched than were sent.

Two more nx-27017 limits found here (ADR 0012): ``$set`` (and ``$max``) of a top-level
date on an *existing* document stores it as a string, so times that change in place are
written with ``$currentDate`` (server time) or inside whole documents (insert, replace);
and an index whose keys include ``_id`` makes every insert fail ("JSON path error").
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pymongo import DeleteOne, InsertOne, ReplaceOne, UpdateOne
from pymongo.errors import BulkWriteError, DuplicateKeyError

from flightbook.contracts.readmodels import (
    CHECKPOINTS,
    DEAD_LETTERS,
    MARKERS,
    STALE,
    VERSIONS,
    checkpoint_id,
    marker_id,
)
from flightbook.projections.ports import Checkpoint, DeadLetter, VersionInfo

if TYPE_CHECKING:
    import datetime as dt
    from collections.abc import Collection, Iterator, Mapping, Sequence

    from pymongo.database import Database

    from flightbook.contracts.readmodels import Index
    from flightbook.projections.ports import BatchProgress, GuardedWrite

__all__ = ("MongoDocuments", "MongoProgress")

Document = dict[str, Any]
_DUPLICATE_KEY = 11000
_CAS_ATTEMPTS = 20
_MARKER_CHUNK = 1000


def _projection(fields: Sequence[str]) -> dict[str, int] | None:
    return dict.fromkeys(fields, 1) if fields else None


class MongoDocuments:
    """The versioned read-model collections of one database.

    Args:
        database: The read models' database. Owned by the caller.
    """

    def __init__(self, database: Database[Document]) -> None:
        self._db = database
        self._indexed: set[str] = set()

    def get_many(self, collection: str, ids: Collection[str]) -> dict[str, Document]:
        if not ids:
            return {}
        return {
            str(doc["_id"]): doc for doc in self._db[collection].find({"_id": {"$in": list(ids)}})
        }

    def write_guarded(self, collection: str, writes: Sequence[GuardedWrite]) -> set[str]:
        if not writes:
            return set()
        operations: list[InsertOne[Document] | ReplaceOne[Document]] = []
        replaced: list[GuardedWrite] = []
        for write in writes:
            document = {**write.document, "_id": write.id}
            if write.expected_version is None:
                operations.append(InsertOne(document))
            else:
                operations.append(
                    ReplaceOne({"_id": write.id, "_v": write.expected_version}, document)
                )
                replaced.append(write)
        failed: set[str] = set()
        try:
            matched = self._db[collection].bulk_write(operations, ordered=False).matched_count
        except BulkWriteError as exc:
            for error in exc.details.get("writeErrors", []):
                if error.get("code") != _DUPLICATE_KEY:
                    raise
                failed.add(writes[int(error["index"])].id)
            matched = int(exc.details.get("nMatched", 0))
        if matched < len(replaced):
            stored = {
                str(doc["_id"]): doc.get("_v")
                for doc in self._db[collection].find(
                    {"_id": {"$in": [w.id for w in replaced]}}, {"_v": 1}
                )
            }
            failed |= {w.id for w in replaced if stored.get(w.id) != w.document["_v"]}
        return failed

    def put_many(
        self, collection: str, documents: Sequence[Document], key: Sequence[str] = ("_id",)
    ) -> None:
        if not documents:
            return
        operations = [self._upsert(doc, key) for doc in documents]
        try:
            self._db[collection].bulk_write(operations, ordered=False)
        except BulkWriteError as exc:
            # Two writers upserting the same new document: one insert loses on the _id;
            # the second attempt finds the document and overwrites it.
            errors = exc.details.get("writeErrors", [])
            if any(error.get("code") != _DUPLICATE_KEY for error in errors):
                raise
            again = [operations[int(error["index"])] for error in errors]
            self._db[collection].bulk_write(again, ordered=False)

    @staticmethod
    def _upsert(doc: Document, key: Sequence[str]) -> UpdateOne:
        # The filter is on _id where it can be: nx-27017 uses an index for _id only (any
        # other field is a scan of the whole collection, so upserting N load_factor rows by
        # (flight_id, fare) cost O(N²)). Where the _id starts like a date
        # ("2026-11-24:LHR-JFK") nx-27017 cannot find it by _id, so the key is its fields.
        fields = {k: v for k, v in doc.items() if k != "_id" and k not in key}
        update: Document = {"$set": fields}
        if "_id" not in key:
            update["$setOnInsert"] = {"_id": doc["_id"]}
        return UpdateOne({k: doc[k] for k in key}, update, upsert=True)

    def find_in(
        self, collection: str, field: str, values: Collection[object], fields: Sequence[str] = ()
    ) -> list[Document]:
        if not values:
            return []
        return list(self._db[collection].find({field: {"$in": list(values)}}, _projection(fields)))

    def scan(self, collection: str, fields: Sequence[str] = ()) -> Iterator[Document]:
        yield from self._db[collection].find({}, _projection(fields), batch_size=1000)

    def drop(self, collection: str) -> None:
        self._db.drop_collection(collection)
        self._indexed.discard(collection)

    def ensure_indexes(self, collection: str, indexes: Sequence[Index]) -> None:
        if collection in self._indexed:
            return
        for index in indexes:
            self._db[collection].create_index(list(index.keys), unique=index.unique)
        self._indexed.add(collection)


def _checkpoint(read_model: str, context: str, doc: Mapping[str, Any] | None) -> Checkpoint:
    if doc is None:
        return Checkpoint(read_model, context)
    return Checkpoint(
        read_model=read_model,
        context=context,
        low_watermark=int(doc.get("low_watermark") or 0),
        max_applied=int(doc.get("max_applied") or 0),
        last_applied_at=doc.get("last_applied_at"),
        partitions={str(k): int(v) for k, v in (doc.get("partitions") or {}).items()},
        events_applied=int(doc.get("events_applied") or 0),
        duplicates_skipped=int(doc.get("duplicates_skipped") or 0),
    )


def _letter(doc: Mapping[str, Any]) -> DeadLetter:
    return DeadLetter(
        id=str(doc["_id"]),
        read_model=str(doc["read_model"]),
        topic=str(doc["topic"]),
        partition=int(doc["partition"]),
        offset=int(doc["offset"]),
        key=doc.get("key"),
        raw=str(doc["raw"]),
        error=str(doc["error"]),
        failed_at=doc["failed_at"],
        replayed_at=doc.get("replayed_at"),
        attempts=int(doc.get("attempts") or 1),
    )


class MongoProgress:
    """Versions, checkpoints, markers and dead letters in one database.

    Args:
        database: The read models' database. Owned by the caller.
    """

    def __init__(self, database: Database[Document]) -> None:
        self._db = database
        self._versions = database[VERSIONS]
        self._checkpoints = database[CHECKPOINTS]
        self._markers = database[MARKERS]
        self._letters = database[DEAD_LETTERS]
        self._stale = database[STALE]

    def ensure_indexes(self) -> None:
        """The indexes of the unversioned collections (idempotent)."""
        # Markers are found by _id only (applied_between) and purged by ``at``: an index on
        # (rm, pos) cost every marker insert its upkeep and served no query (ADR 0027).
        self._markers.create_index([("at", 1)])
        self._letters.create_index([("read_model", 1), ("failed_at", 1)])
        self._stale.create_index([("rm", 1)])

    # -- versions ---------------------------------------------------------------------------

    def versions(self) -> dict[str, VersionInfo]:
        found: dict[str, VersionInfo] = {}
        for doc in self._versions.find({}):
            active = doc.get("active")
            building = doc.get("building")
            found[str(doc["_id"])] = VersionInfo(
                active=int(active) if isinstance(active, int) and active > 0 else 1,
                building=int(building) if isinstance(building, int) else None,
            )
        return found

    def _set_version(self, read_model: str, fields: dict[str, object]) -> None:
        self._versions.update_one(
            {"_id": read_model},
            {"$set": fields, "$currentDate": {"updated_at": True}},
            upsert=True,
        )

    def start_building(self, read_model: str, version: int) -> None:
        active = self.versions().get(read_model, VersionInfo()).active
        self._set_version(read_model, {"active": active, "building": version})

    def stop_building(self, read_model: str) -> None:
        active = self.versions().get(read_model, VersionInfo()).active
        self._set_version(read_model, {"active": active, "building": None})

    def switch(self, read_model: str, version: int) -> None:
        self._set_version(read_model, {"active": version, "building": None})

    # -- checkpoints ------------------------------------------------------------------------

    def checkpoint(self, read_model: str, context: str) -> Checkpoint:
        doc = self._checkpoints.find_one({"_id": checkpoint_id(read_model, context)})
        return _checkpoint(read_model, context, doc)

    def record_batch(self, read_model: str, context: str, batch: BatchProgress) -> None:
        self._checkpoints.update_one(
            {"_id": checkpoint_id(read_model, context)},
            {
                "$max": {"max_applied": batch.last_position},
                "$inc": {"events_applied": batch.applied, "duplicates_skipped": batch.duplicates},
                "$set": {"read_model": read_model, "context": context},
                "$currentDate": {"last_applied_at": True},
            },
            upsert=True,
        )

    def raise_low_watermark(self, read_model: str, context: str, position: int) -> None:
        self._checkpoints.update_one(
            {"_id": checkpoint_id(read_model, context)},
            {"$max": {"low_watermark": position}},
            upsert=True,
        )

    def merge_partitions(self, read_model: str, context: str, offsets: Mapping[str, int]) -> None:
        # Topic names contain dots, so the offsets cannot be $max-ed one by one: read,
        # merge, and write the whole map back only if nobody changed it meanwhile.
        self._swap_partitions(read_model, context, offsets, reset=False)

    def reset_partitions(self, read_model: str, context: str) -> None:
        self._swap_partitions(read_model, context, {}, reset=True)

    def _swap_partitions(
        self, read_model: str, context: str, offsets: Mapping[str, int], *, reset: bool
    ) -> None:
        key = checkpoint_id(read_model, context)
        for _ in range(_CAS_ATTEMPTS):
            doc = self._checkpoints.find_one({"_id": key}, {"partitions": 1, "_rev": 1})
            if doc is None:
                try:
                    self._checkpoints.insert_one(
                        {"_id": key, "partitions": dict(offsets), "_rev": 1}
                    )
                except DuplicateKeyError:
                    continue
                return
            merged: dict[str, int] = {} if reset else dict(doc.get("partitions") or {})
            for partition, offset in offsets.items():
                merged[partition] = max(int(merged.get(partition, 0)), offset)
            revision = int(doc.get("_rev") or 0)
            done = self._checkpoints.update_one(
                {"_id": key, "_rev": revision} if revision else {"_id": key, "_rev": None},
                {"$set": {"partitions": merged, "_rev": revision + 1}},
            )
            if done.matched_count:
                return
        raise RuntimeError(f"projection_checkpoints {key}: the offsets kept changing")

    # -- markers ----------------------------------------------------------------------------

    def mark_applied(
        self, read_model: str, context: str, positions: Collection[int], at: dt.datetime
    ) -> None:
        if not positions:
            return
        scope = checkpoint_id(read_model, context)
        markers = [
            {"_id": marker_id(read_model, context, p), "at": at, "rm": scope, "pos": p}
            for p in sorted(set(positions))
        ]
        try:
            self._markers.insert_many(markers, ordered=False)
        except BulkWriteError as exc:
            if any(e.get("code") != _DUPLICATE_KEY for e in exc.details.get("writeErrors", [])):
                raise

    def applied_between(self, read_model: str, context: str, after: int, upto: int) -> set[int]:
        # By _id, not by (rm, pos): nx-27017 answers a query on any other field by reading
        # the whole collection (its equality also matches arrays, so no index is used), and
        # this runs every few seconds against an hour of markers.
        found: set[int] = set()
        for start in range(after + 1, upto + 1, _MARKER_CHUNK):
            ids = [
                marker_id(read_model, context, p)
                for p in range(start, min(start + _MARKER_CHUNK, upto + 1))
            ]
            found.update(
                int(doc["pos"]) for doc in self._markers.find({"_id": {"$in": ids}}, {"pos": 1})
            )
        return found

    def purge_markers(self, before: dt.datetime) -> int:
        return int(self._markers.delete_many({"at": {"$lt": before}}).deleted_count)

    # -- dead letters -----------------------------------------------------------------------

    def add_dead_letter(self, letter: DeadLetter) -> None:
        self._letters.update_one(
            {"_id": letter.id},
            {
                "$setOnInsert": {
                    "read_model": letter.read_model,
                    "topic": letter.topic,
                    "partition": letter.partition,
                    "offset": letter.offset,
                    "key": letter.key,
                    "raw": letter.raw,
                    "failed_at": letter.failed_at,
                },
                "$set": {"error": letter.error, "replayed_at": None},
                "$inc": {"attempts": 1},
            },
            upsert=True,
        )

    def dead_letters(
        self, read_model: str | None = None, *, pending: bool = True
    ) -> list[DeadLetter]:
        query: Document = {}
        if read_model is not None:
            query["read_model"] = read_model
        letters = [_letter(doc) for doc in self._letters.find(query)]
        if pending:
            letters = [letter for letter in letters if letter.replayed_at is None]
        return sorted(letters, key=lambda letter: (letter.failed_at, letter.id))

    def count_dead_letters(self, read_model: str) -> int:
        return len(self.dead_letters(read_model))

    def mark_replayed(self, letter_id: str, at: dt.datetime) -> None:
        # ``at`` is the server's time here: see the module docstring about dates.
        self._letters.update_one({"_id": letter_id}, {"$currentDate": {"replayed_at": True}})

    def mark_failed_again(self, letter_id: str, error: str, at: dt.datetime) -> None:
        self._letters.update_one(
            {"_id": letter_id},
            {
                "$set": {"error": error},
                "$currentDate": {"last_failed_at": True},
                "$inc": {"attempts": 1},
            },
        )

    # -- stale analytics --------------------------------------------------------------------

    def mark_stale(self, read_model: str, keys: Collection[str]) -> None:
        if not keys:
            return
        self._stale.bulk_write(
            [
                UpdateOne(
                    {"_id": f"{read_model}:{key}"},
                    {"$set": {"rm": read_model, "key": key}, "$inc": {"rev": 1}},
                    upsert=True,
                )
                for key in sorted(set(keys))
            ],
            ordered=False,
        )

    def stale(self, read_model: str) -> dict[str, int]:
        return {
            str(doc["key"]): int(doc["rev"])
            for doc in self._stale.find({"rm": read_model}, {"key": 1, "rev": 1})
        }

    def clear_stale(self, read_model: str, seen: Mapping[str, int]) -> None:
        if not seen:
            return
        self._stale.bulk_write(
            [
                DeleteOne({"_id": f"{read_model}:{key}", "rev": revision})
                for key, revision in sorted(seen.items())
            ],
            ordered=False,
        )
