"""The bench's small measuring tools that need no server: metrics text, counter deltas."""

from __future__ import annotations

from flightbook.bench.capacity_phase import render_steps
from flightbook.bench.measure import latency_ms, parse_metric
from flightbook.bench.pgstats import Counters

METRICS = """\
# HELP flightbook_saga_lag_positions Positions of each log not yet answered
# TYPE flightbook_saga_lag_positions gauge
flightbook_saga_lag_positions{source="booking"} 3.0
flightbook_saga_lag_positions{source="inventory"} 0.0
flightbook_saga_lag_positions_total{source="booking"} 99.0
flightbook_saga_jobs_pending 2.0
"""


def test_a_metric_is_read_by_its_label_values_and_no_other_metric_is() -> None:
    assert parse_metric(METRICS, "flightbook_saga_lag_positions") == {
        "booking": 3.0,
        "inventory": 0.0,
    }
    assert parse_metric(METRICS, "flightbook_saga_jobs_pending") == {"": 2.0}
    assert parse_metric(METRICS, "flightbook_relay_lag_positions") == {}


def test_counter_deltas_leave_out_the_probes_own_queries() -> None:
    earlier = Counters(commits=1_000, statements=5_000, own=10)
    later = Counters(commits=1_130, statements=5_420, own=30)

    assert later.since(earlier) == (110, 400)
    assert Counters(commits=1_130, statements=None, own=30).since(earlier) == (110, None)


def test_write_transactions_are_the_transaction_ids_given_out_meanwhile() -> None:
    earlier = Counters(commits=1_000, statements=None, own=10, next_xid=500)
    later = Counters(commits=1_130, statements=None, own=30, next_xid=540)

    assert later.writes_since(earlier) == 40


def test_latencies_are_in_milliseconds_by_nearest_rank() -> None:
    figures = latency_ms([0.001 * n for n in range(1, 101)])

    assert figures == {"p50_ms": 50.0, "p95_ms": 95.0, "p99_ms": 99.0, "max_ms": 100.0}


def test_the_steps_table_has_one_column_per_step_and_names_the_capacity() -> None:
    step = {
        "rate_per_s": 5.0,
        "offered_per_s": 5.0,
        "confirmed_per_s": 4.9,
        "confirmed": 49,
        "sent": 50,
        "end_to_end_latency": {"p50_ms": 300.0, "p99_ms": 600.0},
        "command_latency": {"p99_ms": 20.0},
        "send_lag": {"max_ms": 2.0},
        "backlog": {
            "in_progress_start": 0,
            "in_progress_end": 1,
            "in_progress_after_drain": 0,
            "in_progress_growth_second_half": 0.1,
            "saga_lag_start": 0.0,
            "saga_lag_end": 2.0,
            "saga_lag_after_drain": 0.0,
            "drain_seconds": 0.4,
            "flat": True,
        },
        "passes": True,
        "cpu_ms_per_booking": {
            "flightbook": {"command-api": 7.5, "saga": 12.0},
            "flightbook_total": 19.5,
            "servers": {"postgres": 13.0},
            "loadgen": 2.0,
        },
        "postgres_per_booking": {"commits": 50.0, "write_transactions": 12.0, "statements": None},
    }
    phase = {
        "flights": 8,
        "seconds": 10.0,
        "capacity_per_s": 10.0,
        "steps": {"5": step, "10": {**step, "rate_per_s": 10.0}},
    }

    table = render_steps("capacity", phase).splitlines()

    assert table[0].split()[-2:] == ["5/s", "10/s"]
    assert any(line.startswith("cpu ms/booking flightbook (sum)") for line in table)
    assert any(line.startswith("statements/booking") and line.endswith("-") for line in table)
    assert table[-1] == "capacity (capacity): 10 bookings/s"
