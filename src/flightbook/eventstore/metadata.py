"""Who, why and in answer to what: the metadata every stored event carries.

A unit of work (an HTTP command, a saga step) opens :func:`recording`; every event
stored inside it gets the correlation id, causation id and actor from there, plus
its own event id and schema version (``__meta__`` in the stored state, added by
:class:`flightbook.eventstore.mapper.MetadataMapper`).
"""

from __future__ import annotations

import contextlib
import contextvars
import uuid
from typing import TYPE_CHECKING

import msgspec

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ("EventMetadata", "UnitOfWork", "current_unit_of_work", "recording")


class UnitOfWork(msgspec.Struct, frozen=True, kw_only=True):
    """The context of one command: what started it and who asked."""

    correlation_id: str
    causation_id: str
    actor: str


class EventMetadata(msgspec.Struct, frozen=True, kw_only=True):
    """The metadata stored with one event (``__meta__``)."""

    event_id: str
    correlation_id: str
    causation_id: str
    actor: str
    schema_version: int


_current: contextvars.ContextVar[UnitOfWork | None] = contextvars.ContextVar(
    "flightbook_unit_of_work", default=None
)

_SYSTEM = UnitOfWork(correlation_id="", causation_id="", actor="system")


def current_unit_of_work() -> UnitOfWork:
    """The unit of work in progress, or an anonymous ``system`` one."""
    return _current.get() or _SYSTEM


@contextlib.contextmanager
def recording(
    *, actor: str, correlation_id: str | None = None, causation_id: str | None = None
) -> Iterator[UnitOfWork]:
    """Attach metadata to every event stored inside the block."""
    correlation = correlation_id or str(uuid.uuid4())
    unit = UnitOfWork(
        correlation_id=correlation, causation_id=causation_id or correlation, actor=actor
    )
    token = _current.set(unit)
    try:
        yield unit
    finally:
        _current.reset(token)
