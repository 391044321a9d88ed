"""How long the live flights worker takes to apply a backlog, and `audit verify` to check it.

Usage: python bench/project_backlog.py [FLIGHTS] [--profile]

Starts its own stack, the relay and both projection workers, stores FLIGHTS scheduled
flights (one event each) at once, and times until the flights worker's low watermark
reaches the head; then stops the processes and times `audit verify` over the result
(`--profile`: under cProfile, the top 30 functions printed).
"""

from __future__ import annotations

import cProfile
import pstats
import sys
import time

import psycopg
import pymongo

from flightbook.bench.runner import _fill_backlog
from flightbook.bench.system import SystemUnderTest, scratch_settings
from flightbook.contracts.readmodels import CHECKPOINTS, checkpoint_id
from flightbook.projections.tools.cli import verify_read_models

STATE = ".flightbook/backlog-profile"


def main() -> None:
    flights = int(sys.argv[1]) if len(sys.argv) > 1 else 30_000
    profile = "--profile" in sys.argv
    settings = scratch_settings(STATE)
    system = SystemUnderTest(settings, say=print)
    try:
        system.start_servers()
        s = system.settings
        system.start("relay", "flights-projection", "bookings-projection")
        started = time.perf_counter()
        _fill_backlog(s, flights)
        print(f"stored {flights} flights in {time.perf_counter() - started:.1f} s")
        with psycopg.connect(str(s.postgres_url)) as conn:
            row = conn.execute("SELECT max(notification_id) FROM inventory.inventory_events")
            head = int((row.fetchone() or (0,))[0] or 0)
        client: pymongo.MongoClient[dict[str, object]] = pymongo.MongoClient(s.mongo_url)
        with client:
            checkpoints = client[s.mongo_database][CHECKPOINTS]
            while True:
                found = checkpoints.find_one({"_id": checkpoint_id("flights", "inventory")})
                low = found.get("low_watermark") if found else 0
                if isinstance(low, int) and low >= head:
                    break
                time.sleep(1.0)
        took = time.perf_counter() - started
        print(f"projected {flights} flights in {took:.1f} s ({flights / took:.0f} events/s)")
        system.stop("relay", "flights-projection", "bookings-projection")
        profiler = cProfile.Profile()
        started = time.perf_counter()
        if profile:
            profiler.enable()
        code = verify_read_models(s, postgres_url=str(s.postgres_url))
        if profile:
            profiler.disable()
        took = time.perf_counter() - started
        print(f"audit verify: exit {code} in {took:.1f} s ({head / took:.0f} events/s)")
        if profile:
            pstats.Stats(profiler).sort_stats("cumulative").print_stats(30)
    finally:
        system.close()


if __name__ == "__main__":
    main()
