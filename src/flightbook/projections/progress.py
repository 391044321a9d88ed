"""What the projection workers remember besides the read models themselves (MongoDB, unversioned).

- ``read_model_versions``: the active version of each read model, and the one being built.
- ``projection_checkpoints``: per read model and context, the low watermark (every event
  at or below it is applied), the highest position applied, and the Kafka offsets stored.
- ``applied_events``: one marker per applied position, for read-your-writes (purged after 1 h).
- ``dead_letters``: messages that could not be applied, with the error, replayable.
- ``analytics_stale``: the analytics keys (days) whose documents changed and whose
  analytics are still to be recomputed (ADR 0014), each with a revision so that a key
  marked again while it is being recomputed stays marked.

:class:`ProgressStore` is the port; :class:`MemoryProgress` the fake and
:class:`flightbook.projections.mongo.MongoProgress` the adapter.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Protocol

from flightbook.projections.names import DEFAULT_VERSION

if TYPE_CHECKING:
    import datetime as dt
    from collections.abc import Collection, Mapping

__all__ = ("Checkpoint", "DeadLetter", "MemoryProgress", "ProgressStore", "VersionInfo")


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

    def record_batch(
        self,
        read_model: str,
        context: str,
        *,
        last_position: int,
        applied: int,
        duplicates: int,
        at: dt.datetime,
    ) -> None:
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

    def record_batch(
        self,
        read_model: str,
        context: str,
        *,
        last_position: int,
        applied: int,
        duplicates: int,
        at: dt.datetime,
    ) -> None:
        current = self.checkpoint(read_model, context)
        self._update(
            read_model,
            context,
            max_applied=max(current.max_applied, last_position),
            last_applied_at=at,
            events_applied=current.events_applied + applied,
            duplicates_skipped=current.duplicates_skipped + duplicates,
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
