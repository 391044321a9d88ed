"""The ports the projection engine writes through (MongoDB, Redis, the workers' progress).

:class:`DocumentStore` is a MongoDB database of versioned collections, :class:`HashStore`
the Redis read model, :class:`ProgressStore` what the workers remember besides the read
models (versions, checkpoints, markers, dead letters, stale analytics; see
:mod:`flightbook.contracts.readmodels` for the names). The in-memory fakes are in
:mod:`flightbook.projections.memory`, the adapters in :mod:`.mongo` and :mod:`.redis`; one
contract suite runs on both (``tests/integration/projections/test_store_contract.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from flightbook.contracts.readmodels import DEFAULT_VERSION

if TYPE_CHECKING:
    import datetime as dt
    from collections.abc import Collection, Iterator, Mapping, Sequence

    from flightbook.contracts.readmodels import Index

__all__ = (
    "BatchProgress",
    "Checkpoint",
    "DeadLetter",
    "Document",
    "DocumentStore",
    "GuardedWrite",
    "HashStore",
    "HashWrite",
    "ProgressStore",
    "VersionInfo",
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
    announce: tuple[tuple[str, str], ...] = ()
    """``(channel, message)`` pairs published, besides the key's own channel, if it is written."""


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


@dataclass(frozen=True)
class VersionInfo:
    """``read_model_versions`` of one read model."""

    active: int = DEFAULT_VERSION
    building: int | None = None


@dataclass(frozen=True)
class Checkpoint:
    """``projection_checkpoints`` of one (read model, context)."""

    read_model: str
    context: str
    low_watermark: int = 0
    max_applied: int = 0
    last_applied_at: dt.datetime | None = None
    partitions: dict[str, int] = field(default_factory=dict)
    """``"<topic>:<partition>"`` -> the next offset to consume, as last committed."""
    events_applied: int = 0
    duplicates_skipped: int = 0


@dataclass(frozen=True)
class BatchProgress:
    """What one applied batch adds to a checkpoint."""

    last_position: int
    applied: int
    """Aggregate versions applied."""
    duplicates: int
    """Messages skipped as already applied."""
    at: dt.datetime


@dataclass(frozen=True)
class DeadLetter:
    """A message that could not be decoded or applied."""

    id: str
    read_model: str
    topic: str
    partition: int
    offset: int
    key: str | None
    raw: str
    error: str
    failed_at: dt.datetime
    replayed_at: dt.datetime | None = None
    attempts: int = 1


class ProgressStore(Protocol):
    """Versions, checkpoints, markers and dead letters."""

    def versions(self) -> dict[str, VersionInfo]:
        """Every read model's versions (absent ones are active 1, nothing building)."""
        ...

    def start_building(self, read_model: str, version: int) -> None: ...

    def stop_building(self, read_model: str) -> None: ...

    def switch(self, read_model: str, version: int) -> None:
        """Make ``version`` active and clear ``building``."""
        ...

    def checkpoint(self, read_model: str, context: str) -> Checkpoint: ...

    def record_batch(self, read_model: str, context: str, batch: BatchProgress) -> None:
        """Raise ``max_applied``, count what was applied and skipped, set ``last_applied_at``."""
        ...

    def raise_low_watermark(self, read_model: str, context: str, position: int) -> None:
        """``low_watermark = max(low_watermark, position)``."""
        ...

    def merge_partitions(self, read_model: str, context: str, offsets: Mapping[str, int]) -> None:
        """Keep, per partition, the higher of the stored and the given offset."""
        ...

    def reset_partitions(self, read_model: str, context: str) -> None:
        """Forget the stored offsets (the broker lost them)."""
        ...

    def mark_applied(
        self, read_model: str, context: str, positions: Collection[int], at: dt.datetime
    ) -> None:
        """Write the ``applied_events`` markers of ``positions`` (existing ones stay)."""
        ...

    def applied_between(self, read_model: str, context: str, after: int, upto: int) -> set[int]:
        """Positions ``after < p <= upto`` that have a marker."""
        ...

    def purge_markers(self, before: dt.datetime) -> int:
        """Delete markers written before ``before``; return how many."""
        ...

    def add_dead_letter(self, letter: DeadLetter) -> None:
        """Store a dead letter; the same id again (redelivered) counts one more attempt."""
        ...

    def dead_letters(
        self, read_model: str | None = None, *, pending: bool = True
    ) -> list[DeadLetter]:
        """Dead letters, oldest first (``pending``: only those not replayed yet)."""
        ...

    def count_dead_letters(self, read_model: str) -> int:
        """Dead letters of ``read_model`` not replayed yet."""
        ...

    def mark_replayed(self, letter_id: str, at: dt.datetime) -> None: ...

    def mark_failed_again(self, letter_id: str, error: str, at: dt.datetime) -> None: ...

    def mark_stale(self, read_model: str, keys: Collection[str]) -> None:
        """Remember that the analytics of ``keys`` must be recomputed (raises their revision)."""
        ...

    def stale(self, read_model: str) -> dict[str, int]:
        """The keys still to recompute, with the revision each was last marked at."""
        ...

    def clear_stale(self, read_model: str, seen: Mapping[str, int]) -> None:
        """Forget each key whose revision is still the one in ``seen`` (recomputed)."""
        ...
