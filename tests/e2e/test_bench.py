"""``flightbook bench --quick`` produces every figure the benchmark promises (no thresholds)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from flightbook.bench.capacity import StepOutcome, capacity, step_passes
from flightbook.bench.capacity_phase import CAPACITY_PHASES
from flightbook.bench.runner import BenchOptions, render_table, run_bench
from flightbook.config.processes import PROCESSES as SYSTEM
from flightbook.config.settings import Settings

pytestmark = pytest.mark.e2e

POSITIVE = {
    "raw": [
        "postgres_insert_per_s_1_client",
        "postgres_insert_per_s_8_clients",
        "event_store_save_per_s_1_thread",
        "event_store_save_per_s_8_threads",
        "redis_get_per_s",
        "broker_produce_per_s_500b",
        "http_hello_req_per_s",
    ],
    "bookings": ["confirmed_per_s", "confirmed", "loadgen_cpu_percent"],
    "hot_flight": ["confirmed_per_s", "confirmed"],
    "read_path": ["req_per_s"],
    "projection_lag": ["events", "p50_ms", "p99_ms", "max_ms"],
    "identity": ["registered", "argon2_time_cost", "argon2_memory_kib"],
    "relay": ["events_per_s", "projected_events_per_s"],
    "replay": [
        "rebuild_flights_events_per_s",
        "rebuild_bookings_events_per_s",
        "audit_verify_events_per_s",
    ],
}
LATENCIES = {
    "bookings": ["command_latency", "end_to_end_latency"],
    "hot_flight": ["command_latency", "end_to_end_latency"],
    "read_path": ["search", "get_booking"],
}
IDENTITY = ["login", "refresh", "read_with_session", "read_sessionless"]
PROCESSES = [spec.name for spec in SYSTEM]
SERVERS = {"postgres", "redis", "kafka", "mongo"}
RATES = (3.0, 6.0)


def test_quick_bench_reports_every_figure_positive(settings: Settings, tmp_path: Path) -> None:
    # shorter than `--quick` (6 s phases): every figure is produced, none is judged here
    short = dataclasses.replace(
        BenchOptions.quick_run(tmp_path), seconds=2.5, raw_seconds=0.5, backlog=1_500, rates=RATES
    )
    results = run_bench(settings, short, say=lambda _line: None)

    for section, names in POSITIVE.items():
        for name in names:
            assert results[section][name] > 0, (section, name, results[section])
    for section, names in LATENCIES.items():
        for name in names:
            figures = results[section][name]
            assert set(figures) == {"p50_ms", "p95_ms", "p99_ms", "max_ms"}
            assert all(value > 0 for value in figures.values()), (section, name, figures)
    for name in IDENTITY:
        figures = results["identity"][name]
        assert figures["req_per_s"] > 0, (name, figures)
        assert figures["cpu_ms_per_request"] > 0, (name, figures)
        assert figures["failed"] == 0, (name, figures)
        assert figures["p99_ms"] >= figures["p50_ms"] > 0, (name, figures)
    assert "session_check_cpu_ms_per_request" in results["identity"]
    for section in ("bookings", "hot_flight"):  # the clients were told by push
        assert results[section]["wait"] == "push"
        telling = results[section]["telling_cpu_ms_per_booking"]
        assert telling["query-api"] > 0, telling
        assert telling["total"] >= telling["query-api"], telling
    assert all(
        results["replay"][f"{n}_exit_code"] == 0
        for n in ("rebuild_flights", "rebuild_bookings", "audit_verify")
    )
    assert all(results["peak_rss_mib"][name] > 0 for name in PROCESSES)
    assert all(value > 0 for value in results["ratios"].values())
    assert len(results["ratios"]) == 4
    assert results["machine"]["cpus"] > 0
    for name in CAPACITY_PHASES:
        _assert_capacity_phase_is_consistent(results[name])
    written = json.loads(Path(results["json_file"]).read_text())
    assert written["bookings"]["confirmed"] == results["bookings"]["confirmed"]
    assert written["capacity"]["steps"] == results["capacity"]["steps"]
    table = render_table(results)
    assert "raw.http_hello_req_per_s" in table
    assert "capacity (hot_capacity): " in table


def _assert_capacity_phase_is_consistent(phase: dict[str, Any]) -> None:
    """Counts add up, each verdict follows from its figures, the capacity is a step's rate."""
    seats = phase["seats"]
    assert seats["oversold"] == 0, seats
    unfinished = sum(step["unfinished"] for step in phase["steps"].values())
    if unfinished == 0:  # every booking final: each confirmed one holds a sold seat, no more
        assert seats["sold"] == seats["confirmed_bookings"] > 0, seats
        assert seats["held"] == 0, seats
    run = [float(rate) for rate in phase["steps"]]
    assert run + phase["skipped_rates"] == list(RATES)
    assert phase["capacity_per_s"] is None or phase["capacity_per_s"] in run
    outcomes: list[StepOutcome] = []
    for step in phase["steps"].values():
        assert step["sent"] == step["scheduled"] > 0, step
        assert step["accepted"] + step["refused"] + step["errors"] == step["sent"], step
        finished = step["confirmed"] + step["rejected"] + step["cancelled"]
        assert finished + step["unfinished"] == step["accepted"], step
        assert step["unfinished"] >= 0, step
        assert 0 <= step["confirmed_per_s"] <= step["offered_per_s"], step
        assert step["offered_per_s"] > 0, step
        backlog = step["backlog"]
        assert backlog["in_progress_max"] >= backlog["in_progress_end"] >= 0, backlog
        assert isinstance(backlog["flat"], bool)
        latency = step["end_to_end_latency"]
        if not phase["server_commit_times"]:
            assert latency is None
        elif step["confirmed"]:
            assert latency["p99_ms"] >= latency["p50_ms"] > 0, latency
        told = step["told"]  # every accepted booking's customer waited for its outcome
        assert step["wait"] == "push"
        assert sum(told.values()) == step["accepted"], step
        assert told.get("CONFIRMED", 0) <= step["confirmed"], step
        if told.get("CONFIRMED"):
            told_latency = step["told_end_to_end_latency"]
            assert told_latency["p99_ms"] >= told_latency["p50_ms"] > 0, told_latency
        cpu = step["cpu_ms_per_booking"]
        assert set(cpu["flightbook"]) == set(PROCESSES), cpu
        assert set(cpu["servers"]) == SERVERS, cpu
        if step["confirmed"]:
            assert sum(cpu["flightbook"].values()) == pytest.approx(
                cpu["flightbook_total"], abs=0.01
            )
            assert cpu["flightbook_total"] > 0, cpu
            assert cpu["servers"]["postgres"] > 0, cpu
            assert step["postgres_per_booking"]["commits"] > 0, step
            if phase["server_statement_counts"]:
                assert step["postgres_per_booking"]["statements"] > 0, step
        outcome = StepOutcome(
            rate=step["rate_per_s"],
            offered_per_s=step["offered_per_s"],
            confirmed_per_s=step["confirmed_per_s"],
            flat=backlog["flat"],
        )
        assert step["passes"] == step_passes(outcome), step
        outcomes.append(outcome)
    assert phase["capacity_per_s"] == capacity(outcomes)
