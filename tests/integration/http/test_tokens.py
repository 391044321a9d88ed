"""Tokens on both APIs: roles, lifetime, and 401s that do not say which check failed."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import msgspec
import pytest
from litestar.testing import TestClient
from structlog.testing import capture_logs

from flightbook.bootstrap import build_command_api, build_query_api
from flightbook.config.settings import Settings
from tests.support.api import Api, booking_body
from tests.support.apps import query_api_on
from tests.support.tokens import foreign_key, signed, signed_token

pytestmark = pytest.mark.integration

SEARCH = "/flights?origin=LHR&destination=JFK&date=2030-12-24"
# an id nothing has: fixed, so that every pytest-xdist worker collects the same test ids
UNKNOWN_FLIGHT = uuid.UUID("0b1d6e5e-0000-4000-8000-00000000f117")


@pytest.fixture
def query_api(settings: Settings) -> Iterator[Api]:
    with query_api_on(settings) as client:
        yield client


@pytest.fixture
def command_api(settings: Settings) -> Iterator[Api]:
    with TestClient(build_command_api(settings)) as client:
        yield client


@pytest.mark.parametrize("roles", [["admin"], [], ["Customer", "root"]], ids=str)
@pytest.mark.parametrize("url", [SEARCH, "/bookings", f"/flights/{UNKNOWN_FLIGHT}"])
def test_a_token_without_a_known_role_is_forbidden_on_every_query(
    query_api: Api, settings: Settings, roles: list[str], url: str
) -> None:
    response = query_api.get(url, headers=signed(settings, roles=roles))

    assert response.status_code == 403, response.text
    assert response.headers["content-type"] == "application/problem+json"


def test_a_token_without_roles_claim_is_forbidden(query_api: Api, settings: Settings) -> None:
    response = query_api.get("/bookings", headers=signed(settings, roles=None))

    assert response.status_code == 403, response.text


def test_a_token_without_a_known_role_is_forbidden_on_the_command_api(
    command_api: Api, settings: Settings
) -> None:
    response = command_api.post(
        "/bookings",
        json=booking_body(str(uuid.uuid4())),
        headers={**signed(settings, roles=["admin"]), "Idempotency-Key": "k"},
    )

    assert response.status_code == 403, response.text


def _lifetimes(settings: Settings) -> dict[str, dict[str, Any]]:
    now = int(time.time())
    longest = settings.jwt_max_ttl_seconds
    return {
        "year_3000": {"exp": 32503680000},
        "no_iat": {"iat": None},
        "lifetime_above_the_maximum": {"iat": now, "exp": now + longest + 120},
        "old_iat_far_exp": {"iat": now - 3600, "exp": now + longest},
        "iat_in_the_future": {"iat": now + 3600, "exp": now + 3700},
    }


@pytest.mark.parametrize(
    "case",
    ["year_3000", "no_iat", "lifetime_above_the_maximum", "old_iat_far_exp", "iat_in_the_future"],
)
def test_a_token_living_longer_than_the_maximum_is_refused(
    query_api: Api, settings: Settings, case: str
) -> None:
    response = query_api.get("/bookings", headers=signed(settings, **_lifetimes(settings)[case]))

    assert response.status_code == 401, response.text


def test_a_token_within_the_maximum_lifetime_is_accepted(
    query_api: Api, settings: Settings
) -> None:
    now = int(time.time())
    short = msgspec.structs.replace(settings, jwt_max_ttl_seconds=600)
    with TestClient(build_query_api(short)) as client:
        within = client.get("/bookings", headers=signed(short, iat=now, exp=now + 590))
        beyond = client.get("/bookings", headers=signed(short, iat=now, exp=now + 900))

    assert within.status_code == 200, within.text
    assert beyond.status_code == 401, beyond.text


def test_every_401_says_the_same_and_the_reason_goes_to_the_log_without_the_token(
    query_api: Api, settings: Settings
) -> None:
    now = int(time.time())
    bad = {
        "missing": {},
        "not_bearer": {"Authorization": "Basic dXNlcjpwYXNz"},
        "garbage": {"Authorization": "Bearer not.a.jwt"},
        "expired": signed(settings, iat=now - 600, exp=now - 60),
        "wrong_audience": signed(settings, aud="someone-else"),
        "wrong_issuer": signed(settings, iss="evil"),
        "wrong_key": {"Authorization": f"Bearer {signed_token(settings, key=foreign_key())}"},
        "no_subject": signed(settings, sub=None),
    }
    with capture_logs() as logs:
        answers = {
            name: query_api.get("/bookings", headers=headers) for name, headers in bad.items()
        }

    assert {name: a.status_code for name, a in answers.items()} == dict.fromkeys(bad, 401)
    details = {a.json()["detail"] for a in answers.values()}
    assert details == {"a valid bearer token is required"}
    for answer in answers.values():
        assert answer.json()["field"] == "Authorization"
        assert answer.headers["www-authenticate"].startswith('Bearer realm="flightbook"')
        assert "error_description" not in answer.headers["www-authenticate"]
    assert 'error="invalid_token"' in answers["expired"].headers["www-authenticate"]
    assert "error=" not in answers["missing"].headers["www-authenticate"]
    refused = [line for line in logs if line["event"] == "auth.refused"]
    assert [line["reason"] for line in refused] == [
        "missing",
        "not_bearer",
        "invalid_token",
        "invalid_token",
        "invalid_token",
        "invalid_token",
        "invalid_token",
        "invalid_token",
    ]
    tokens = [h["Authorization"].split(" ", 1)[1] for h in bad.values() if h]
    assert not [t for t in tokens for line in logs if t in repr(line)]
