"""What differs between the two projection workers: their documents and what follows from them.

A :class:`Kind` folds one context's envelopes into its documents (the pure projectors of
:mod:`flightbook.projections.projectors`) and derives the Redis hashes, the cache keys to
invalidate and the analytics; its names come from :mod:`flightbook.contracts.readmodels`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from flightbook.contracts import payloads
from flightbook.contracts.readmodels import (
    Projection,
    booking_key,
    collection,
    customer_channel,
    projection,
    seats_key,
)
from flightbook.projections.projectors import (
    ANALYTICS_BOOKING_FIELDS,
    booking_hash,
    evolve_booking,
    evolve_flight,
    funnel_daily_documents,
    load_factor_documents,
    sales_daily_documents,
    search_keys,
    seats_hash,
)

if TYPE_CHECKING:
    from collections.abc import Collection, Sequence

    from flightbook.contracts.envelope import Envelope
    from flightbook.projections.ports import Document, DocumentStore
    from flightbook.projections.projectors import BookingLookups

__all__ = ("BookingsKind", "FlightsKind", "Kind", "kind_for")


class Kind(Protocol):
    """What differs between the bookings and the flights worker."""

    spec: Projection
    """The worker this kind is (its context, collection, analytics)."""

    @property
    def read_model(self) -> str:
        """The document read model it owns (``bookings``), also the worker's name."""
        ...

    @property
    def context(self) -> str:
        """The one context whose events it applies."""
        ...

    @property
    def collection(self) -> str:
        """Its document collection (without ``_v<N>``)."""
        ...

    def evolve(self, doc: Document | None, envelope: Envelope) -> Document: ...

    def absorb(self, envelope: Envelope) -> bool:
        """Act on an envelope that no document is folded from, and say so.

        True for such an event (a data subject's erasure: the kind drops the customer's
        cached keys), which the engine then counts as applied without a document; False
        for the events of its documents.
        """
        ...

    def hashes(self, doc: Document) -> list[tuple[str, dict[str, str]]]:
        """``(key after the version prefix, fields)`` of the Redis hashes of a document."""
        ...

    def invalidations(self, doc: Document) -> list[str]:
        """Keys (after the version prefix) to delete when the document changes."""
        ...

    def announcements(self, doc: Document) -> tuple[tuple[str, str], ...]:
        """``(channel, message)`` pairs announcing a write of its hashes.

        Channels are after the deployment's prefix; each hash's own channel comes besides.
        """
        ...

    def analytics(self, docs: Sequence[Document]) -> dict[str, list[Document]]:
        """Analytics documents that follow from ``docs`` alone, by collection name."""
        ...

    def stale_keys(self, docs: Sequence[Document]) -> set[str]:
        """Keys of the analytics that add up many documents and that ``docs`` change."""
        ...

    def recompute(
        self, keys: Collection[str], documents: DocumentStore, version: int
    ) -> dict[str, list[Document]]:
        """Those analytics for ``keys``, from every document (of ``version``) they add up."""
        ...


class _SpecKind:
    spec: Projection

    @property
    def read_model(self) -> str:
        return self.spec.name

    @property
    def context(self) -> str:
        return self.spec.context

    @property
    def collection(self) -> str:
        return self.spec.collection


class BookingsKind(_SpecKind):
    """``bookings_v<N>``, Redis ``booking:<id>``, ``sales_daily`` and ``funnel_daily``."""

    spec = projection("bookings")

    def __init__(self, lookups: BookingLookups) -> None:
        self._lookups = lookups

    def evolve(self, doc: Document | None, envelope: Envelope) -> Document:
        return evolve_booking(doc, envelope, self._lookups)

    def absorb(self, envelope: Envelope) -> bool:
        payload = envelope.payload
        if not isinstance(payload, payloads.DataSubjectErased):
            return False
        # Its bookings' own ``booking.passengers_erased`` redact their documents; what is
        # left is this process's cache of the erased keys (the vault keeps them 30 s).
        self._lookups.forget(payload.customer_id)
        return True

    def hashes(self, doc: Document) -> list[tuple[str, dict[str, str]]]:
        return [(booking_key(str(doc["_id"])), booking_hash(doc))]

    def invalidations(self, doc: Document) -> list[str]:
        return []

    def announcements(self, doc: Document) -> tuple[tuple[str, str], ...]:
        # the customer's sockets learn which of their bookings to read again (ADR 0025)
        return ((customer_channel(str(doc["customer_id"])), str(doc["_id"])),)

    def analytics(self, docs: Sequence[Document]) -> dict[str, list[Document]]:
        return {}

    def stale_keys(self, docs: Sequence[Document]) -> set[str]:
        return {str(doc["date"]) for doc in docs}

    def recompute(
        self, keys: Collection[str], documents: DocumentStore, version: int
    ) -> dict[str, list[Document]]:
        if not keys:
            return {}
        bookings = documents.find_in(
            collection("bookings", version), "date", sorted(keys), ANALYTICS_BOOKING_FIELDS
        )
        return {
            "sales_daily": sales_daily_documents(bookings),
            "funnel_daily": funnel_daily_documents(bookings),
        }


class FlightsKind(_SpecKind):
    """``flights_v<N>``, Redis ``seats:<id>`` (and ``search:`` invalidation), ``load_factor``."""

    spec = projection("flights")

    def evolve(self, doc: Document | None, envelope: Envelope) -> Document:
        return evolve_flight(doc, envelope)

    def absorb(self, envelope: Envelope) -> bool:
        return False

    def hashes(self, doc: Document) -> list[tuple[str, dict[str, str]]]:
        return [(seats_key(str(doc["_id"])), seats_hash(doc))]

    def invalidations(self, doc: Document) -> list[str]:
        return search_keys(doc)

    def announcements(self, doc: Document) -> tuple[tuple[str, str], ...]:
        return ()

    def analytics(self, docs: Sequence[Document]) -> dict[str, list[Document]]:
        return {"load_factor": [row for doc in docs for row in load_factor_documents(doc)]}

    def stale_keys(self, docs: Sequence[Document]) -> set[str]:
        return set()

    def recompute(
        self, keys: Collection[str], documents: DocumentStore, version: int
    ) -> dict[str, list[Document]]:
        return {}


def kind_for(worker: str, lookups: BookingLookups) -> Kind:
    """The kind of the worker called ``worker`` (``bookings`` needs the lookups)."""
    spec = projection(worker)
    if spec.name == "bookings":
        return BookingsKind(lookups)
    return FlightsKind()
