"""Seeding MongoDB and Redis as the projection workers would, and the query API on them."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
import uvicorn
from litestar.testing import TestClient
from prometheus_client import CollectorRegistry

from flightbook.bootstrap import build_query_api
from flightbook.config.settings import Settings
from tests.support.api import Api
from tests.support.processes import free_port
from tests.support.readside import ServerReadSide
from tests.support.system import eventually


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


@pytest.fixture
def live_url(settings: Settings, servers: ServerReadSide) -> Iterator[str]:
    """The real query API served by uvicorn in a thread (a test client would wait for the
    end of a stream before it hands over its first byte, and serves no real WebSocket)."""
    port = free_port()
    app = build_query_api(settings, registry=CollectorRegistry())
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    eventually(lambda: server.started, bool, within=30, what="query API listening")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)
