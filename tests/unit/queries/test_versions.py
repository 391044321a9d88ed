"""The active read-model versions: one read serves every request that finds them stale."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, cast

import pytest

from flightbook.queries.mongo import MongoVersions

pytestmark = pytest.mark.unit


class _Versions:
    """``read_model_versions`` answering slowly, counting its reads (pure logic: the reads'
    shape is checked on real MongoDB by the store contract tests)."""

    def __init__(self) -> None:
        self.reads = 0
        self.release = asyncio.Event()

    async def _docs(self) -> AsyncIterator[dict[str, Any]]:
        self.reads += 1
        await self.release.wait()
        yield {"_id": "bookings", "active": 2}

    def find(self, *_args: object) -> AsyncIterator[dict[str, Any]]:
        return self._docs()


def test_requests_that_find_the_versions_stale_together_share_one_read() -> None:
    async def scenario() -> tuple[list[int], int]:
        collection = _Versions()
        versions = MongoVersions(cast("Any", {"read_model_versions": collection}), ttl=1.0)
        calls = [asyncio.ensure_future(versions.active_version("bookings")) for _ in range(20)]
        await asyncio.sleep(0)  # every call has found them stale and waits
        collection.release.set()
        return list(await asyncio.gather(*calls)), collection.reads

    found, reads = asyncio.run(scenario())

    assert found == [2] * 20
    assert reads == 1


def test_a_request_that_goes_away_does_not_cancel_the_read_the_others_wait_for() -> None:
    async def scenario() -> tuple[int, int]:
        collection = _Versions()
        versions = MongoVersions(cast("Any", {"read_model_versions": collection}), ttl=1.0)
        first = asyncio.ensure_future(versions.active_version("bookings"))
        await asyncio.sleep(0)
        second = asyncio.ensure_future(versions.active_version("bookings"))
        await asyncio.sleep(0)
        first.cancel()
        collection.release.set()
        return await second, collection.reads

    assert asyncio.run(scenario()) == (2, 1)
