"""How far each read model is: versions, watermarks, lag, dead letters (``projections status``).

The lag is measured against the event store, not against Kafka: ``head - low_watermark``
positions, and ``now - occurred_at`` of the oldest event not known to be applied (the one
right after the low watermark), 0 when caught up.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING

from flightbook.projections.names import CONTEXTS_OF, READ_MODELS
from flightbook.projections.progress import VersionInfo

if TYPE_CHECKING:
    from flightbook.projections.eventstore import EventStoreReader
    from flightbook.projections.progress import ProgressStore

__all__ = (
    "WORKER_OF",
    "ContextStatus",
    "ReadModelStatus",
    "advance_low_watermark",
    "context_status",
    "format_status",
    "read_model_status",
)

WORKER_OF: dict[tuple[str, str], str] = {
    ("bookings", "booking"): "bookings",
    ("flights", "inventory"): "flights",
    ("analytics", "booking"): "bookings",
    ("analytics", "inventory"): "flights",
    ("redis", "booking"): "bookings",
    ("redis", "inventory"): "flights",
}
"""(read model, context) -> the worker's read model whose checkpoint describes it: each
worker writes its Redis keys and analytics in the same batch as its documents, before the
checkpoint and markers."""


@dataclass(frozen=True)
class ContextStatus:
    read_model: str
    context: str
    low_watermark: int
    max_applied: int
    head: int
    lag_positions: int
    lag_seconds: float
    last_applied_at: dt.datetime | None


@dataclass(frozen=True)
class ReadModelStatus:
    name: str
    active: int
    building: int | None
    contexts: tuple[ContextStatus, ...]
    dead_letters: int


def advance_low_watermark(
    progress: ProgressStore,
    reader: EventStoreReader,
    read_model: str,
    context: str,
    *,
    limit: int = 5000,
) -> int:
    """Raise the low watermark over every position that has an applied marker.

    Positions come from the event store in order; the watermark stops at the first public
    event without a marker (private events are never published, so they count as done).
    Exact whatever Kafka does, with any number of workers.

    Returns:
        The low watermark now.
    """
    low = progress.checkpoint(read_model, context).low_watermark
    positions = reader.positions(context, after=low, limit=limit)
    if not positions:
        return low
    applied = progress.applied_between(read_model, context, low, positions[-1][0])
    reached = low
    for position, public in positions:
        if public and position not in applied:
            break
        reached = position
    if reached > low:
        progress.raise_low_watermark(read_model, context, reached)
    return reached


def context_status(
    progress: ProgressStore,
    reader: EventStoreReader,
    read_model: str,
    context: str,
    *,
    now: dt.datetime | None = None,
) -> ContextStatus:
    checkpoint = progress.checkpoint(WORKER_OF[(read_model, context)], context)
    head = reader.head(context)
    low = checkpoint.low_watermark
    lag_seconds = 0.0
    if head > low:
        oldest = reader.occurred_at_after(context, low)
        if oldest is not None:
            moment = now or dt.datetime.now(dt.UTC)
            lag_seconds = max(0.0, (moment - oldest).total_seconds())
    return ContextStatus(
        read_model=read_model,
        context=context,
        low_watermark=low,
        max_applied=checkpoint.max_applied,
        head=head,
        lag_positions=max(0, head - low),
        lag_seconds=round(lag_seconds, 3),
        last_applied_at=checkpoint.last_applied_at,
    )


def read_model_status(
    progress: ProgressStore, reader: EventStoreReader, *, now: dt.datetime | None = None
) -> list[ReadModelStatus]:
    """The status of every read model."""
    versions = progress.versions()
    letters = {name: progress.count_dead_letters(name) for name in ("bookings", "flights")}
    found = []
    for name in READ_MODELS:
        info = versions.get(name, VersionInfo())
        contexts = tuple(
            context_status(progress, reader, name, context, now=now)
            for context in CONTEXTS_OF[name]
        )
        dead = sum(letters[WORKER_OF[(name, context)]] for context in CONTEXTS_OF[name])
        found.append(ReadModelStatus(name, info.active, info.building, contexts, dead))
    return found


def format_status(statuses: list[ReadModelStatus]) -> str:
    """A table for humans."""
    lines = [
        f"{'read model':<10} {'active':>6} {'building':>8} {'context':<9} {'low wm':>8} "
        f"{'max':>8} {'head':>8} {'lag':>7} {'lag s':>8} {'dead letters':>12}"
    ]
    for status in statuses:
        for index, context in enumerate(status.contexts):
            first = index == 0
            lines.append(
                f"{status.name if first else '':<10} "
                f"{status.active if first else '':>6} "
                f"{(status.building or '-') if first else '':>8} "
                f"{context.context:<9} {context.low_watermark:>8} {context.max_applied:>8} "
                f"{context.head:>8} {context.lag_positions:>7} {context.lag_seconds:>8.1f} "
                f"{status.dead_letters if first else '':>12}"
            )
    return "\n".join(lines)
