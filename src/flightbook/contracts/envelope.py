"""The wire contract's envelope: what the relay publishes on Kafka, one message per event.

Every message on ``<topic_prefix>.<context>.events`` is one JSON-encoded :class:`Envelope`
whose ``payload`` is a tagged union (:mod:`flightbook.contracts.payloads`). Consumers
import only this package, never the domain.

Evolution rules (msgspec schema evolution; ``docs/contracts.md`` has the full text):
new payload fields get defaults and go last; fields are never renamed, retyped or
removed; new payload types may appear at any time (consumers skip tags they do not
know); anything else is a new :data:`CONTRACT_VERSION`.

``python -m flightbook.contracts > docs/contracts.schema.json`` regenerates the JSON
Schema kept in the repository.
"""

from __future__ import annotations

import json
from typing import Annotated, Any
from uuid import UUID

import msgspec

from flightbook.contracts.payloads import PAYLOAD_TYPES, AnyPayload, Payload, UtcDateTime
from flightbook.eventstore.contexts import Context

__all__ = (
    "CONTRACT_VERSION",
    "KNOWN_TYPES",
    "Context",
    "Envelope",
    "decoder",
    "encoder",
    "payload_type_name",
    "schema",
    "schema_json",
)

CONTRACT_VERSION = 1
"""Version of the envelope and payload shapes; bumped only for a breaking change."""


def payload_type_name(payload_type: type[Payload]) -> str:
    """The stable public name of a payload type (its tag), e.g. ``"booking.requested"``."""
    return str(payload_type.__struct_config__.tag)


KNOWN_TYPES: frozenset[str] = frozenset(payload_type_name(t) for t in PAYLOAD_TYPES)
"""Every ``type`` this version knows: skip messages whose ``type`` header is not here."""


class Envelope(msgspec.Struct, frozen=True, kw_only=True):
    """One published event: where it comes from, who caused it, and what happened."""

    event_id: str
    """Unique id of the stored event (UUID text; empty for events stored before metadata)."""
    type: str
    """The payload's tag, e.g. ``"booking.requested"`` (also the ``type`` header)."""
    version: int
    """:data:`CONTRACT_VERSION` the message was written with."""
    context: Context
    aggregate_id: UUID
    aggregate_version: Annotated[int, msgspec.Meta(ge=1)]
    """1 for the aggregate's first event, +1 for each next one: apply only if newer."""
    position: Annotated[int, msgspec.Meta(ge=1)]
    """Position in the context's event log: increasing, unique per context, may have gaps."""
    occurred_at: UtcDateTime
    correlation_id: str
    """The request that started the chain of events (empty if none)."""
    causation_id: str
    """The event or command that caused this one."""
    actor: str
    """Who: a customer id, an agent, ``ops``, ``saga``, ``system``."""
    payload: AnyPayload


encoder = msgspec.json.Encoder()
"""The one encoder of the relay (reuse it: building one per message is slow)."""
decoder: msgspec.json.Decoder[Envelope] = msgspec.json.Decoder(Envelope)
"""The one decoder consumers need: ``decoder.decode(message.value())``."""


def schema() -> dict[str, Any]:
    """The JSON Schema of :class:`Envelope` (kept as ``docs/contracts.schema.json``)."""
    return msgspec.json.schema(Envelope)


def schema_json() -> str:
    """:func:`schema` as the exact text of ``docs/contracts.schema.json``."""
    return json.dumps(schema(), indent=2, sort_keys=True) + "\n"
