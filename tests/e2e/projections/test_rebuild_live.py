"""``flightbook projections rebuild bookings`` while bookings keep arriving and readers read."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import pymongo
import pytest

from flightbook.config.settings import Settings
from flightbook.http.tokens import mint_token
from tests.support.pipeline import (
    Pipeline,
    Process,
    book_many,
    fast,
    saga_done,
    schedule,
    wait_for_read_models,
    wait_until,
)
from tests.support.processes import ROOT

pytestmark = pytest.mark.e2e


class Reader(threading.Thread):
    """Reads one booking through the query API, and the way it does: active version first."""

    def __init__(self, settings: Settings, booking_id: str, query_port: int) -> None:
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
        self.http_answers: list[int] = []
        self.url = f"http://127.0.0.1:{query_port}/bookings/{booking_id}"
        self.token = mint_token(settings, subject="andy", roles=["agent"])

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
                self.http_answers.append(self._http_status())
                time.sleep(0.02)
        finally:
            self.client.close()

    def _http_status(self) -> int:
        request = urllib.request.Request(  # noqa: S310 - our loopback query API
            self.url, headers={"Authorization": f"Bearer {self.token}"}
        )
        try:
            with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
                return int(response.status)
        except urllib.error.HTTPError as error:
            return int(error.code)


def _answers(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/ready", timeout=2):
            return True
    except OSError:
        return False


@pytest.mark.timeout(240)
def test_a_rebuild_switches_versions_without_readers_ever_missing_a_booking(
    pipeline: Pipeline,
) -> None:
    settings, write_side, vault, mongo, cache, started, logs = pipeline
    config = fast(settings, saga_workers=4)
    processes = [
        Process(n, config, logs) for n in ("relay", "saga", "bookings", "flights", "query-api")
    ]
    started += processes
    flight = schedule(write_side, seats=5000)
    for process in processes:
        process.start()
    first = book_many(write_side, vault, [flight], 300)
    wait_until(lambda: saga_done(settings, len(first)), 90, "the first bookings settled")
    assert wait_for_read_models(settings, mongo, cache, timeout=60) == []
    query_api = processes[-1]
    wait_until(lambda: _answers(query_api.port), 30, "the query API answers")
    reader = Reader(settings, str(first[0]), query_api.port)
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
    assert set(reader.http_answers) == {200}  # the query API answered throughout
    assert reader.versions == [1, 2]
    versions = mongo["read_model_versions"].find_one({"_id": "bookings"})
    assert versions is not None
    assert (versions["active"], versions["building"]) == (2, None)
    assert "bookings_v1" not in mongo.list_collection_names()
    assert differences == [], "\n".join(str(d) for d in differences[:20])
    assert mongo["bookings_v2"].count_documents({}) == total
