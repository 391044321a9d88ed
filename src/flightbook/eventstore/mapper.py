"""A Mapper that stores each event's metadata beside its state, and can read it back.

The domain events stay free of infrastructure fields: ``__meta__`` is added to the
stored state on the way in and removed on the way out; readers that need it (the
relay, the auditors' CLI, the saga) use :meth:`MetadataMapper.decode`.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

import msgspec
from eventsourcing.persistence import Mapper, StoredEvent

from flightbook.eventstore.metadata import EventMetadata, current_unit_of_work

if TYPE_CHECKING:
    from eventsourcing.domain import DomainEventProtocol

__all__ = ("META_KEY", "MetadataMapper")

META_KEY = "__meta__"


class MetadataMapper(Mapper[uuid.UUID]):
    """Adds ``__meta__`` (:class:`EventMetadata`) to every stored event."""

    def to_stored_event(self, domain_event: DomainEventProtocol[uuid.UUID]) -> StoredEvent:
        return self.encode(domain_event)[0]

    def encode(
        self, domain_event: DomainEventProtocol[uuid.UUID]
    ) -> tuple[StoredEvent, EventMetadata]:
        """The stored event and the metadata it carries (its new event id among them)."""
        unit = current_unit_of_work()
        meta = EventMetadata(
            event_id=str(uuid.uuid4()),
            correlation_id=unit.correlation_id,
            causation_id=unit.causation_id,
            actor=unit.actor,
            schema_version=getattr(type(domain_event), "class_version", 1),
        )
        # the parent encodes vars(domain_event): add the metadata there for a moment
        state: dict[str, Any] = domain_event.__dict__
        state[META_KEY] = msgspec.structs.asdict(meta)
        try:
            return super().to_stored_event(domain_event), meta
        finally:
            del state[META_KEY]

    def to_domain_event(self, stored_event: StoredEvent) -> DomainEventProtocol[uuid.UUID]:
        return self.decode(stored_event)[0]

    def decode(
        self, stored_event: StoredEvent
    ) -> tuple[DomainEventProtocol[uuid.UUID], EventMetadata]:
        """The domain event and its metadata (defaults for events stored without any)."""
        domain_event = super().to_domain_event(stored_event)
        raw = domain_event.__dict__.pop(META_KEY, None)
        if isinstance(raw, dict):
            meta = msgspec.convert(raw, EventMetadata)
        else:  # stored before metadata existed
            meta = EventMetadata(
                event_id="", correlation_id="", causation_id="", actor="unknown", schema_version=1
            )
        return domain_event, meta
