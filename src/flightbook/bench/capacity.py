"""The rules of the open-loop capacity phases: the schedule, a flat backlog, and capacity.

Pure functions, no I/O: :mod:`flightbook.bench.capacity_phase` measures, these judge.

A step offers bookings at a fixed rate for a fixed time (open loop: the schedule does not
wait for answers). It *passes* when the generator kept to its rate, the system confirmed
at least :data:`CONFIRMED_SHARE` of what was offered, and the backlog stayed flat. The
*capacity* is the highest rate whose step passes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

__all__ = (
    "CONFIRMED_SHARE",
    "DEFAULT_RATES",
    "GROWTH_SHARE",
    "BacklogPoint",
    "StepOutcome",
    "arrival_offsets",
    "backlog_flat",
    "backlog_growth",
    "capacity",
    "fare_plan",
    "parse_rates",
    "step_passes",
)

DEFAULT_RATES: tuple[float, ...] = (10.0, 25.0, 50.0, 100.0, 200.0, 400.0)
"""Bookings per second of each step, lowest first."""

CONFIRMED_SHARE = 0.95
"""A step passes only if at least this share of the offered bookings was confirmed."""

GROWTH_SHARE = 0.05
"""The backlog is flat if it grew by at most this share of the bookings offered meanwhile:
a system that confirms 95% of what comes in leaves 5% behind."""

SLACK_BOOKINGS = 2
"""Bookings in progress that sampling noise (one sample in flight) may add."""

SLACK_LAG = 10.0
"""Saga lag (positions) that the saga's once-a-second gauge may still show after a drain."""


@dataclass(frozen=True)
class BacklogPoint:
    """The backlog at one moment of a step.

    Attributes:
        at: Seconds since the step began.
        in_progress: Bookings requested and not yet final (``booking.bookings_in_progress``).
        saga_lag: Positions of every log the saga has not answered yet (summed over logs).
    """

    at: float
    in_progress: int
    saga_lag: float


@dataclass(frozen=True)
class StepOutcome:
    """What a step needs for its verdict.

    Attributes:
        rate: The rate the step was asked to offer (bookings per second).
        offered_per_s: The rate it achieved.
        confirmed_per_s: Bookings confirmed (within the bounded wait) per second offered.
        flat: Whether the backlog stayed flat (:func:`backlog_flat`).
    """

    rate: float
    offered_per_s: float
    confirmed_per_s: float
    flat: bool


def parse_rates(text: str) -> tuple[float, ...]:
    """``"10,25,50"`` → ``(10.0, 25.0, 50.0)``, sorted; ValueError unless each is > 0."""
    rates = []
    for part in text.split(","):
        if not part.strip():
            continue
        rate = float(part)
        if not math.isfinite(rate) or rate <= 0:
            raise ValueError(f"a rate must be a positive number of bookings per second: {part!r}")
        rates.append(rate)
    if not rates:
        raise ValueError("no rate given")
    return tuple(sorted(set(rates)))


def arrival_offsets(rate: float, seconds: float) -> list[float]:
    """When each booking of a step starts, in seconds from the step's start.

    Evenly spaced at ``1 / rate``: ``rate * seconds`` bookings (at least one), the first at 0.
    """
    if rate <= 0 or seconds <= 0:
        raise ValueError("rate and seconds must be positive")
    count = max(1, math.floor(rate * seconds + 1e-9))
    return [n / rate for n in range(count)]


def fare_plan(bookings: int, flights: int, seats_per_fare: int) -> int:
    """How many fares of ``seats_per_fare`` seats each flight needs for ``bookings`` bookings.

    Booking ``n`` goes to flight ``n % flights`` and, on it, to fare ``n // flights % fares``:
    every fare of every flight gets at most ``seats_per_fare`` one-seat bookings.
    """
    per_flight = math.ceil(bookings / flights)
    return max(1, math.ceil(per_flight / seats_per_fare))


def backlog_growth(points: Sequence[BacklogPoint], since: float) -> float:
    """How much the bookings in progress grew from ``since`` to the last point.

    The least-squares slope over the points from ``since`` on, times the time they span, so
    one noisy sample weighs little. Before ``since`` the backlog is still filling (a step
    starts empty and holds about rate * latency bookings once it runs).
    """
    window = [p for p in points if p.at >= since]
    if len(window) < 2:
        return 0.0
    mean_t = sum(p.at for p in window) / len(window)
    mean_v = sum(p.in_progress for p in window) / len(window)
    spread = sum((p.at - mean_t) ** 2 for p in window)
    if spread == 0:
        return 0.0
    slope = sum((p.at - mean_t) * (p.in_progress - mean_v) for p in window) / spread
    return slope * (window[-1].at - window[0].at)


def backlog_flat(
    *, growth: float, offered_meanwhile: float, start: BacklogPoint, drained: BacklogPoint
) -> bool:
    """Whether a step's backlog stayed flat.

    Args:
        growth: :func:`backlog_growth` over the step's second half.
        offered_meanwhile: The bookings offered over that half.
        start: The backlog when the step began.
        drained: The backlog after the bounded wait that followed the step.

    Returns:
        True when the bookings in progress grew by at most :data:`GROWTH_SHARE` of the
        bookings offered meanwhile, and after the drain neither they nor the saga lag are
        above where they were at the step's start (give or take sampling noise).
    """
    return (
        growth <= GROWTH_SHARE * offered_meanwhile + SLACK_BOOKINGS
        and drained.in_progress <= start.in_progress + SLACK_BOOKINGS
        and drained.saga_lag <= start.saga_lag + SLACK_LAG
    )


def step_passes(step: StepOutcome) -> bool:
    """The generator kept its rate, 95% of it was confirmed, and the backlog stayed flat."""
    kept_up = step.offered_per_s >= CONFIRMED_SHARE * step.rate
    confirmed = step.confirmed_per_s >= CONFIRMED_SHARE * step.offered_per_s
    return kept_up and confirmed and step.flat


def capacity(steps: Iterable[StepOutcome]) -> float | None:
    """The highest rate whose step passes (:func:`step_passes`); None if none does."""
    passing = [step.rate for step in steps if step_passes(step)]
    return max(passing, default=None)
