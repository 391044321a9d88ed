"""The rules of the open-loop capacity phases: schedule, flat backlog, capacity (no I/O)."""

from __future__ import annotations

import collections
import itertools
import math

import pytest

from flightbook.bench.capacity import (
    CONFIRMED_SHARE,
    DEFAULT_RATES,
    BacklogPoint,
    StepOutcome,
    arrival_offsets,
    backlog_flat,
    backlog_growth,
    capacity,
    fare_plan,
    parse_rates,
    step_passes,
)


def _point(at: float, in_progress: int, saga_lag: float = 0.0) -> BacklogPoint:
    return BacklogPoint(at=at, in_progress=in_progress, saga_lag=saga_lag)


def _step(
    rate: float, *, offered: float | None = None, confirmed: float | None = None, flat: bool = True
) -> StepOutcome:
    offered = rate if offered is None else offered
    return StepOutcome(
        rate=rate,
        offered_per_s=offered,
        confirmed_per_s=offered if confirmed is None else confirmed,
        flat=flat,
    )


@pytest.mark.parametrize(("rate", "seconds", "count"), [(10, 30, 300), (2.5, 2.5, 6), (0.5, 1, 1)])
def test_the_schedule_spaces_rate_times_seconds_bookings_evenly_from_zero(
    rate: float, seconds: float, count: int
) -> None:
    offsets = arrival_offsets(rate, seconds)

    assert len(offsets) == count
    assert offsets[0] == 0.0
    assert all(math.isclose(b - a, 1 / rate) for a, b in itertools.pairwise(offsets))
    assert offsets[-1] < seconds


def test_the_schedule_counts_whole_bookings_despite_float_rounding() -> None:
    """0.1 * 30 is 3.0000000000000004 and 0.7 * 10 is 7.000000000000001: still 3 and 7."""
    assert len(arrival_offsets(0.1, 30)) == 3
    assert len(arrival_offsets(0.7, 10)) == 7
    assert len(arrival_offsets(3, 0.7)) == 2


@pytest.mark.parametrize(("rate", "seconds"), [(0, 10), (-1, 10), (10, 0)])
def test_the_schedule_refuses_a_rate_or_length_that_is_not_positive(
    rate: float, seconds: float
) -> None:
    with pytest.raises(ValueError, match="positive"):
        arrival_offsets(rate, seconds)


def test_rates_are_parsed_sorted_and_without_repeats() -> None:
    assert parse_rates("50, 10,25,,10") == (10.0, 25.0, 50.0)
    assert parse_rates("2.5") == (2.5,)


@pytest.mark.parametrize("text", ["", ",", "10,0", "-5", "nan", "inf", "ten"])
def test_rates_that_are_not_positive_numbers_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r"rate|float"):
        parse_rates(text)


def test_the_default_rates_are_ascending_and_positive() -> None:
    assert list(DEFAULT_RATES) == sorted(DEFAULT_RATES)
    assert all(rate > 0 for rate in DEFAULT_RATES)


@pytest.mark.parametrize(
    ("bookings", "flights", "seats"), [(23_550, 1, 10_000), (23_550, 8, 10_000), (7, 3, 2)]
)
def test_the_fare_plan_gives_no_fare_more_bookings_than_seats(
    bookings: int, flights: int, seats: int
) -> None:
    fares = fare_plan(bookings, flights, seats)

    taken = collections.Counter((n % flights, n // flights % fares) for n in range(bookings))
    assert max(taken.values()) <= seats
    assert fare_plan(1, flights, seats) == 1


def test_a_backlog_that_only_fluctuates_has_no_growth() -> None:
    points = [_point(t / 2, 20 + (1 if t % 2 else -1)) for t in range(40)]

    assert abs(backlog_growth(points, since=10)) < 1


def test_a_backlog_growing_steadily_grows_by_its_slope_over_the_window() -> None:
    points = [_point(t, 5 * t) for t in range(31)]

    assert backlog_growth(points, since=15) == pytest.approx(75)


def test_the_backlog_filling_before_the_window_is_not_growth() -> None:
    """A step starts empty: the backlog rises to rate x latency, then stays there."""
    points = [_point(t / 10, min(t, 10)) for t in range(300)]

    assert backlog_growth(points, since=15) == pytest.approx(0)


def test_too_few_points_in_the_window_show_no_growth() -> None:
    assert backlog_growth([_point(0, 0), _point(20, 5)], since=10) == 0.0
    assert backlog_growth([], since=0) == 0.0


def test_a_backlog_is_flat_when_it_grows_by_at_most_five_percent_of_the_offered() -> None:
    start = drained = _point(0, 3, 4.0)

    assert backlog_flat(growth=50, offered_meanwhile=1000, start=start, drained=drained)
    assert not backlog_flat(growth=80, offered_meanwhile=1000, start=start, drained=drained)


def test_a_backlog_is_not_flat_when_the_drain_leaves_bookings_or_saga_lag_behind() -> None:
    start = _point(0, 3, 4.0)

    assert backlog_flat(growth=0, offered_meanwhile=100, start=start, drained=_point(9, 5, 14.0))
    assert not backlog_flat(
        growth=0, offered_meanwhile=100, start=start, drained=_point(9, 40, 0.0)
    )
    assert not backlog_flat(
        growth=0, offered_meanwhile=100, start=start, drained=_point(9, 0, 500.0)
    )


def test_a_step_passes_when_it_confirms_95_percent_of_its_offered_rate_with_a_flat_backlog() -> (
    None
):
    assert step_passes(_step(100, confirmed=100 * CONFIRMED_SHARE))
    assert not step_passes(_step(100, confirmed=94))
    assert not step_passes(_step(100, flat=False))


def test_a_step_whose_generator_fell_behind_its_rate_does_not_pass() -> None:
    """Its rate was never offered, however well the system kept up with what was."""
    assert not step_passes(_step(400, offered=300))


def test_capacity_is_the_highest_rate_whose_step_passes() -> None:
    steps = [_step(10), _step(25), _step(50, flat=False), _step(100), _step(200, confirmed=20)]

    assert capacity(steps) == 100


def test_there_is_no_capacity_when_no_step_passes() -> None:
    assert capacity([_step(10, confirmed=0), _step(25, flat=False)]) is None
    assert capacity([]) is None
