"""The read-model schema: the agreement between the projection workers, the query API and the tools.

One module for every name the writers (projection workers, ``projections rebuild``), the
readers (query API, ``audit verify``, ``projections status``) and the analysts use:
read models and their versions, MongoDB collections, Redis keys, id formats, indexes,
and which projection worker consumes which context. ``docs/read-model-shapes.md`` and
``docs/read-models.md`` describe the documents themselves.

- MongoDB collections are ``<name>_v<N>``; N is the ``active`` version of the read model
  in ``read_model_versions`` (:data:`DEFAULT_VERSION` when absent).
- Redis keys are ``<redis_prefix>v<N>:<key>`` with N the active version of read model
  ``redis``.
- Progress for read-your-writes: ``projection_checkpoints`` (``<read model>:<context>``,
  ``low_watermark``) and the ``applied_events`` markers (``<read model>:<context>:<position>``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Literal

if TYPE_CHECKING:
    from flightbook.eventstore.contexts import Context

__all__ = (
    "ANALYTICS_COLLECTIONS",
    "ANALYTICS_KEYS",
    "CHECKPOINTS",
    "COLLECTIONS",
    "CONSUMES",
    "CONTEXTS_OF",
    "DEAD_LETTERS",
    "DEFAULT_VERSION",
    "INDEXES",
    "MARKERS",
    "PROJECTIONS",
    "READ_MODELS",
    "STALE",
    "VERSIONS",
    "WORKERS",
    "Index",
    "Projection",
    "ReadModel",
    "Worker",
    "booking_key",
    "checkpoint_id",
    "collection",
    "customer_channel",
    "marker_id",
    "projection",
    "projection_of_context",
    "redis_version_prefix",
    "search_key",
    "seats_key",
    "worker_of",
)

ReadModel = Literal["bookings", "flights", "analytics", "redis"]
READ_MODELS: Final[tuple[ReadModel, ...]] = ("bookings", "flights", "analytics", "redis")

Worker = Literal["bookings", "flights"]
"""A projection worker, named after the document read model it owns."""


@dataclass(frozen=True)
class Projection:
    """One projection worker: the context it consumes and the read models it writes."""

    name: Worker
    context: Context
    """The one context whose log (topic) it consumes."""
    collection: str
    """Its document collection (without ``_v<N>``)."""
    analytics: tuple[str, ...]
    """The analytics collections it maintains."""
    redis_kind: str
    """The prefix of its Redis keys (``booking:``, ``seats:``)."""


PROJECTIONS: Final[tuple[Projection, ...]] = (
    Projection("bookings", "booking", "bookings", ("sales_daily", "funnel_daily"), "booking:"),
    Projection("flights", "inventory", "flights", ("load_factor",), "seats:"),
)
WORKERS: Final[tuple[Worker, ...]] = tuple(p.name for p in PROJECTIONS)
_BY_WORKER: dict[str, Projection] = {p.name: p for p in PROJECTIONS}
_BY_CONTEXT: dict[str, Projection] = {p.context: p for p in PROJECTIONS}


def projection(worker: str) -> Projection:
    """The projection worker called ``worker``.

    Raises:
        ValueError: no such worker.
    """
    found = _BY_WORKER.get(worker)
    if found is None:
        raise ValueError(f"no projection worker {worker!r} (choose from {', '.join(WORKERS)})")
    return found


def projection_of_context(context: str) -> Projection:
    """The projection worker that consumes ``context`` (KeyError if none does)."""
    return _BY_CONTEXT[context]


DEFAULT_VERSION: Final = 1
"""The active version of a read model that ``read_model_versions`` does not mention."""

VERSIONS: Final = "read_model_versions"
CHECKPOINTS: Final = "projection_checkpoints"
MARKERS: Final = "applied_events"
DEAD_LETTERS: Final = "dead_letters"
STALE: Final = "analytics_stale"

ANALYTICS_COLLECTIONS: Final = ("sales_daily", "load_factor", "funnel_daily")

COLLECTIONS: Final[dict[ReadModel, tuple[str, ...]]] = {
    "bookings": ("bookings",),
    "flights": ("flights",),
    "analytics": ANALYTICS_COLLECTIONS,
    "redis": (),
}
"""The MongoDB collections (without ``_v<N>``) of each read model."""

CONTEXTS_OF: Final[dict[ReadModel, tuple[Context, ...]]] = {
    "bookings": ("booking",),
    "flights": ("inventory",),
    "analytics": ("booking", "inventory"),
    "redis": ("booking", "inventory"),
}
"""The event-log contexts whose events each read model reflects."""

CONSUMES: Final[dict[str, tuple[Context, ...]]] = {p.name: (p.context,) for p in PROJECTIONS}
"""Read model -> the contexts whose positions it applies (and the query API waits for)."""


def worker_of(read_model: str, context: str) -> Worker:
    """The worker whose checkpoint describes ``read_model``'s progress on ``context``.

    Each worker writes its Redis keys and analytics in the same batch as its documents,
    before the checkpoint and markers, so the worker of the context answers for all.
    """
    if context not in CONTEXTS_OF.get(read_model, ()):  # type: ignore[call-overload]
        raise KeyError((read_model, context))
    return projection_of_context(context).name


def collection(name: str, version: int) -> str:
    """``bookings`` version 2 -> ``bookings_v2``."""
    return f"{name}_v{version}"


def redis_version_prefix(redis_prefix: str, version: int) -> str:
    """Every Redis key of version N of the ``redis`` read model starts with this."""
    return f"{redis_prefix}v{version}:"


def seats_key(flight_id: str) -> str:
    """The seats-left hash of a flight (after the version prefix)."""
    return f"seats:{flight_id}"


def booking_key(booking_id: str) -> str:
    """The status hash of a booking (after the version prefix)."""
    return f"booking:{booking_id}"


def customer_channel(customer_id: str) -> str:
    """The Redis channel (after the deployment's prefix) announcing the customer's bookings.

    The bookings worker publishes a booking's id there each time it writes the booking's
    hash; ``WebSocket /ws/bookings`` listens (ADR 0025). The customer id appears only as a
    SHA-256 digest, so channel listings (``PUBSUB CHANNELS``) name no one. It has no read
    model version: a socket keeps hearing its customer across a switch of versions.
    """
    digest = hashlib.sha256(customer_id.encode()).hexdigest()[:32]
    return f"customer:{digest}"


def search_key(origin: str, destination: str, day: str) -> str:
    """The cached search answer of a route and day (after the version prefix)."""
    return f"search:{origin}:{destination}:{day}"


def checkpoint_id(read_model: str, context: str) -> str:
    """The ``_id`` of a ``projection_checkpoints`` document."""
    return f"{read_model}:{context}"


def marker_id(read_model: str, context: str, position: int) -> str:
    """The ``_id`` of an ``applied_events`` marker."""
    return f"{read_model}:{context}:{position}"


@dataclass(frozen=True)
class Index:
    """A secondary index: ``(field, 1 | -1)`` pairs."""

    keys: tuple[tuple[str, int], ...]
    unique: bool = False


INDEXES: dict[str, tuple[Index, ...]] = {
    "bookings": (
        # (customer_id, created_at desc) serves "my bookings, newest first"; nx-27017 rejects
        # every insert into a collection with an index on ``_id`` besides its own.
        Index((("customer_id", 1), ("created_at", -1))),
        Index((("flight_id", 1),)),
        Index((("date", 1),)),
    ),
    "flights": (
        Index((("origin", 1), ("destination", 1), ("date", 1), ("departure", 1))),
        Index((("date", 1),)),
    ),
    "sales_daily": (Index((("date", 1), ("origin", 1), ("destination", 1))),),
    "load_factor": (Index((("flight_id", 1),)), Index((("date", 1),))),
    "funnel_daily": (Index((("date", 1),)),),
}
"""Indexes of each versioned collection (by its name without ``_v<N>``)."""

ANALYTICS_KEYS: dict[str, tuple[str, ...]] = {
    "sales_daily": ("date", "origin", "destination"),
    "funnel_daily": ("date",),
    "load_factor": ("_id",),
}
"""What an analytics document is found by when it is written: its ``_id`` (the only field
nx-27017 finds through an index), or, where the ``_id`` starts like a date (which nx-27017
cannot find by ``_id``), the fields the ``_id`` is made of."""
