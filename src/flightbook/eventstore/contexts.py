"""The three bounded contexts and where their events live: the one table every module reads.

Each context has an eventsourcing application (whose name the library turns into table
and channel names), a PostgreSQL schema with its events and tracking tables (created by
``migrations/postgres``), and a Kafka topic ``<topic_prefix>.<context>.events``. Nothing
else in flightbook spells these names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from psycopg import sql

__all__ = (
    "BOOKING",
    "CONTEXTS",
    "CONTEXT_NAMES",
    "INVENTORY",
    "PAYMENT",
    "Context",
    "ContextSpec",
    "context",
    "topic_for",
)

Context = Literal["booking", "inventory", "payment"]


@dataclass(frozen=True)
class ContextSpec:
    """One bounded context's names."""

    name: Context
    """The context's name in positions, envelopes and topics (``booking``)."""
    application: str
    """The eventsourcing application's name (``Bookings``): tracking records name it."""
    schema: str
    """The PostgreSQL schema of its tables."""

    @property
    def events_table(self) -> str:
        """The events table (the library derives it from the application's name)."""
        return f"{self.application.lower()}_events"

    @property
    def tracking_table(self) -> str:
        """The tracking table of the saga's steps stored in this context."""
        return f"{self.application.lower()}_tracking"

    @property
    def events(self) -> sql.Composed:
        """``schema.events_table`` as a safely quoted SQL identifier."""
        return sql.SQL("{}.{}").format(
            sql.Identifier(self.schema), sql.Identifier(self.events_table)
        )

    @property
    def tracking(self) -> sql.Composed:
        """``schema.tracking_table`` as a safely quoted SQL identifier."""
        return sql.SQL("{}.{}").format(
            sql.Identifier(self.schema), sql.Identifier(self.tracking_table)
        )

    def topic(self, topic_prefix: str) -> str:
        """The Kafka topic of the context's events, e.g. ``flightbook.booking.events``."""
        return topic_for(topic_prefix, self.name)


BOOKING = ContextSpec(name="booking", application="Bookings", schema="booking")
INVENTORY = ContextSpec(name="inventory", application="Inventory", schema="inventory")
PAYMENT = ContextSpec(name="payment", application="Payments", schema="payment")

CONTEXTS: tuple[ContextSpec, ...] = (BOOKING, INVENTORY, PAYMENT)
CONTEXT_NAMES: tuple[Context, ...] = tuple(spec.name for spec in CONTEXTS)
_BY_NAME: dict[str, ContextSpec] = {spec.name: spec for spec in CONTEXTS}


def context(name: str) -> ContextSpec:
    """The context called ``name``.

    Raises:
        KeyError: there is no such context.
    """
    return _BY_NAME[name]


def topic_for(topic_prefix: str, context: str) -> str:
    """The topic of a context's events, e.g. ``flightbook.booking.events``."""
    return f"{topic_prefix}.{context}.events"
