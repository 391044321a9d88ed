"""How far each read model is: versions, watermarks, lag, dead letters (``projections status``).

The lag of each context comes from :mod:`flightbook.projections.watermarks`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

from flightbook.contracts.readmodels import CONTEXTS_OF, READ_MODELS, WORKERS, worker_of
from flightbook.projections.ports import VersionInfo
from flightbook.projections.watermarks import ContextStatus, context_status

if TYPE_CHECKING:
    import datetime as dt

    from flightbook.projections.history import EventStoreReader
    from flightbook.projections.ports import ProgressStore

__all__ = ("ReadModelStatus", "format_status", "read_model_status")


class ReadModelStatus(NamedTuple):
    """One read model: its versions, each context's progress, its pending dead letters."""

    name: str
    active: int
    building: int | None
    contexts: tuple[ContextStatus, ...]
    dead_letters: int


def read_model_status(
    progress: ProgressStore, reader: EventStoreReader, *, now: dt.datetime | None = None
) -> list[ReadModelStatus]:
    """The status of every read model."""
    versions = progress.versions()
    letters = {name: progress.count_dead_letters(name) for name in WORKERS}
    found = []
    for name in READ_MODELS:
        info = versions.get(name, VersionInfo())
        contexts = tuple(
            context_status(progress, reader, name, context, now=now)
            for context in CONTEXTS_OF[name]
        )
        dead = sum(letters[worker_of(name, context)] for context in CONTEXTS_OF[name])
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
