"""An aggregate's state as it was at a moment: its events up to then, replayed."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from flightbook.audit.log import plain

if TYPE_CHECKING:
    import uuid

    from flightbook.audit.log import EventLog

__all__ = ("StateAsOf", "state_as_of")


class StateAsOf(dict[str, Any]):
    """The rebuilt state (plain JSON-able values) plus how it was rebuilt."""


def state_as_of(log: EventLog, aggregate_id: uuid.UUID, as_of: dt.datetime | int) -> StateAsOf:
    """Replay the aggregate's events that happened at or before ``as_of``.

    Args:
        log: the event logs.
        aggregate_id: which aggregate.
        as_of: a UTC time, or a position in the aggregate's context log.

    Raises:
        UnknownAggregateError: no events for this id.
        LookupError: the aggregate did not exist yet at ``as_of``.
    """
    context = log.context_of(aggregate_id)
    aggregate: Any = None
    applied = 0
    last_position = 0
    for notification, event in log.domain_events(context, aggregate_id):
        happened: dt.datetime = getattr(event, "timestamp")  # noqa: B009
        if isinstance(as_of, int) and notification.id > as_of:
            break
        if isinstance(as_of, dt.datetime) and happened > as_of:
            break
        aggregate = event.mutate(aggregate)  # type: ignore[attr-defined]
        applied += 1
        last_position = notification.id
    if aggregate is None:
        raise LookupError(f"aggregate {aggregate_id} did not exist yet at {as_of}")
    state = StateAsOf(
        {k.lstrip("_"): plain(v) for k, v in vars(aggregate).items() if k != "_pending_events"}
    )
    state["_replayed"] = {
        "context": context,
        "events": applied,
        "last_position": last_position,
        "type": type(aggregate).__name__,
    }
    return state
