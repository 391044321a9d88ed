"""Both APIs fuzzed against their own OpenAPI documents (issue 15, finding 11).

Schemathesis runs as a process against the command API and the query API, each a real
process on the test's own servers, with every check (``--checks all``): no 5xx, every
response as documented, every schema-valid request accepted, every schema-invalid one
refused. Bounded in examples per operation and by a hard timeout per run.

Before the fix, schemathesis found 500s (deep and non-UTF-8 bodies) and schema-valid
requests refused (cursor and ``X-Flightbook-After`` formats, the currency and other
patterns, extra fields without ``additionalProperties: false``).
"""

from __future__ import annotations

import httpx
import msgspec
import pytest

from flightbook.config.settings import Settings
from tests.support.api import flight_body
from tests.support.fuzz import caught_up_read_models, fuzz, token_for
from tests.support.fuzz_hooks import FLIGHT_ID_VARIABLE
from tests.support.processes import SystemProcess, free_port

pytestmark = pytest.mark.e2e


def fuzzed(settings: Settings) -> Settings:
    """Settings under which a schema-valid request is refused only by a documented rule."""
    return msgspec.structs.replace(
        settings,
        cap_bookings_in_progress=100_000,
        cap_seats_held=1_000_000,
        cap_seats_held_per_flight=1_000_000,
        query_wait_seconds=0.5,
    )


def test_the_command_api_keeps_every_promise_of_its_openapi_document(
    settings: Settings, processes: list[SystemProcess]
) -> None:
    port = free_port()
    api = SystemProcess("commands/api.py", fuzzed(settings), FLIGHTBOOK_COMMAND_PORT=str(port))
    processes.append(api.start())
    base = f"http://127.0.0.1:{port}"
    api.wait_http(f"{base}/health/ready")
    token = token_for(settings, "fuzz-ops", "ops", "customer", "privacy")
    flight = httpx.post(
        f"{base}/flights",
        json=flight_body(fares=[{**flight_body()["fares"][0], "seats": 10_000}]),
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert flight.status_code == 201, flight.text

    run = fuzz(base, token, env={FLIGHT_ID_VARIABLE: flight.json()["flight_id"]})

    assert run.returncode == 0, run.report


def test_the_query_api_keeps_every_promise_of_its_openapi_document(
    settings: Settings, processes: list[SystemProcess]
) -> None:
    caught_up_read_models(settings)
    port = free_port()
    api = SystemProcess("queries/api.py", fuzzed(settings), FLIGHTBOOK_QUERY_PORT=str(port))
    processes.append(api.start())
    base = f"http://127.0.0.1:{port}"
    api.wait_http(f"{base}/health/ready")

    run = fuzz(base, token_for(settings, "fuzz-analyst", "analyst", "customer"))

    assert run.returncode == 0, run.report


def test_the_identity_api_keeps_every_promise_of_its_openapi_document(
    settings: Settings, processes: list[SystemProcess]
) -> None:
    port = free_port()
    cheap = msgspec.structs.replace(
        settings, identity_argon2_time_cost=1, identity_argon2_memory_kib=8
    )
    api = SystemProcess("commands/identity.py", cheap, FLIGHTBOOK_IDENTITY_PORT=str(port))
    processes.append(api.start())
    base = f"http://127.0.0.1:{port}"
    api.wait_http(f"{base}/health/ready")

    run = fuzz(base, token_for(settings, "fuzz-customer", "customer"))

    assert run.returncode == 0, run.report
