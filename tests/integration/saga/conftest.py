"""A saga wired to real PostgreSQL, driven step by step by the tests (no threads)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from flightbook.config.settings import Settings
from tests.support.saga import SagaHarness, make_harness
from tests.support.writeside import WriteSide


@pytest.fixture
def harness(settings: Settings, write_side: WriteSide) -> Iterator[SagaHarness]:
    yield from make_harness(settings, write_side)
