"""Peak memory of ``flightbook audit export`` over a large log (issue: auditor CLI).

Usage: python bench/export_memory.py [EVENTS]   (default 100000)

Fills the configured database (FLIGHTBOOK_POSTGRES_URL, else the local stack's) with
scheduled flights until it holds EVENTS inventory events, then runs the export as a
child process to a file and reports its peak RSS (ru_maxrss) and speed.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import subprocess
import sys
import tempfile
import time

import psutil

from flightbook.bench.flights import bench_flight
from flightbook.config.settings import Settings, require
from flightbook.eventstore.applications import Inventory
from flightbook.stack.launcher import LocalStack
from flightbook.stack.migrate import migrate_all
from flightbook.stack.servers import KIND_BY_NAME


def main() -> None:
    wanted = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    settings = Settings.from_env()
    states = LocalStack(settings, say=print).up()
    settings = settings.with_urls(**{KIND_BY_NAME[n].setting: s.url for n, s in states.items()})
    migrate_all(settings)
    inventory = Inventory(require(settings.postgres_url, "postgres_url"))
    have = inventory.recorder.max_notification_id() or 0
    departure = dt.datetime(2031, 1, 1, 10, tzinfo=dt.UTC)
    while have < wanted:
        batch = [
            bench_flight(departure, seats=100, price=10000) for _ in range(min(1000, wanted - have))
        ]
        inventory.record(*batch)
        have += len(batch)
        print(f"filled {have}/{wanted}", file=sys.stderr, end="\r")
    inventory.close()
    env = {**os.environ, **settings.to_env()}
    for size in sorted({wanted // 10, wanted}):
        with tempfile.NamedTemporaryFile(suffix=".jsonl") as out:
            started = time.perf_counter()
            child = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "flightbook.cli",
                    "audit",
                    "export",
                    "--context",
                    "inventory",
                    "--to-position",
                    str(size),
                    "--output",
                    out.name,
                ],
                env=env,
                stderr=subprocess.DEVNULL,
            )
            peak = 0
            watched = psutil.Process(child.pid)
            while child.poll() is None:
                with contextlib.suppress(psutil.Error):
                    peak = max(peak, watched.memory_info().rss)
                time.sleep(0.02)
            took = time.perf_counter() - started
            lines = sum(1 for _ in open(out.name))  # noqa: SIM115
        print(
            f"exported {lines} events in {took:.1f}s ({lines / took:,.0f} events/s); "
            f"peak RSS of the export process: {peak / 2**20:.1f} MiB"
        )


if __name__ == "__main__":
    main()
