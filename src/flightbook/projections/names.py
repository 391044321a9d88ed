"""Names of the read models, their versioned collections and keys (``docs/read-model-shapes.md``).

One place for every name both the workers and the tools (status, rebuild, verify) use, so
that a collection or key is spelled the same everywhere.
"""

from __future__ import annotations

from typing import Final, Literal

__all__ = (
    "ANALYTICS_COLLECTIONS",
    "CHECKPOINTS",
    "COLLECTIONS",
    "CONTEXTS_OF",
    "DEAD_LETTERS",
    "DEFAULT_VERSION",
    "MARKERS",
    "READ_MODELS",
    "STALE",
    "VERSIONS",
    "ReadModel",
    "booking_key",
    "checkpoint_id",
    "collection",
    "marker_id",
    "redis_version_prefix",
    "search_key",
    "seats_key",
)

ReadModel = Literal["bookings", "flights", "analytics", "redis"]
READ_MODELS: Final[tuple[ReadModel, ...]] = ("bookings", "flights", "analytics", "redis")

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

CONTEXTS_OF: Final[dict[ReadModel, tuple[str, ...]]] = {
    "bookings": ("booking",),
    "flights": ("inventory",),
    "analytics": ("booking", "inventory"),
    "redis": ("booking", "inventory"),
}
"""The event-log contexts whose events each read model reflects."""


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


def search_key(origin: str, destination: str, day: str) -> str:
    """The cached search answer of a route and day (after the version prefix)."""
    return f"search:{origin}:{destination}:{day}"


def checkpoint_id(read_model: str, context: str) -> str:
    return f"{read_model}:{context}"


def marker_id(read_model: str, context: str, position: int) -> str:
    return f"{read_model}:{context}:{position}"
