"""Both APIs as real processes: what they refuse at start-up and what they expose."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from flightbook.config.settings import Settings
from flightbook.http.tokens import mint_token
from tests.support.processes import SystemProcess, free_port

pytestmark = pytest.mark.e2e

SCRIPTS = {"command-api": "commands/api.py", "query-api": "queries/api.py"}


@pytest.mark.parametrize(
    ("api", "env"),
    [
        ("command-api", {"FLIGHTBOOK_HOST": "0.0.0.0"}),  # noqa: S104 - it must refuse
        ("query-api", {"FLIGHTBOOK_HOST": "0.0.0.0"}),  # noqa: S104
        ("command-api", {"FLIGHTBOOK_POSTGRES_URL": "postgresql://db.example.com:5432/flightbook"}),
        ("query-api", {"FLIGHTBOOK_REDIS_URL": "redis://cache.internal:6379/0"}),
    ],
    ids=["default-0.0.0.0", "query-default-0.0.0.0", "remote-db", "remote-redis"],
)
def test_off_the_local_stack_an_api_refuses_to_start_without_public_keys(
    settings: Settings, tmp_path: Path, api: str, env: dict[str, str]
) -> None:
    """One line naming FLIGHTBOOK_JWT_JWKS and exit status 2, before listening."""
    process = SystemProcess(
        SCRIPTS[api],
        msgspec.structs.replace(settings, jwt_jwks=None),
        FLIGHTBOOK_COMMAND_PORT=str(free_port()),
        FLIGHTBOOK_QUERY_PORT=str(free_port()),
        FLIGHTBOOK_COMMAND_OPS_PORT="0",
        FLIGHTBOOK_QUERY_OPS_PORT="0",
        **env,
    )
    process.log = tmp_path / "api.log"
    process.start()
    assert process.process is not None
    try:
        code = process.process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.stop()
        pytest.fail(f"{api} started without public keys: {process.log.read_text()}")

    lines = process.log.read_text().strip().splitlines()
    assert code == 2
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"{api}: error: FLIGHTBOOK_JWT_JWKS is not set")


StartApi = Callable[..., tuple[str, str]]


@pytest.fixture
def start_api(settings: Settings, processes: list[SystemProcess], tmp_path: Path) -> StartApi:
    """``start_api(name, **settings_changes)`` starts that API; its public and ops base URL."""

    def start(name: str, **changes: Any) -> tuple[str, str]:
        public, ops = free_port(), free_port()
        prefix = "FLIGHTBOOK_COMMAND" if name == "command-api" else "FLIGHTBOOK_QUERY"
        process = SystemProcess(
            SCRIPTS[name],
            msgspec.structs.replace(settings, **changes),
            **{f"{prefix}_PORT": str(public), f"{prefix}_OPS_PORT": str(ops)},
        )
        process.log = tmp_path / f"{name}.log"
        processes.append(process.start())
        process.wait_http(f"http://127.0.0.1:{public}/health/ready")
        process.wait_http(f"http://127.0.0.1:{ops}/health/ready")
        return f"http://127.0.0.1:{public}", f"http://127.0.0.1:{ops}"

    return start


@pytest.fixture
def alice(settings: Settings) -> dict[str, str]:
    """A customer's ``Authorization`` header."""
    return {"Authorization": f"Bearer {mint_token(settings, subject='alice', roles=['customer'])}"}


@pytest.mark.parametrize("name", ["command-api", "query-api"])
def test_metrics_are_on_the_ops_port_only_and_health_stays_public(
    start_api: StartApi, name: str, alice: dict[str, str]
) -> None:
    public, ops = start_api(name)
    path = "/bookings" if name == "query-api" else "/flights"
    # a request, so the request counter has a sample
    httpx.request("GET" if name == "query-api" else "POST", public + path, headers=alice)

    on_public = httpx.get(f"{public}/metrics")
    on_ops = httpx.get(f"{ops}/metrics")

    assert on_public.status_code == 404
    assert on_ops.status_code == 200
    counter = "flightbook_queries_total" if name == "query-api" else "flightbook_commands_total"
    assert counter in on_ops.text
    assert httpx.get(f"{public}/health/live").status_code == 200
    assert httpx.get(f"{public}/health/ready").status_code == 200
    assert httpx.get(f"{ops}/health/ready").status_code == 200


def test_with_public_metrics_they_are_on_the_public_port_too(start_api: StartApi) -> None:
    public, ops = start_api("query-api", public_metrics=True)

    assert httpx.get(f"{public}/metrics").status_code == 200
    assert httpx.get(f"{ops}/metrics").status_code == 200


@pytest.mark.parametrize("name", ["command-api", "query-api"])
def test_no_answer_names_the_server_and_every_one_has_the_security_headers(
    start_api: StartApi, name: str, alice: dict[str, str]
) -> None:
    public, _ = start_api(name)
    answers = [
        httpx.get(f"{public}/health/live"),
        httpx.get(f"{public}/schema/openapi.json"),
        httpx.get(f"{public}/bookings"),  # 401 (or 405 on the command API)
        httpx.get(f"{public}/no-such-route"),
        httpx.post(f"{public}/bookings", headers=alice),
    ]

    for answer in answers:
        assert "server" not in answer.headers, (answer.url, answer.headers)
        assert answer.headers["x-content-type-options"] == "nosniff", answer.url
        assert answer.headers["cache-control"] == "no-store", answer.url
        assert answer.headers["referrer-policy"] == "no-referrer", answer.url
