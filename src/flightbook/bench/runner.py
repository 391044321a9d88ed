"""``flightbook bench``: one run measures the raw limits and the pipeline, side by side.

Output: a table on the terminal (progress on stderr while it runs) and a JSON file with
every figure, the machine's description, and each throughput as a ratio to its raw limit.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil
import psycopg
from psycopg import sql

from flightbook.bench import raw
from flightbook.bench.capacity import DEFAULT_RATES
from flightbook.bench.capacity_phase import (
    CAPACITY_PHASES,
    CapacityPlan,
    capacity_phase,
    render_steps,
)
from flightbook.bench.cpu import LOADGEN, CpuMeter, server_pids
from flightbook.bench.identity import IdentityLoad
from flightbook.bench.load import BookingLoad, ReadLoad, schedule_flights
from flightbook.bench.measure import RssWatcher, latency_ms, percentile
from flightbook.bench.system import SystemUnderTest
from flightbook.config.settings import require
from flightbook.contracts.readmodels import CHECKPOINTS, MARKERS, checkpoint_id
from flightbook.eventstore.contexts import BOOKING, INVENTORY

if TYPE_CHECKING:
    from collections.abc import Callable

    from flightbook.config.settings import Settings

__all__ = ("PHASES", "BenchOptions", "run_bench")

PHASES = (
    "bookings",
    "hot_flight",
    "read_path",
    "capacity",
    "hot_capacity",
    "identity",
    "relay",
    "replay",
)
"""The load phases in the order they run; the raw limits are always measured first.
``read_path`` reads the bookings that ``bookings`` made, so it needs that phase too.
``bookings``, ``hot_flight`` and ``read_path`` are closed loop (``clients`` clients, each
waiting for its answer); ``capacity`` and ``hot_capacity`` are open loop, stepped through
``rates`` (:mod:`flightbook.bench.capacity_phase`)."""


@dataclass(frozen=True)
class BenchOptions:
    seconds: float = 30.0  # each load phase
    clients: int = 32
    raw_seconds: float = 3.0
    backlog: int = 100_000  # events for the relay / rebuild / verify phases
    output: Path = Path("bench/results")
    quick: bool = False
    phases: tuple[str, ...] = PHASES
    rates: tuple[float, ...] = DEFAULT_RATES  # bookings/s of each capacity step
    drain_seconds: float = 10.0  # the most a capacity step waits for its stragglers
    settle_seconds: float = 60.0  # ... and a phase for the backlog of a step past capacity
    wait: str = "push"  # how clients learn their booking's outcome (bench.outcomes.WAYS)

    @classmethod
    def quick_run(cls, output: Path) -> BenchOptions:
        return cls(
            seconds=6.0,
            clients=8,
            raw_seconds=1.0,
            backlog=3_000,
            output=output,
            quick=True,
            rates=(5.0, 10.0),
            drain_seconds=5.0,
            settle_seconds=10.0,
        )


def _machine() -> dict[str, Any]:
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "cpu_model": _cpu_model(),
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _latency(values: list[float]) -> dict[str, float]:
    return latency_ms(values)


def _metric(url: str, name: str) -> float:
    import urllib.request

    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as response:  # noqa: S310
        text = response.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name) and not line.startswith("#")
    )


def run_bench(
    settings: Settings, options: BenchOptions, *, say: Callable[[str], None]
) -> dict[str, Any]:
    """Run every phase; return the figures (also written as JSON under ``options.output``)."""
    results: dict[str, Any] = {
        "started_at": dt.datetime.now(dt.UTC).isoformat(),
        "machine": _machine(),
        "options": {
            "seconds": options.seconds,
            "clients": options.clients,
            "backlog": options.backlog,
            "quick": options.quick,
            "phases": list(options.phases),
            "rates": list(options.rates),
        },
    }
    system = SystemUnderTest(settings, say=say)
    try:
        say("starting the servers ...")
        system.start_servers()
        s = system.settings
        postgres = require(s.postgres_url, "postgres_url")
        say("raw limits ...")
        results["raw"] = {
            "postgres_insert_per_s_1_client": raw.postgres_insert_rate(
                postgres, 1, options.raw_seconds
            ),
            "postgres_insert_per_s_8_clients": raw.postgres_insert_rate(
                postgres, 8, options.raw_seconds
            ),
            "event_store_save_per_s_1_thread": raw.event_store_save_rate(
                postgres, 1, options.raw_seconds
            ),
            "event_store_save_per_s_8_threads": raw.event_store_save_rate(
                postgres, 8, options.raw_seconds
            ),
            "redis_get_per_s": raw.redis_get_rate(
                require(s.redis_url, "redis_url"), options.raw_seconds
            ),
            "broker_produce_per_s_500b": raw.broker_produce_rate(
                require(s.kafka_bootstrap, "kafka_bootstrap"), 20_000 if options.quick else 200_000
            ),
        }
        hello, hello_cpu = raw.http_hello_rate(options.raw_seconds * 2)
        results["raw"]["http_hello_req_per_s"] = hello
        results["raw"]["http_hello_loadgen_cpu_percent"] = hello_cpu
        say("starting every process ...")
        system.start()
        pids = {name: p.pid for name, p in system.processes.items()}
        with RssWatcher(pids) as rss:
            _load_phases(system, options, results, say)
        results["peak_rss_mib"] = {name: round(peak / 2**20, 1) for name, peak in rss.peaks.items()}
    finally:
        system.close()
    results["ratios"] = _ratios(results)
    options.output.mkdir(parents=True, exist_ok=True)
    path = options.output / f"bench-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%SZ}.json"
    path.write_text(json.dumps(results, indent=2, default=str))
    results["json_file"] = str(path)
    return results


def _load_phases(
    system: SystemUnderTest,
    options: BenchOptions,
    results: dict[str, Any],
    say: Callable[[str], None],
) -> None:
    command_url, query_url = system.url("command-api"), system.url("query-api")
    phases = options.phases
    if "bookings" in phases:
        results["bookings"] = _booking_phase(
            system, options, command_url, query_url, flights=8, say=say, name="booking throughput"
        )
    if "hot_flight" in phases:
        results["hot_flight"] = _booking_phase(
            system, options, command_url, query_url, flights=1, say=say, name="hot flight"
        )
        results["hot_flight"].pop("_booking_ids")
    booking_ids = results.get("bookings", {}).pop("_booking_ids", [])
    if "read_path" in phases and booking_ids:
        say("read path ...")
        read = ReadLoad(
            settings=system.settings,
            query_url=query_url,
            booking_ids=booking_ids,
            clients=options.clients,
            seconds=options.seconds,
        ).run()
        results["read_path"] = {
            "req_per_s": read.completed / read.seconds,
            "failed": read.failed,
            "search": _latency(read.extra["search"]),
            "get_booking": _latency(read.extra["booking"]),
            "loadgen_cpu_percent": read.loadgen_cpu_percent,
        }
    if "bookings" in phases:
        results["projection_lag"] = _projection_lag(system.settings)
    plan = CapacityPlan(
        rates=options.rates,
        seconds=options.seconds,
        drain_seconds=options.drain_seconds,
        settle_seconds=options.settle_seconds,
        wait=options.wait,
    )
    for name in CAPACITY_PHASES:
        if name in phases:
            results[name] = capacity_phase(system, plan, name=name, say=say)
    if "bookings" not in phases and any(name in phases for name in CAPACITY_PHASES):
        # the open-loop steps' own lag (commit -> read model), at the rates they offered
        results["projection_lag"] = _projection_lag(system.settings)
    if "identity" in phases:
        results["identity"] = _identity_phase(system, options, say)
    if "relay" in phases:
        results["relay"] = _relay_phase(system, options, say)
    if "replay" in phases:
        results["replay"] = _replay_phase(system, options, say)


def _identity_phase(
    system: SystemUnderTest, options: BenchOptions, say: Callable[[str], None]
) -> dict[str, Any]:
    """Logins and refreshes at the configured Argon2id cost; the session check's price.

    CPU is the identity API's (and the query API's, for the reads) per request, from the
    process's own CPU times, so the figure holds on a noisy machine.
    """
    s = system.settings
    load = IdentityLoad(
        settings=s,
        identity_url=system.url("identity-api"),
        query_url=system.url("query-api"),
        clients=options.clients,
        seconds=options.seconds,
    )
    identity = psutil.Process(system.processes["identity-api"].pid)
    query = psutil.Process(system.processes["query-api"].pid)
    say(f"identity: {options.clients} accounts register ...")
    registered = load.register()
    figures: dict[str, Any] = {
        "argon2_time_cost": s.identity_argon2_time_cost,
        "argon2_memory_kib": s.identity_argon2_memory_kib,
        "registered": registered.completed,
    }
    for name, run, process in (
        ("login", load.logins, identity),
        ("refresh", load.refreshes, identity),
        ("read_with_session", lambda: load.reads(sessions=True), query),
        ("read_sessionless", lambda: load.reads(sessions=False), query),
    ):
        say(f"identity: {name.replace('_', ' ')} for {options.seconds:.0f}s ...")
        before = _cpu_seconds(process)
        result = run()
        cpu = _cpu_seconds(process) - before
        figures[name] = {
            "req_per_s": result.completed / result.seconds if result.seconds else 0.0,
            "failed": result.failed,
            "cpu_ms_per_request": round(cpu * 1000 / result.completed, 3)
            if result.completed
            else 0.0,
            **_latency(result.latencies),
        }
    with_session = figures["read_with_session"]["cpu_ms_per_request"]
    sessionless = figures["read_sessionless"]["cpu_ms_per_request"]
    figures["session_check_cpu_ms_per_request"] = round(with_session - sessionless, 3)
    return figures


def _cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


def _booking_phase(
    system: SystemUnderTest,
    options: BenchOptions,
    command_url: str,
    query_url: str,
    *,
    flights: int,
    say: Callable[[str], None],
    name: str,
) -> dict[str, Any]:
    say(f"{name}: {options.clients} clients for {options.seconds:.0f}s ...")
    s = system.settings
    flight_ids = schedule_flights(command_url, s, flights, seats=10_000)
    saga_url = system.url("saga")
    retries_before = _metric(saga_url, "flightbook_saga_conflict_retries_total")
    meter = _telling_meter(system)
    cpu = meter.snapshot()
    load = BookingLoad(
        settings=s,
        command_url=command_url,
        query_url=query_url,
        flights=flight_ids,
        clients=options.clients,
        seconds=options.seconds,
        wait=options.wait,
    ).run()
    spent = meter.snapshot()
    retries = _metric(saga_url, "flightbook_saga_conflict_retries_total") - retries_before
    return {
        "wait": options.wait,
        "telling_cpu_ms_per_booking": _per_booking(spent, cpu, load.completed),
        "confirmed_per_s": load.completed / load.seconds,
        "confirmed": load.completed,
        "failed": load.failed,
        "command_latency": _latency(load.latencies),
        "end_to_end_latency": _latency(load.end_to_end),
        "concurrency_retries": retries,
        "loadgen_cpu_percent": load.loadgen_cpu_percent,
        "_booking_ids": load.booking_ids,
    }


def _telling_meter(system: SystemUnderTest) -> CpuMeter:
    """CPU of the processes that tell clients their outcome: the query API and MongoDB.

    MongoDB's also includes what the projection workers write there; the capacity phases,
    whose clients may not wait at all, tell the two apart.
    """
    mongo = server_pids(system.settings, system.server_pids).get("mongo")
    pids = {"query-api": system.processes["query-api"].pid}
    if mongo is not None:
        pids["mongo"] = mongo
    return CpuMeter(pids)


def _per_booking(
    spent: dict[str, float], before: dict[str, float], bookings: int
) -> dict[str, float | None]:
    """CPU ms per booking of each of the meter's groups, and of the two together."""
    names = [name for name in before if name in spent and name != LOADGEN]
    each: dict[str, float | None] = {
        name: round((spent[name] - before[name]) * 1000 / bookings, 3) if bookings else None
        for name in names
    }
    total = sum(spent[name] - before[name] for name in names)
    each["total"] = round(total * 1000 / bookings, 3) if bookings else None
    return each


def _projection_lag(settings: Settings) -> dict[str, float]:
    """Commit in PostgreSQL → visible in the bookings read model, from the workers' markers."""
    import pymongo

    with psycopg.connect(require(settings.postgres_url, "postgres_url")) as conn:
        query = sql.SQL(
            "SELECT notification_id, convert_from(state, 'UTF8')::jsonb -> 'timestamp' "
            "->> '_data_' FROM {}"
        ).format(BOOKING.events)
        committed = {
            int(row[0]): dt.datetime.fromisoformat(str(row[1])) for row in conn.execute(query)
        }
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(
        settings.mongo_url, tz_aware=True
    )
    with client:
        markers = client[settings.mongo_database][MARKERS].find(
            {"_id": {"$regex": "^" + checkpoint_id("bookings", BOOKING.name) + ":"}}
        )
        lags = []
        for marker in markers:
            position = int(str(marker["_id"]).rsplit(":", 1)[1])
            if position in committed and isinstance(marker.get("at"), dt.datetime):
                lags.append((marker["at"] - committed[position]).total_seconds())
    return {
        "events": len(lags),
        "p50_ms": round(percentile(lags, 50) * 1000, 1),
        "p99_ms": round(percentile(lags, 99) * 1000, 1),
        "max_ms": round(max(lags, default=0.0) * 1000, 1),
    }


def _fill_backlog(settings: Settings, count: int) -> None:
    from flightbook.bench.flights import bench_flight
    from flightbook.eventstore.applications import Inventory

    app = Inventory(settings)
    departure = dt.datetime(2031, 7, 1, 10, tzinfo=dt.UTC)
    try:
        for start in range(0, count, 1000):
            app.record(
                *(
                    bench_flight(departure, number="FB9", route=("CDG", "FRA"), hours=1)
                    for _ in range(min(1000, count - start))
                )
            )
    finally:
        app.close()


def _relay_phase(
    system: SystemUnderTest, options: BenchOptions, say: Callable[[str], None]
) -> dict[str, float]:
    say(f"relay: backlog of {options.backlog} events ...")
    s = system.settings
    postgres = require(s.postgres_url, "postgres_url")
    system.stop("relay")
    _fill_backlog(s, options.backlog)
    with psycopg.connect(postgres) as conn:
        query = sql.SQL("SELECT max(notification_id) FROM {}").format(INVENTORY.events)
        row = conn.execute(query).fetchone()
    head = int(row[0]) if row and row[0] else 0
    worker = psutil.Process(system.processes["flights-projection"].pid)
    worker_cpu = _cpu_seconds(worker)
    started = time.perf_counter()
    system.start("relay")
    while True:
        with psycopg.connect(postgres) as conn:
            done = conn.execute(
                "SELECT position FROM relay.checkpoints WHERE context = 'inventory'"
            ).fetchone()
        if done and int(done[0]) >= head:
            break
        time.sleep(0.2)
    took = time.perf_counter() - started
    say("waiting for the flights worker to apply the backlog ...")
    _wait_projected(s, "flights", "inventory", head)
    projected = time.perf_counter() - started
    worker_cpu = _cpu_seconds(worker) - worker_cpu
    return {
        "events": options.backlog,
        "seconds": round(took, 2),
        "events_per_s": options.backlog / took,
        "projected_seconds": round(projected, 2),
        "projected_events_per_s": options.backlog / projected,
        "projection_worker_cpu_ms_per_1000_events": round(worker_cpu * 1e6 / options.backlog, 1),
    }


def _wait_projected(
    settings: Settings, read_model: str, context: str, head: int, timeout: float = 1800.0
) -> None:
    """Until the worker's low watermark reaches ``head``: the read model has every event.

    The rebuild and verify phases then start from a settled system (a verify while the
    live worker is still applying the backlog finds the read models behind, rightly).
    """
    import pymongo

    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(settings.mongo_url)
    deadline = time.monotonic() + timeout
    with client:
        checkpoints = client[settings.mongo_database][CHECKPOINTS]
        while time.monotonic() < deadline:
            found = checkpoints.find_one({"_id": checkpoint_id(read_model, context)}) or {}
            if int(found.get("low_watermark") or 0) >= head:
                return
            time.sleep(0.2)
    raise RuntimeError(f"the {read_model} worker did not reach position {head} in {timeout} s")


def _replay_phase(
    system: SystemUnderTest, options: BenchOptions, say: Callable[[str], None]
) -> dict[str, float]:
    env = {**os.environ, **system.settings.to_env()}
    figures: dict[str, float] = {}
    with psycopg.connect(str(system.settings.postgres_url)) as conn:
        query = sql.SQL("SELECT (SELECT count(*) FROM {}) + (SELECT count(*) FROM {})")
        row = conn.execute(query.format(BOOKING.events, INVENTORY.events)).fetchone()
    events = int(row[0]) if row else 0
    for name, argv in (
        ("rebuild_flights", ["projections", "rebuild", "flights"]),
        ("rebuild_bookings", ["projections", "rebuild", "bookings"]),
        ("audit_verify", ["audit", "verify"]),
    ):
        say(f"{' '.join(argv)} over {events} events ...")
        cpu = _children_cpu_seconds()
        started = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "flightbook.cli", *argv],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        took = time.perf_counter() - started
        cpu = _children_cpu_seconds() - cpu
        figures[f"{name}_seconds"] = round(took, 2)
        figures[f"{name}_cpu_ms_per_1000_events"] = round(cpu * 1e6 / events, 1) if events else 0.0
        figures[f"{name}_events_per_s"] = events / took if done.returncode == 0 else 0.0
        figures[f"{name}_exit_code"] = done.returncode
        if done.returncode != 0:  # what went wrong, for the JSON file
            say(f"{' '.join(argv)} failed: {(done.stdout + done.stderr).strip()[-500:]}")
    figures["events"] = events
    return figures


def _children_cpu_seconds() -> float:
    """CPU of the finished child processes (the CLI runs), from the OS's own accounting."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _ratios(results: dict[str, Any]) -> dict[str, float]:
    raw_limits = results.get("raw", {})
    ratios: dict[str, float] = {}

    def ratio(name: str, value: float | None, limit: float | None) -> None:
        if value and limit:
            ratios[name] = round(value / limit, 4)

    bookings = results.get("bookings", {})
    ratio(
        "confirmed_bookings_vs_event_store_saves_8_threads",
        bookings.get("confirmed_per_s"),
        raw_limits.get("event_store_save_per_s_8_threads"),
    )
    ratio(
        "hot_flight_vs_event_store_saves_1_thread",
        results.get("hot_flight", {}).get("confirmed_per_s"),
        raw_limits.get("event_store_save_per_s_1_thread"),
    )
    ratio(
        "read_path_vs_http_hello",
        results.get("read_path", {}).get("req_per_s"),
        raw_limits.get("http_hello_req_per_s"),
    )
    ratio(
        "relay_vs_broker_produce",
        results.get("relay", {}).get("events_per_s"),
        raw_limits.get("broker_produce_per_s_500b"),
    )
    return ratios


def render_table(results: dict[str, Any]) -> str:
    """The figures as an aligned two-column table."""
    rows: list[tuple[str, str]] = []

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                walk(f"{prefix}.{key}" if prefix else key, inner)
        elif isinstance(value, float):
            rows.append((prefix, f"{value:,.2f}"))
        else:
            rows.append((prefix, str(value)))

    for section in (
        "raw",
        "bookings",
        "hot_flight",
        "read_path",
        "projection_lag",
        *CAPACITY_PHASES,
        "identity",
        "relay",
        "replay",
        "peak_rss_mib",
        "ratios",
    ):
        figures = results.get(section, {})
        if section in CAPACITY_PHASES:  # the steps get a table of their own, below
            figures = {key: value for key, value in figures.items() if key != "steps"}
        walk(section, figures)
    width = max(len(name) for name, _ in rows)
    table = "\n".join(f"{name:<{width}}  {value:>14}" for name, value in rows)
    steps = [render_steps(name, results[name]) for name in CAPACITY_PHASES if results.get(name)]
    return "\n\n".join([table, *steps])
