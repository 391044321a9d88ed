"""Seeding MongoDB and Redis as the projection workers would, and the query API on them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from litestar.testing import TestClient
from prometheus_client import CollectorRegistry

from flightbook.bootstrap import build_query_api
from flightbook.config.settings import Settings
from tests.support.api import Api
from tests.support.readside import ServerReadSide


@pytest.fixture
def servers(settings: Settings) -> Iterator[ServerReadSide]:
    """The test's MongoDB database and Redis keys, removed afterwards."""
    side = ServerReadSide(settings)
    yield side
    side.close()


@pytest.fixture
def registry() -> CollectorRegistry:
    """Where the API's metrics go (its ops port serves them: ``tests.support.api.ops_metrics``)."""
    return CollectorRegistry()


@pytest.fixture
def query_api(
    settings: Settings, servers: ServerReadSide, registry: CollectorRegistry
) -> Iterator[Api]:
    """A client of the real query API (lifespan run: clients opened, then closed)."""
    with TestClient(build_query_api(settings, registry=registry)) as client:
        yield client
