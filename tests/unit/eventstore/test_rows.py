"""A batch's rows become statements: a run of one batchable kind is one statement."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence

import pytest

from flightbook.eventstore.inprogress import BookingEnded
from flightbook.eventstore.rows import Row, statements_of
from flightbook.saga.jobs import DropJob, JobKind, ScheduleJob

pytestmark = pytest.mark.unit

NOW = dt.datetime(2026, 12, 2, 12, 0, tzinfo=dt.UTC)


def first_column(params: Sequence[object]) -> list[object]:
    column = params[0]
    assert isinstance(column, list)
    return column


def schedule(booking_id: uuid.UUID, kind: JobKind = JobKind.EXPIRE_HOLD) -> ScheduleJob:
    return ScheduleJob(booking_id, kind, NOW, "c")


def test_a_run_of_one_kind_is_one_statement_with_every_row_in_order() -> None:
    ids = [uuid.uuid4() for _ in range(3)]

    (statement,) = statements_of([schedule(i) for i in ids])

    query, params = statement
    assert "unnest" in str(query)
    assert first_column(params) == ids


def test_rows_keep_their_order_across_kinds() -> None:
    first, second = uuid.uuid4(), uuid.uuid4()
    rows: list[Row] = [schedule(first), BookingEnded(first), DropJob(second, JobKind.EXPIRE_HOLD)]

    statements = statements_of(rows)

    assert [str(q).split()[0] for q, _ in statements] == ["INSERT", "DELETE", "DELETE"]
    assert "bookings_in_progress" in str(statements[1][0])
    assert "saga.jobs" in str(statements[2][0])


def test_a_run_is_cut_before_a_key_it_already_holds() -> None:
    """One multi-row upsert must not touch a row twice: the repeat starts a new statement."""
    booking = uuid.uuid4()
    rows = [
        schedule(booking),
        schedule(uuid.uuid4()),
        schedule(booking),  # the same job again (moved)
        schedule(booking, JobKind.SETTLE_PAYMENT),
    ]

    statements = statements_of(rows)

    assert [len(first_column(params)) for _, params in statements] == [2, 2]
