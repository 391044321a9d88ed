"""The pipeline as real processes for the projection tests: relay, saga, both workers.

Helpers to write many bookings fast (batched ``record()``, passengers really sealed), to
deliver every Kafka message twice, to run a private broker that can die and come back
empty on the same port, and to wait until the read models equal a fresh replay.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from psycopg_pool import ConnectionPool

from flightbook.config.settings import Settings
from flightbook.eventstore.pii import PersonalDataVault
from tests.support.pipeline import Process


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
        yield PersonalDataVault.in_postgres(pool)
