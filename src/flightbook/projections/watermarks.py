"""How far a read model is: its low watermark, raised from the applied markers, and its lag.

The lag is measured against the event store, not against Kafka: ``head - low_watermark``
positions, and ``now - occurred_at`` of the oldest event not known to be applied (the one
right after the low watermark), 0 when caught up.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING

from flightbook.contracts.readmodels import worker_of

if TYPE_CHECKING:
    from flightbook.projections.history import EventStoreReader
    from flightbook.projections.ports import ProgressStore

__all__ = ("ContextStatus", "advance_low_watermark", "context_status")


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
    checkpoint = progress.checkpoint(worker_of(read_model, context), context)
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
