"""The saga's durable to-do list (``saga.jobs``): work that waits for a time or a gateway.

Jobs are created and completed by SQL statements that ride in the transaction of the
events that make them necessary or complete them (``ContextApplication.record``), so
a crash can neither lose a job nor complete one twice. Workers claim due jobs with a
lease; a claimed job whose worker died becomes due again when the lease ends.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import TYPE_CHECKING
from uuid import UUID

import msgspec

if TYPE_CHECKING:
    from psycopg_pool import ConnectionPool

    from flightbook.eventstore.recorder import Statement

__all__ = ("Job", "JobKind", "JobQueue", "complete_job", "drop_job", "schedule_job")

LEASE = dt.timedelta(seconds=60)


class JobKind(StrEnum):
    AUTHORIZE_PAYMENT = "authorize_payment"
    EXPIRE_HOLD = "expire_hold"
    SETTLE_PAYMENT = "settle_payment"


class Job(msgspec.Struct, frozen=True, kw_only=True):
    booking_id: UUID
    kind: JobKind
    due_at: dt.datetime
    attempts: int
    correlation_id: str


def schedule_job(
    booking_id: UUID, kind: JobKind, due_at: dt.datetime, correlation_id: str
) -> Statement:
    """Create the job, or move an existing one to ``due_at`` (and reset its attempts)."""
    return (
        "INSERT INTO saga.jobs (booking_id, kind, due_at, correlation_id) "
        "VALUES (%s, %s, %s, %s) ON CONFLICT (booking_id, kind) DO UPDATE "
        "SET due_at = excluded.due_at, attempts = 0, last_error = NULL",
        (booking_id, kind.value, due_at, correlation_id),
    )


def complete_job(job: Job) -> Statement:
    """Remove the job this worker claimed, unless it was rescheduled meanwhile."""
    return (
        "DELETE FROM saga.jobs WHERE booking_id = %s AND kind = %s AND attempts = %s",
        (job.booking_id, job.kind.value, job.attempts),
    )


def drop_job(booking_id: UUID, kind: JobKind) -> Statement:
    """Remove a job that is no longer needed, whoever holds it."""
    return ("DELETE FROM saga.jobs WHERE booking_id = %s AND kind = %s", (booking_id, kind.value))


class JobQueue:
    """Claims due jobs and reschedules failed ones.

    Args:
        pool: connections to the event store database.
    """

    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool

    def claim(self, limit: int, now: dt.datetime) -> list[Job]:
        """Lease up to ``limit`` due jobs; each claim increments the job's attempts."""
        with self._pool.connection() as conn:
            rows = conn.execute(
                "UPDATE saga.jobs SET due_at = %s, attempts = attempts + 1 "
                "WHERE (booking_id, kind) IN (SELECT booking_id, kind FROM saga.jobs "
                "  WHERE due_at <= %s ORDER BY due_at LIMIT %s FOR UPDATE SKIP LOCKED) "
                "RETURNING booking_id, kind, due_at, attempts, correlation_id",
                (now + LEASE, now, limit),
            ).fetchall()
        return [
            Job(
                booking_id=r[0], kind=JobKind(r[1]), due_at=r[2], attempts=r[3], correlation_id=r[4]
            )
            for r in rows
        ]

    def retry_later(self, job: Job, due_at: dt.datetime, error: str) -> None:
        with self._pool.connection() as conn:
            conn.execute(
                "UPDATE saga.jobs SET due_at = %s, last_error = %s "
                "WHERE booking_id = %s AND kind = %s AND attempts = %s",
                (due_at, error[:500], job.booking_id, job.kind.value, job.attempts),
            )

    def next_due(self) -> dt.datetime | None:
        with self._pool.connection() as conn:
            row = conn.execute("SELECT min(due_at) FROM saga.jobs").fetchone()
        return row[0] if row else None

    def pending(self) -> int:
        with self._pool.connection() as conn:
            row = conn.execute("SELECT count(*) FROM saga.jobs").fetchone()
        return int(row[0]) if row else 0
