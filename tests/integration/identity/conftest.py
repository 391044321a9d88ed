"""The identity API and the two others on one test's servers, with a cheap Argon2id cost."""

from __future__ import annotations

from collections.abc import Iterator

import msgspec
import pytest
from litestar.testing import TestClient

from flightbook.bootstrap import (
    build_command_api,
    build_identity_api,
    build_identity_service,
)
from flightbook.config.settings import Settings
from flightbook.identity.service import IdentityService
from tests.support.api import Api
from tests.support.apps import query_api_on


@pytest.fixture
def id_settings(settings: Settings) -> Settings:
    """Cheap hashes (the cost is a setting), no session cache: a revocation shows at once."""
    return msgspec.structs.replace(
        settings,
        identity_argon2_time_cost=1,
        identity_argon2_memory_kib=8,
        session_cache_seconds=0.0,
    )


@pytest.fixture
def identity_api(id_settings: Settings) -> Iterator[Api]:
    with TestClient(build_identity_api(id_settings)) as client:
        yield client


@pytest.fixture
def identity(id_settings: Settings) -> Iterator[IdentityService]:
    """The use cases on the same servers, for what only an operator's command does."""
    service, close = build_identity_service(id_settings)
    try:
        yield service
    finally:
        close()


@pytest.fixture
def command_api(id_settings: Settings) -> Iterator[Api]:
    with TestClient(build_command_api(id_settings)) as client:
        yield client


@pytest.fixture
def query_api(id_settings: Settings) -> Iterator[Api]:
    with query_api_on(id_settings) as client:
        yield client
