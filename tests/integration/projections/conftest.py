"""A realistic history (the saga driven in-process) and the projection services on it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from psycopg_pool import ConnectionPool

from flightbook.config.settings import Settings
from flightbook.projections.services import ProjectionServices, open_services
from tests.support.history import History, build_history
from tests.support.saga import SagaHarness, make_harness
from tests.support.writeside import WriteSide


@pytest.fixture
def harness(settings: Settings, write_side: WriteSide) -> Iterator[SagaHarness]:
    yield from make_harness(settings, write_side)


@pytest.fixture
def services(settings: Settings) -> Iterator[ProjectionServices]:
    with open_services(settings) as opened:
        opened.progress.ensure_indexes()
        yield opened
        opened.mongo.drop_database(settings.mongo_database)
        for key in opened.redis.scan_iter(match=settings.redis_prefix + "*"):
            opened.redis.delete(key)


@pytest.fixture
def history(harness: SagaHarness, services: ProjectionServices) -> History:
    return build_history(harness, services.vault)


@pytest.fixture
def pool(settings: Settings) -> Iterator[ConnectionPool]:
    assert settings.postgres_url is not None
    with ConnectionPool(settings.postgres_url, min_size=1, max_size=2) as opened:
        yield opened
