"""Envelope builders and fakes for the projection unit tests (no sockets)."""

from __future__ import annotations

import pytest

from tests.support.projections import Log


@pytest.fixture
def booking_log() -> Log:
    return Log("booking")


@pytest.fixture
def inventory_log() -> Log:
    return Log("inventory")
