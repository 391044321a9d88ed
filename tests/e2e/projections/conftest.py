"""Fixtures of the projection fault tests: the pipeline's processes, logs and clients.

Their helpers (many bookings fast, every message delivered twice, waiting until the read
models equal a fresh replay) are in ``tests/support/pipeline.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pymongo
import pytest
import redis
from psycopg_pool import ConnectionPool

from flightbook.config.settings import Settings
from flightbook.eventstore.pii import PersonalDataVault, build_vault
from tests.support.pipeline import Pipeline, Process
from tests.support.writeside import WriteSide


@pytest.fixture
def logs(tmp_path: Path) -> Path:
    folder = tmp_path / "logs"
    folder.mkdir()
    return folder


@pytest.fixture
def started() -> Iterator[list[Process]]:
    """Register processes here; each is stopped (by pid) after the test."""
    running: list[Process] = []
    yield running
    for process in running:  # all at once: each takes a few seconds to leave its group
        if process.running():
            assert process.process is not None
            process.process.terminate()
    for process in running:
        process.stop()


@pytest.fixture
def vault(settings: Settings) -> Iterator[PersonalDataVault]:
    assert settings.postgres_url is not None
    with ConnectionPool(settings.postgres_url, min_size=1, max_size=2) as pool:
        yield build_vault(settings, pool)


@pytest.fixture
def pipeline(
    settings: Settings,
    write_side: WriteSide,
    vault: PersonalDataVault,
    mongo: pymongo.database.Database[dict[str, object]],
    cache: redis.Redis,
    started: list[Process],
    logs: Path,
) -> Pipeline:
    """The test's settings, write side, read-model clients, processes and log folder."""
    return Pipeline(settings, write_side, vault, mongo, cache, started, logs)
