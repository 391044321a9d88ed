"""Envelopes and fakes for the projection unit tests."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field

from flightbook.contracts.envelope import CONTRACT_VERSION, Envelope, payload_type_name
from flightbook.contracts.payloads import AnyPayload, FareTerms, FlightScheduled, Money
from flightbook.projections.history import StoredItem

T0 = dt.datetime(2031, 3, 1, 9, 30, 0, 123456, tzinfo=dt.UTC)

DEPARTURE = dt.datetime(2031, 12, 24, 10, 0, tzinfo=dt.UTC)


@dataclass
class Log:
    """A context's log in memory: envelopes with increasing positions and versions."""

    context: str
    position: int = 0
    versions: dict[uuid.UUID, int] = field(default_factory=dict)
    items: list[StoredItem] = field(default_factory=list)

    def add(
        self,
        aggregate_id: uuid.UUID,
        payload: AnyPayload,
        *,
        at: dt.datetime | None = None,
        correlation_id: str = "req-1",
    ) -> Envelope:
        self.position += 1
        version = self.versions.get(aggregate_id, 0) + 1
        self.versions[aggregate_id] = version
        moment = at or T0 + dt.timedelta(seconds=self.position)
        envelope = Envelope(
            event_id=str(uuid.uuid4()),
            type=payload_type_name(type(payload)),
            version=CONTRACT_VERSION,
            context=self.context,  # type: ignore[arg-type]
            aggregate_id=aggregate_id,
            aggregate_version=version,
            position=self.position,
            occurred_at=moment,
            correlation_id=correlation_id,
            causation_id="",
            actor="test",
            payload=payload,
        )
        self.items.append(StoredItem(self.position, aggregate_id, version, moment, envelope))
        return envelope

    @property
    def envelopes(self) -> list[Envelope]:
        return [item.envelope for item in self.items if item.envelope is not None]


@dataclass
class FakeHistory:
    """The event store as the engine's repairs see it, recording every request."""

    logs: Mapping[str, Log]
    asked: list[dict[uuid.UUID, tuple[int, int]]] = field(default_factory=list)

    def histories(
        self, context: str, wanted: Mapping[uuid.UUID, tuple[int, int]]
    ) -> dict[uuid.UUID, list[StoredItem]]:
        self.asked.append(dict(wanted))
        found: dict[uuid.UUID, list[StoredItem]] = {a: [] for a in wanted}
        for item in self.logs[context].items:
            if item.aggregate_id in wanted:
                after, upto = wanted[item.aggregate_id]
                if after < item.version <= upto:
                    found[item.aggregate_id].append(item)
        return found


class FakeLookups:
    """Routes and passengers without PostgreSQL."""

    def __init__(self, routes: Mapping[str, tuple[str, str]] | None = None) -> None:
        self.routes = dict(routes or {})
        self.forgotten: list[str] = []

    def route(self, flight_id: str) -> tuple[str, str] | None:
        return self.routes.get(flight_id)

    def passengers(self, customer_id: str, sealed: str, count: int) -> list[dict[str, str]]:
        return [
            {"name": f"{sealed}-{n}", "email": f"{customer_id}@example.com"} for n in range(count)
        ]

    def forget(self, customer_id: str) -> None:
        self.forgotten.append(customer_id)


def scheduled(*, seats: int = 10, overbooking: int = 0, price: int = 45000) -> FlightScheduled:
    return FlightScheduled(
        flight_number="FB101",
        origin="LHR",
        destination="JFK",
        departure=DEPARTURE,
        arrival=DEPARTURE + dt.timedelta(hours=8),
        fares=[
            FareTerms(
                code="Y",
                cabin="economy",
                price=Money(amount=price, currency="EUR"),
                seats=seats,
                refundable=False,
                overbooking=overbooking,
            ),
            FareTerms(
                code="J",
                cabin="business",
                price=Money(amount=250000, currency="EUR"),
                seats=2,
                refundable=True,
            ),
        ],
    )
