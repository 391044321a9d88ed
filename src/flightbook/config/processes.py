"""The processes of the system: each one's name, composition root and HTTP port setting.

One table for the supervisor (``flightbook up``), the composition (``flightbook.bootstrap``)
and the benchmark; ``compose.yaml`` runs the same composition roots as its services.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ("PROCESSES", "ProcessSpec", "process")


@dataclass(frozen=True)
class ProcessSpec:
    """One process of the system: its name and its composition root."""

    name: str
    script: str  # relative to the project folder
    port_setting: str | None = None  # which setting holds its HTTP port
    api: bool = False  # announced with its OpenAPI link (the others serve health/metrics only)
    ops_port_setting: str | None = None  # an API's ops port (its /metrics)


PROCESSES: tuple[ProcessSpec, ...] = (
    ProcessSpec("command-api", "commands/api.py", "command_port", True, "command_ops_port"),
    ProcessSpec("identity-api", "commands/identity.py", "identity_port", True, "identity_ops_port"),
    ProcessSpec("saga", "commands/saga.py", "saga_http_port"),
    ProcessSpec("relay", "commands/relay.py", "relay_http_port"),
    ProcessSpec("bookings-projection", "projections/bookings.py", "projection_bookings_http_port"),
    ProcessSpec("flights-projection", "projections/flights.py", "projection_flights_http_port"),
    ProcessSpec("query-api", "queries/api.py", "query_port", True, "query_ops_port"),
    ProcessSpec("auditor", "commands/auditor.py", "audit_http_port"),
)


def process(name: str) -> ProcessSpec:
    """The process called ``name`` (KeyError if there is none)."""
    for spec in PROCESSES:
        if spec.name == name:
            return spec
    raise KeyError(name)
