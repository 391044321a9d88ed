"""The open-loop capacity phases: bookings at stepped fixed rates, judged on the server.

``capacity`` spreads the bookings over several flights (as the ``bookings`` phase does);
``hot_capacity`` puts every booking on one flight with seats for the whole run. Each step
offers one rate (:mod:`flightbook.bench.openloop`) for the step's seconds, then waits, at
most ``drain_seconds``, for its stragglers; only the bookings confirmed by then count.

Every verdict comes from the system itself, none from the clients: outcomes and
end-to-end latency from the events' commit timestamps in PostgreSQL, the backlog from
``booking.bookings_in_progress`` and the saga's ``flightbook_saga_lag_positions`` gauge,
commits and statements from PostgreSQL's statistics (:mod:`flightbook.bench.pgstats`), CPU
per process group from the kernel (:mod:`flightbook.bench.cpu`). The rules that judge a
step, and the capacity, are in :mod:`flightbook.bench.capacity`. The customers still wait
for their outcome, pushed to them (``wait``, :mod:`flightbook.bench.outcomes`), so that a
step costs what telling them costs; ``--wait none`` leaves that out, to tell the two apart.

After the first step that does not pass, the higher rates are skipped: they would only
pile up a backlog that the next phases inherit.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from flightbook.bench.capacity import (
    SLACK_LAG,
    BacklogPoint,
    StepOutcome,
    arrival_offsets,
    backlog_flat,
    backlog_growth,
    capacity,
    fare_plan,
    step_passes,
)
from flightbook.bench.cpu import LOADGEN, CpuMeter, server_pids
from flightbook.bench.load import fare_code, schedule_flights
from flightbook.bench.measure import latency_ms, metric_values
from flightbook.bench.openloop import OpenLoad, prepare_bookings
from flightbook.bench.pgstats import Counters, PostgresProbe
from flightbook.config.settings import require

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from flightbook.bench.system import SystemUnderTest
    from flightbook.config.settings import Settings
    from flightbook.domain.inventory import FlightInventory

__all__ = ("CAPACITY_PHASES", "CapacityPlan", "capacity_phase", "render_steps")

CAPACITY_PHASES = {"capacity": 8, "hot_capacity": 1}
"""The capacity phases and how many flights each books."""

SEATS_PER_FARE = 10_000  # the most a fare may have (FareRequest)
_SAGA_LAG = "flightbook_saga_lag_positions"
_POLL = 0.2


@dataclass(frozen=True)
class CapacityPlan:
    """The steps of a capacity phase.

    Attributes:
        rates: Bookings per second of each step, lowest first.
        seconds: How long each step offers its rate.
        drain_seconds: The most a step waits for its stragglers after it.
        settle_seconds: The most a phase waits, after a step past capacity, for the backlog
            to clear before the next phase.
        wait: How customers learn their outcome: ``push``, ``poll`` or ``none``.
    """

    rates: tuple[float, ...]
    seconds: float
    drain_seconds: float = 10.0
    settle_seconds: float = 60.0
    wait: str = "push"


class _Backlog:
    """The backlog now: bookings in progress (PostgreSQL) and the saga's lag (its gauge)."""

    def __init__(self, probe: PostgresProbe, saga_url: str) -> None:
        self._probe = probe
        self._saga_url = saga_url
        self.lag_by_source: dict[str, float] = {}

    def saga_lag(self) -> float:
        with contextlib.suppress(OSError):  # too busy to answer: its last figure stands
            self.lag_by_source = metric_values(self._saga_url, _SAGA_LAG, timeout=2.0)
        return sum(self.lag_by_source.values())

    def point(self, at: float) -> BacklogPoint:
        return BacklogPoint(at=at, in_progress=self._probe.in_progress(), saga_lag=self.saga_lag())


class _Sampler:
    """Samples the backlog every ``interval`` seconds in a thread of its own."""

    def __init__(self, backlog: _Backlog, interval: float) -> None:
        self.points: list[BacklogPoint] = []
        self._backlog = backlog
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="backlog-sampler")
        self._started = 0.0

    def __enter__(self) -> _Sampler:
        self._started = time.perf_counter()
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()
        self._thread.join()

    def stop(self) -> None:
        """No samples after this (the step's schedule is over)."""
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.points.append(self._backlog.point(time.perf_counter() - self._started))


def capacity_phase(
    system: SystemUnderTest, plan: CapacityPlan, *, name: str, say: Callable[[str], None]
) -> dict[str, Any]:
    """Run the capacity phase ``name`` (a key of :data:`CAPACITY_PHASES`); its figures."""
    flights = CAPACITY_PHASES[name]
    settings = system.settings
    command_url = system.url("command-api")
    total = sum(len(arrival_offsets(rate, plan.seconds)) for rate in plan.rates)
    fares = fare_plan(total, flights, SEATS_PER_FARE)
    flight_ids = schedule_flights(command_url, settings, flights, SEATS_PER_FARE, fares=fares)
    postgres = require(settings.postgres_url, "postgres_url")
    probe, sampling = PostgresProbe(postgres), PostgresProbe(postgres)
    ledger = settings.gateway_database()
    # the simulated provider on a database of its own: its transactions are counted apart
    gateway = PostgresProbe(ledger) if ledger is not None and ledger != postgres else None
    try:
        step = _Step(
            system=system,
            plan=plan,
            name=name,
            probe=probe,
            sampling=sampling,
            gateway=gateway,
            say=say,
        )
        figures: dict[str, Any] = {
            "flights": flights,
            "fares_per_flight": fares,
            "seconds": plan.seconds,
            "rates": list(plan.rates),
            "server_commit_times": step.commit_times,
            "server_statement_counts": step.statements,
            "wait": plan.wait,
        }
        say(
            f"{name}: {flights} flight(s), {', '.join(f'{r:g}' for r in plan.rates)} "
            f"bookings/s, {plan.seconds:g}s each ..."
        )
        before = probe.in_progress()
        steps: dict[str, Any] = {}
        verdicts: list[StepOutcome] = []
        skipped: list[float] = []
        booked = 0
        for index, rate in enumerate(plan.rates):
            count = len(arrival_offsets(rate, plan.seconds))
            targets = [
                (flight_ids[n % flights], fare_code(n // flights % fares))
                for n in range(booked, booked + count)
            ]
            booked += count
            figures_of_step, verdict = step.run(rate, targets)
            steps[f"{rate:g}"] = figures_of_step
            verdicts.append(verdict)
            if not figures_of_step["passes"]:
                skipped = list(plan.rates[index + 1 :])
                break
        if skipped:
            say(f"{name}: past capacity; skipping {', '.join(f'{r:g}' for r in skipped)}/s")
            _settle(probe, before, plan.settle_seconds, name, say)
        figures["capacity_per_s"] = capacity(verdicts)
        figures["skipped_rates"] = skipped
        figures["steps"] = steps
        figures["seats"] = _seat_tally(settings, flight_ids)
        figures["seats"]["confirmed_bookings"] = sum(s["confirmed"] for s in steps.values())
        say(f"capacity ({name}): {_rate(figures['capacity_per_s'])}")
        return figures
    finally:
        probe.close()
        sampling.close()
        if gateway is not None:
            gateway.close()


def _seat_tally(settings: Settings, flight_ids: Sequence[str]) -> dict[str, int]:
    """The phase's flights as their Inventory aggregates end: seats sold, held, oversold.

    Every bench booking is for one seat, so ``sold`` should equal the confirmed bookings
    and ``oversold`` (seats sold past a fare's seats, in every fare) be 0.
    """
    from flightbook.eventstore.applications import EventStore

    store = EventStore(settings, pool_size=1)
    sold = held = oversold = 0
    try:
        for flight_id in flight_ids:
            flight: FlightInventory = store.inventory.repository.get(uuid.UUID(flight_id))
            for code in flight.fare_codes:
                sold += flight.sold(code)
                held += flight.held(code)
                oversold += max(0, flight.sold(code) - flight.fare(code).seats)
    finally:
        store.close()
    return {"sold": sold, "held": held, "oversold": oversold}


def _top_statements(
    before: dict[int, tuple[str, int]], after: dict[int, tuple[str, int]], count: int = 30
) -> list[tuple[str, int]]:
    """The statements called most between two snapshots: (text, calls)."""
    deltas = [
        (query, calls - before.get(queryid, ("", 0))[1])
        for queryid, (query, calls) in after.items()
    ]
    return sorted((d for d in deltas if d[1] > 0), key=lambda d: -d[1])[:count]


def _rate(rate: float | None) -> str:
    return "none of the steps" if rate is None else f"{rate:g} bookings/s"


def _settle(
    probe: PostgresProbe, before: int, bound: float, name: str, say: Callable[[str], None]
) -> None:
    """Wait (at most ``bound`` s) until the bookings in progress are back to ``before``."""
    deadline = time.monotonic() + bound
    left = probe.in_progress()
    if left > before:
        say(f"{name}: waiting (at most {bound:g}s) for {left - before} bookings in progress ...")
    while left > before and time.monotonic() < deadline:
        time.sleep(_POLL)
        left = probe.in_progress()


class _Step:
    """Runs one step at a time of a phase, with what every step shares."""

    def __init__(
        self,
        *,
        system: SystemUnderTest,
        plan: CapacityPlan,
        name: str,
        probe: PostgresProbe,
        sampling: PostgresProbe,
        gateway: PostgresProbe | None,
        say: Callable[[str], None],
    ) -> None:
        self._settings = system.settings
        self._command_url = system.url("command-api")
        self._query_url = system.url("query-api")
        self._plan = plan
        self._name = name
        self._probe = probe
        self._sampling = sampling
        self._gateway = gateway
        self._gateway_statements = gateway.enable_statements() if gateway is not None else False
        self._say = say
        self._backlog = _Backlog(probe, system.url("saga"))
        self._sampled = _Backlog(sampling, system.url("saga"))
        self.commit_times = probe.tracks_commit_times()
        self.statements = probe.enable_statements()
        if not self.commit_times:
            say(f"{name}: PostgreSQL runs without track_commit_timestamp: no end-to-end latency")
        if not self.statements:
            say(f"{name}: PostgreSQL runs without pg_stat_statements: no statement counts")
        self._own = {spec: process.pid for spec, process in system.processes.items()}
        self._servers = server_pids(self._settings, system.server_pids)
        self._meter = CpuMeter({**self._own, **self._servers})

    def run(
        self, rate: float, targets: Sequence[tuple[str, str]]
    ) -> tuple[dict[str, Any], StepOutcome]:
        plan, say = self._plan, self._say
        tag = f"{self._name}-{rate:g}-{uuid.uuid4().hex[:8]}"
        bookings = prepare_bookings(self._settings, targets, tag=tag)
        say(f"{self._name} {rate:g}/s: {len(bookings)} bookings over {plan.seconds:g}s ...")
        counters = self._probe.counters(statements=self.statements, also=(self._sampling,))
        gateway_before = self._gateway_counters()
        calls_before = self._probe.statement_calls() if self.statements else {}
        cpu = self._meter.snapshot()
        start = self._backlog.point(0.0)
        interval = max(0.2, min(1.0, plan.seconds / 30))
        ended: list[tuple[BacklogPoint, float]] = []

        def schedule_over() -> None:  # the customers may still be waiting for outcomes
            sampler.stop()
            ended.append((self._backlog.point(0.0), time.monotonic()))

        load = OpenLoad(
            command_url=self._command_url,
            bookings=bookings,
            rate=rate,
            seconds=plan.seconds,
            query_url=self._query_url,
            wait=plan.wait,
            wait_seconds=plan.drain_seconds,
            at_schedule_end=schedule_over,
        )
        with _Sampler(self._sampled, interval) as sampler:
            result = load.run()
        end_point, drain_began = ended[0] if ended else (self._backlog.point(0.0), None)
        end = dataclasses.replace(end_point, at=result.seconds)
        drained, drain_seconds = self._drain(result.booking_ids, start, end.at, drain_began)
        spent = self._meter.snapshot()
        counters_after = self._probe.counters(statements=self.statements, also=(self._sampling,))
        gateway_after = self._gateway_counters()
        commits, statements = counters_after.since(counters)
        writes = counters_after.writes_since(counters)  # every database of the server
        gateway_commits: int | None = None
        gateway_statements: int | None = None
        if gateway_before is not None and gateway_after is not None:
            gateway_commits, gateway_statements = gateway_after.since(gateway_before)
            # each gateway operation is one statement in a write transaction of its own
            # (exact); its database's commit count is the fallback (close, not exact)
            gateway_writes = gateway_commits if gateway_statements is None else gateway_statements
            writes = max(0, writes - gateway_writes)
        top = (
            _top_statements(calls_before, self._probe.statement_calls()) if self.statements else []
        )
        outcomes = self._probe.outcomes(result.booking_ids, commit_times=self.commit_times)

        points = [start, *sampler.points, end]
        half = result.seconds / 2
        growth = backlog_growth(points, since=half)
        flat = backlog_flat(
            growth=growth, offered_meanwhile=rate * half, start=start, drained=drained
        )
        confirmed = outcomes.confirmed
        verdict = StepOutcome(
            rate=rate,
            offered_per_s=result.offered_per_s,
            confirmed_per_s=confirmed / result.seconds,
            flat=flat,
        )

        def per_booking(value: float | None, scale: float = 1.0) -> float | None:
            return round(value * scale / confirmed, 3) if confirmed and value is not None else None

        cpu_ms = {name: per_booking(spent[name] - cpu[name], 1000) for name in cpu if name in spent}
        own_cpu = sum(
            spent[name] - cpu[name] for name in self._own if name in cpu and name in spent
        )
        figures: dict[str, Any] = {
            "rate_per_s": rate,
            "scheduled": result.scheduled,
            "sent": result.sent,
            "accepted": result.accepted,
            "refused": result.refused,
            "errors": result.errors,
            "answers_by_status": {str(k): v for k, v in sorted(result.statuses.items())},
            "offered_per_s": result.offered_per_s,  # unrounded, as the verdict saw them
            "confirmed": confirmed,
            "rejected": outcomes.rejected,
            "cancelled": outcomes.cancelled,
            "unfinished": result.accepted - confirmed - outcomes.rejected - outcomes.cancelled,
            "confirmed_per_s": verdict.confirmed_per_s,
            "confirmed_share": round(confirmed / result.sent, 4) if result.sent else 0.0,
            "send_lag": {
                key: value for key, value in latency_ms(result.send_lags).items() if key != "p50_ms"
            },
            "peak_in_flight": result.peak_in_flight,
            "command_latency": latency_ms(result.latencies),
            "end_to_end_latency": (
                latency_ms(outcomes.end_to_end) if outcomes.end_to_end is not None else None
            ),
            "wait": plan.wait,
            "told": dict(sorted(result.told.items())),
            "told_end_to_end_latency": latency_ms(result.told_end_to_end),
            "backlog": {
                "in_progress_start": start.in_progress,
                "in_progress_end": end.in_progress,
                "in_progress_max": max(p.in_progress for p in points),
                "in_progress_after_drain": drained.in_progress,
                "in_progress_growth_second_half": round(growth, 2),
                "saga_lag_start": start.saga_lag,
                "saga_lag_end": end.saga_lag,
                "saga_lag_max": max(p.saga_lag for p in points),
                "saga_lag_after_drain": drained.saga_lag,
                "saga_lag_end_by_source": dict(self._backlog.lag_by_source),
                "samples": len(points),
                "drain_seconds": round(drain_seconds, 2),
                "flat": flat,
            },
            "cpu_ms_per_booking": {
                "flightbook": {name: cpu_ms[name] for name in self._own if name in cpu_ms},
                "flightbook_total": per_booking(own_cpu, 1000),
                "servers": {name: cpu_ms[name] for name in self._servers if name in cpu_ms},
                LOADGEN: cpu_ms.get(LOADGEN),
            },
            # what telling customers their outcome costs: the query API and MongoDB (whose
            # figure also holds the projection workers' writes; compare with --wait none)
            "telling_cpu_ms_per_booking": _sum_of(cpu_ms, ("query-api", "mongo")),
            "postgres_per_booking": {
                "commits": per_booking(commits),
                "write_transactions": per_booking(writes),
                "statements": per_booking(statements),
                "top_statements": [
                    {"calls_per_booking": per_booking(calls), "query": query[:160]}
                    for query, calls in top
                ],
                # the simulated provider's own database (None: it shares flightbook's, and
                # its transactions are in the figures above)
                "gateway_commits": per_booking(gateway_commits),
                "gateway_statements": per_booking(gateway_statements),
            },
            "passes": step_passes(verdict),
        }
        say(_progress(self._name, figures))
        return figures, verdict

    def _gateway_counters(self) -> Counters | None:
        if self._gateway is None:
            return None
        return self._gateway.counters(statements=self._gateway_statements)

    def _drain(
        self,
        booking_ids: list[str],
        start: BacklogPoint,
        since: float,
        began: float | None = None,
    ) -> tuple[BacklogPoint, float]:
        """The backlog once the step's stragglers are in, and how long that took.

        Waits (at most ``drain_seconds`` from ``began``, the schedule's end: customers may
        have waited part of it) until the step's bookings are all final and the saga has
        caught up.
        """
        began = time.monotonic() if began is None else began
        deadline = began + self._plan.drain_seconds
        while True:
            left = self._probe.in_progress(booking_ids) if booking_ids else 0
            lag = self._backlog.saga_lag()
            caught_up = lag <= start.saga_lag + SLACK_LAG
            if (left == 0 and caught_up) or time.monotonic() >= deadline:
                break
            time.sleep(_POLL)
        took = time.monotonic() - began
        return self._backlog.point(since + took), took


def _sum_of(values: dict[str, float | None], names: Sequence[str]) -> float | None:
    found = [values[name] for name in names if values.get(name) is not None]
    return round(sum(v for v in found if v is not None), 3) if found else None


def _progress(name: str, step: dict[str, Any]) -> str:
    e2e = step["end_to_end_latency"]
    latency = f"e2e p50 {e2e['p50_ms']:.0f} ms, p99 {e2e['p99_ms']:.0f} ms" if e2e else "no e2e"
    backlog = step["backlog"]
    return (
        f"{name} {step['rate_per_s']:g}/s: offered {step['offered_per_s']:.1f}/s, "
        f"confirmed {step['confirmed_per_s']:.1f}/s ({step['confirmed']}/{step['sent']}), "
        f"{latency}, backlog {'flat' if backlog['flat'] else 'GROWING'} "
        f"({backlog['in_progress_start']}→{backlog['in_progress_end']}"
        f"→{backlog['in_progress_after_drain']}), "
        f"{'passes' if step['passes'] else 'fails'}"
    )


def render_steps(name: str, phase: dict[str, Any]) -> str:
    """A capacity phase's steps as a table: one column per step, one row per figure."""
    steps: list[dict[str, Any]] = list(phase.get("steps", {}).values())
    rows: list[tuple[str, list[str]]] = []

    def row(label: str, cell: Callable[[dict[str, Any]], object]) -> None:
        rows.append((label, [_cell(cell(step)) for step in steps]))

    def latency(kind: str, figure: str) -> Callable[[dict[str, Any]], object]:
        return lambda step: (step.get(kind) or {}).get(figure)

    def trio(kind: str) -> Callable[[dict[str, Any]], object]:
        return lambda step: "/".join(
            f"{step['backlog'][f'{kind}_{when}']:g}" for when in ("start", "end", "after_drain")
        )

    row("offered/s", lambda step: step["offered_per_s"])
    row("confirmed/s", lambda step: step["confirmed_per_s"])
    row("confirmed/sent", lambda step: f"{step['confirmed']}/{step['sent']}")
    row("e2e p50 ms (server)", latency("end_to_end_latency", "p50_ms"))
    row("e2e p99 ms (server)", latency("end_to_end_latency", "p99_ms"))
    row("command p99 ms", latency("command_latency", "p99_ms"))
    row("told CONFIRMED (customers)", lambda step: step.get("told", {}).get("CONFIRMED"))
    row("e2e p50 ms (told)", latency("told_end_to_end_latency", "p50_ms"))
    row("e2e p99 ms (told)", latency("told_end_to_end_latency", "p99_ms"))
    row("send lag max ms", latency("send_lag", "max_ms"))
    row("in progress start/end/drained", trio("in_progress"))
    row(
        "in progress growth, 2nd half",
        lambda step: step["backlog"]["in_progress_growth_second_half"],
    )
    row("saga lag start/end/drained", trio("saga_lag"))
    row("drain s", lambda step: step["backlog"]["drain_seconds"])
    row("backlog flat", lambda step: "yes" if step["backlog"]["flat"] else "NO")
    row("passes", lambda step: "yes" if step["passes"] else "NO")
    cpu: list[dict[str, Any]] = [step["cpu_ms_per_booking"] for step in steps]
    for process in dict.fromkeys(p for figures in cpu for p in figures["flightbook"]):
        row(f"cpu ms/booking {process}", _cpu("flightbook", process))
    row("cpu ms/booking flightbook (sum)", _cpu(None, "flightbook_total"))
    for server in dict.fromkeys(s for figures in cpu for s in figures["servers"]):
        row(f"cpu ms/booking {server}", _cpu("servers", server))
    row(f"cpu ms/booking {LOADGEN}", _cpu(None, LOADGEN))
    row("cpu ms/booking query-api + mongo", lambda step: step.get("telling_cpu_ms_per_booking"))
    row("commits/booking", lambda step: step["postgres_per_booking"]["commits"])
    row(
        "write transactions/booking",
        lambda step: step["postgres_per_booking"]["write_transactions"],
    )
    row("statements/booking", lambda step: step["postgres_per_booking"]["statements"])
    row(
        "gateway commits/booking (apart)",
        lambda step: step["postgres_per_booking"].get("gateway_commits"),
    )

    header = (
        f"{name} ({phase['flights']} flight(s), {phase['seconds']:g}s a step, "
        f"customers wait: {phase.get('wait', 'none')})"
    )
    heads = [f"{step['rate_per_s']:g}/s" for step in steps]
    width = max(len(header), *(len(label) for label, _ in rows))
    cells = max(8, *(len(c) for _, values in rows for c in values), *(len(h) for h in heads))
    lines = [f"{header:<{width}}  " + "  ".join(f"{h:>{cells}}" for h in heads)]
    lines += [
        f"{label:<{width}}  " + "  ".join(f"{v:>{cells}}" for v in values) for label, values in rows
    ]
    seats = phase.get("seats")
    if seats is not None:
        lines.append(
            f"seats ({name}): sold {seats['sold']} for {seats['confirmed_bookings']} confirmed "
            f"one-seat bookings, held {seats['held']}, oversold {seats['oversold']}"
        )
    lines.append(f"capacity ({name}): {_rate(phase.get('capacity_per_s'))}")
    return "\n".join(lines)


def _cpu(group: str | None, name: str) -> Callable[[dict[str, Any]], object]:
    def cell(step: dict[str, Any]) -> object:
        figures = step["cpu_ms_per_booking"]
        return (figures[group] if group else figures).get(name)

    return cell


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) >= 100 else f"{value:,.2f}"
    return str(value)
