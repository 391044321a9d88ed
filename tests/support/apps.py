"""The query API in-process on the test's servers (the read side's clients open beside it)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from litestar.testing import TestClient

from flightbook.bootstrap import build_query_api
from flightbook.config.settings import Settings
from tests.support.api import Api
from tests.support.readside import ServerReadSide


@contextmanager
def query_api_on(settings: Settings) -> Iterator[Api]:
    """A test client of the query API, its read models on ``settings``' servers."""
    side = ServerReadSide(settings)
    try:
        with TestClient(build_query_api(settings)) as client:
            yield client
    finally:
        side.close()
