"""Speed and CPU of ``flightbook audit verify`` over a large log (issue 13, ADR 0028).

Usage:
    python bench/verify_backlog.py fill [FLIGHTS] [BOOKINGS]   (default 100000, 20000)
    python bench/verify_backlog.py run [--profile FILE]
    python bench/verify_backlog.py down

``fill`` starts a stack of its own (kept running under ``.flightbook/verify-profile``),
stores FLIGHTS scheduled flights and BOOKINGS requested bookings on a thousand of them,
and builds the read models with ``projections rebuild``, so that a verify has everything
to compare. ``run`` times ``audit verify`` as a child process and prints its events/s
and its CPU-ms per 1,000 events (user + system of the child, from ``wait4``), and the
machine's load; ``--profile FILE`` runs it under cProfile into FILE instead. ``down``
stops the stack.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psycopg
from psycopg import sql

from flightbook.bench.flights import bench_flight
from flightbook.bench.runner import _fill_backlog
from flightbook.config.settings import Settings, require
from flightbook.domain.booking import Booking
from flightbook.eventstore.applications import Bookings
from flightbook.eventstore.contexts import BOOKING, INVENTORY
from flightbook.stack.launcher import LocalStack, settings_urls
from flightbook.stack.migrate import migrate_all

STATE = str(Path(".flightbook/verify-profile").resolve())


def _settings() -> tuple[LocalStack, Settings]:
    base = Settings.from_env(
        {
            **{k: v for k, v in os.environ.items() if k.startswith("FLIGHTBOOK_LOG")},
            "FLIGHTBOOK_STATE_DIR": STATE,
            "FLIGHTBOOK_STACK_POSTGRES_PORT": "0",
            "FLIGHTBOOK_STACK_REDIS_PORT": "0",
            "FLIGHTBOOK_STACK_KAFKA_PORT": "0",
            "FLIGHTBOOK_STACK_MONGO_PORT": "0",
        }
    )
    stack = LocalStack(base, say=print)
    return stack, base.with_urls(**settings_urls(stack.up()))


def _events(settings: Settings) -> int:
    with psycopg.connect(require(settings.postgres_url, "postgres_url")) as conn:
        query = sql.SQL("SELECT (SELECT count(*) FROM {}) + (SELECT count(*) FROM {})")
        row = conn.execute(query.format(BOOKING.events, INVENTORY.events)).fetchone()
    return int(row[0]) if row else 0


def _fill(settings: Settings, flights: int, bookings: int) -> None:
    migrate_all(settings)
    _fill_backlog(settings, flights)
    departure = dt.datetime(2031, 8, 1, 10, tzinfo=dt.UTC)
    targets = [bench_flight(departure, seats=1000) for _ in range(1000)]
    from flightbook.eventstore.applications import Inventory

    inventory = Inventory(settings)
    inventory.record(*targets)
    inventory.close()
    app = Bookings(settings)
    try:
        for start in range(0, bookings, 1000):
            app.record(
                *(
                    Booking.request(
                        booking_id=uuid.uuid4(),
                        customer_id=f"c{(start + i) % 500}",
                        flight_id=targets[(start + i) % len(targets)].id,
                        fare="Y",
                        passengers="sealed",
                        passenger_count=1,
                        price_amount=100,
                        currency="EUR",
                        refundable=False,
                        payment_token="tok_ok",  # noqa: S106 - a test card token
                    )
                    for i in range(min(1000, bookings - start))
                )
            )
    finally:
        app.close()
    env = {**os.environ, **settings.to_env()}
    for read_model in ("flights", "bookings", "analytics", "redis"):
        subprocess.run(
            [sys.executable, "-m", "flightbook.cli", "projections", "rebuild", read_model],
            env=env,
            check=True,
            capture_output=True,
        )
    print(f"{_events(settings)} events stored, read models rebuilt")


def _run(settings: Settings, profile: str | None) -> None:
    events = _events(settings)
    env = {**os.environ, **settings.to_env()}
    argv = [sys.executable]
    argv += ["-m", "cProfile", "-o", profile] if profile else []
    argv += ["-m", "flightbook.cli", "audit", "verify"]
    started = time.perf_counter()
    child = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = child.communicate()
    took = time.perf_counter() - started
    usage = child.returncode  # set by communicate; CPU times from the children's rusage
    import resource

    cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_s = cpu.ru_utime + cpu.ru_stime
    print(err.decode().strip().splitlines()[-1] if err else "", out.decode()[-300:])
    print(
        f"audit verify: exit {usage} over {events} events in {took:.1f} s: "
        f"{events / took:.0f} events/s, {cpu_s * 1000 / (events / 1000):.1f} CPU-ms per 1,000 "
        f"events, peak RSS {cpu.ru_maxrss / 1024:.0f} MiB; "
        f"load {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f}"
    )


def main() -> None:
    verb = sys.argv[1] if len(sys.argv) > 1 else "run"
    stack, settings = _settings()
    if verb == "fill":
        flights = int(sys.argv[2]) if len(sys.argv) > 2 else 100_000
        bookings = int(sys.argv[3]) if len(sys.argv) > 3 else 20_000
        _fill(settings, flights, bookings)
    elif verb == "run":
        profile = sys.argv[sys.argv.index("--profile") + 1] if "--profile" in sys.argv else None
        _run(settings, profile)
    elif verb == "down":
        stack.down()


if __name__ == "__main__":
    main()
