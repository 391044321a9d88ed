"""``flightbook projections rebuild bookings`` while bookings keep arriving and readers read."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pymongo
import pytest
import redis

from flightbook.eventstore.pii import PersonalDataVault
from flightbook.settings import Settings

from ...conftest import WriteSide
from ..conftest import ROOT
from .conftest import (
    Process,
    book_many,
    fast,
    saga_done,
    schedule,
    wait_for_read_models,
    wait_until,
)

pytestmark = pytest.mark.e2e


class Reader(threading.Thread):
    """Reads one booking the way the query side does: active version, then that collection."""

    def __init__(self, settings: Settings, booking_id: str) -> None:
        super().__init__(name="reader", daemon=True)
        self.client: pymongo.MongoClient[dict[str, object]] = pymongo.MongoClient(
            settings.mongo_url, tz_aware=True
        )
        self.database = self.client[settings.mongo_database]
        self.booking_id = booking_id
        self.stop = threading.Event()
        self.reads = 0
        self.misses: list[int] = []
        self.versions: list[int] = []

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                found = self.database["read_model_versions"].find_one({"_id": "bookings"})
                active = int(found["active"]) if found else 1  # type: ignore[call-overload]
                doc = self.database[f"bookings_v{active}"].find_one({"_id": self.booking_id})
                self.reads += 1
                if doc is None:
                    self.misses.append(active)
                if not self.versions or self.versions[-1] != active:
                    self.versions.append(active)
                time.sleep(0.02)
        finally:
            self.client.close()


@pytest.mark.timeout(240)
def test_a_rebuild_switches_versions_without_readers_ever_missing_a_booking(
    settings: Settings,
    write_side: WriteSide,
    vault: PersonalDataVault,
    mongo: pymongo.database.Database[dict[str, object]],
    cache: redis.Redis,
    started: list[Process],
    logs: Path,
) -> None:
    config = fast(settings, saga_workers=4)
    processes = [Process(n, config, logs) for n in ("relay", "saga", "bookings", "flights")]
    started += processes
    flight = schedule(write_side, seats=5000)
    for process in processes:
        process.start()
    first = book_many(write_side, vault, [flight], 300)
    wait_until(lambda: saga_done(settings, len(first)), 90, "the first bookings settled")
    assert wait_for_read_models(settings, mongo, cache, timeout=60) == []
    reader = Reader(settings, str(first[0]))
    reader.start()
    writing = threading.Event()
    made: list[int] = []

    def keep_booking() -> None:
        while not writing.is_set():
            book_many(write_side, vault, [flight], 5, start=1000 + 5 * len(made), batch=5)
            made.append(5)
            time.sleep(0.25)

    writer = threading.Thread(target=keep_booking, name="writer", daemon=True)
    writer.start()
    time.sleep(1.0)
    rebuild = subprocess.run(
        [
            sys.executable,
            "-m",
            "flightbook.cli",
            "projections",
            "rebuild",
            "bookings",
            "--grace-seconds",
            "3",
        ],
        env={"PATH": "/usr/bin:/bin", **settings.to_env()},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=150,
        check=False,
    )
    time.sleep(1.0)
    writing.set()
    writer.join(30)
    reader.stop.set()
    reader.join(10)
    total = len(first) + sum(made)
    wait_until(lambda: saga_done(settings, total), 90, "every booking settled")
    differences = wait_for_read_models(settings, mongo, cache, timeout=60)

    assert rebuild.returncode == 0, rebuild.stderr
    assert "bookings: version 2 is active" in rebuild.stdout
    assert "bookings v2: booking" in rebuild.stderr  # progress lines
    assert sum(made) > 0
    assert reader.reads > 100
    assert reader.misses == []
    assert reader.versions == [1, 2]
    versions = mongo["read_model_versions"].find_one({"_id": "bookings"})
    assert versions is not None
    assert (versions["active"], versions["building"]) == (2, None)
    assert "bookings_v1" not in mongo.list_collection_names()
    assert differences == [], "\n".join(str(d) for d in differences[:20])
    assert mongo["bookings_v2"].count_documents({}) == total
