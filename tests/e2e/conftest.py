"""Processes of the system started for real (their composition roots), stopped by pid."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.processes import PrivateBroker, SystemProcess


@pytest.fixture
def processes() -> Iterator[list[SystemProcess]]:
    """Register started processes here; each is stopped after the test."""
    started: list[SystemProcess] = []
    yield started
    for process in started:
        process.stop()


@pytest.fixture
def private_broker(tmp_path: Path) -> Iterator[PrivateBroker]:
    broker = PrivateBroker(tmp_path / "kafka")
    broker.start()
    yield broker
    broker.kill()
