"""The saga's durable to-do list (``saga.jobs``): work that waits for a time or a gateway.

Jobs are created and completed by rows (:mod:`flightbook.eventstore.rows`) that ride in
the transaction of the events that make them necessary or complete them
(``ContextApplication.record``), so a crash can neither lose a job nor complete one
twice. Workers claim due jobs with a lease; a claimed job whose worker died becomes due
again when the lease ends. :class:`PostgresJobQueue` and :class:`MemoryJobQueue` are the
two homes of the table.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol
from uuid import UUID

import msgspec

if TYPE_CHECKING:
    from collections.abc import Sequence

    from psycopg_pool import ConnectionPool

    from flightbook.eventstore.memory import MemoryDatabase
    from flightbook.eventstore.rows import Statement

__all__ = (
    "CompleteJob",
    "DropJob",
    "Job",
    "JobKind",
    "JobQueue",
    "MemoryJobQueue",
    "PostgresJobQueue",
    "ScheduleJob",
    "complete_job",
    "drop_job",
    "schedule_job",
)

LEASE = dt.timedelta(seconds=60)
TABLE = "saga.jobs"


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


# -- rows: written with the events -----------------------------------------------------------


@dataclass(frozen=True)
class ScheduleJob:
    """Create the job, or move an existing one to ``due_at`` (and reset its attempts)."""

    booking_id: UUID
    kind: JobKind
    due_at: dt.datetime
    correlation_id: str

    def sql(self) -> Statement:
        return self.sql_many([self])

    def key(self) -> object:
        return (self.booking_id, self.kind)

    @classmethod
    def sql_many(cls, rows: Sequence[ScheduleJob]) -> Statement:
        return (
            "INSERT INTO saga.jobs (booking_id, kind, due_at, correlation_id) "
            "SELECT * FROM unnest(%s::uuid[], %s::text[], %s::timestamptz[], %s::text[]) "
            "ON CONFLICT (booking_id, kind) DO UPDATE "
            "SET due_at = excluded.due_at, attempts = 0, last_error = NULL",
            (
                [r.booking_id for r in rows],
                [r.kind.value for r in rows],
                [r.due_at for r in rows],
                [r.correlation_id for r in rows],
            ),
        )

    def check(self, database: MemoryDatabase) -> None:
        pass

    def apply(self, database: MemoryDatabase) -> None:
        table = database.table(TABLE)
        current = table.get((self.booking_id, self.kind))
        table[(self.booking_id, self.kind)] = {
            "due_at": self.due_at,
            "attempts": 0,
            "last_error": None,
            "correlation_id": current["correlation_id"] if current else self.correlation_id,
        }


@dataclass(frozen=True)
class CompleteJob:
    """Remove the job this worker claimed, unless it was rescheduled meanwhile."""

    booking_id: UUID
    kind: JobKind
    attempts: int

    def sql(self) -> Statement:
        return (
            "DELETE FROM saga.jobs WHERE booking_id = %s AND kind = %s AND attempts = %s",
            (self.booking_id, self.kind.value, self.attempts),
        )

    def key(self) -> object:
        return (self.booking_id, self.kind)

    @classmethod
    def sql_many(cls, rows: Sequence[CompleteJob]) -> Statement:
        return (
            "DELETE FROM saga.jobs WHERE (booking_id, kind, attempts) IN "
            "(SELECT * FROM unnest(%s::uuid[], %s::text[], %s::integer[]))",
            (
                [r.booking_id for r in rows],
                [r.kind.value for r in rows],
                [r.attempts for r in rows],
            ),
        )

    def check(self, database: MemoryDatabase) -> None:
        pass

    def apply(self, database: MemoryDatabase) -> None:
        table = database.table(TABLE)
        current = table.get((self.booking_id, self.kind))
        if current is not None and current["attempts"] == self.attempts:
            del table[(self.booking_id, self.kind)]


@dataclass(frozen=True)
class DropJob:
    """Remove a job that is no longer needed, whoever holds it."""

    booking_id: UUID
    kind: JobKind

    def sql(self) -> Statement:
        return (
            "DELETE FROM saga.jobs WHERE booking_id = %s AND kind = %s",
            (self.booking_id, self.kind.value),
        )

    def key(self) -> object:
        return (self.booking_id, self.kind)

    @classmethod
    def sql_many(cls, rows: Sequence[DropJob]) -> Statement:
        return (
            "DELETE FROM saga.jobs WHERE (booking_id, kind) IN "
            "(SELECT * FROM unnest(%s::uuid[], %s::text[]))",
            ([r.booking_id for r in rows], [r.kind.value for r in rows]),
        )

    def check(self, database: MemoryDatabase) -> None:
        pass

    def apply(self, database: MemoryDatabase) -> None:
        database.table(TABLE).pop((self.booking_id, self.kind), None)


def schedule_job(
    booking_id: UUID, kind: JobKind, due_at: dt.datetime, correlation_id: str
) -> ScheduleJob:
    return ScheduleJob(booking_id, kind, due_at, correlation_id)


def complete_job(job: Job) -> CompleteJob:
    return CompleteJob(job.booking_id, job.kind, job.attempts)


def drop_job(booking_id: UUID, kind: JobKind) -> DropJob:
    return DropJob(booking_id, kind)


# -- the queue: claims and reschedules --------------------------------------------------------


class JobQueue(Protocol):
    """Claims due jobs and reschedules failed ones."""

    def claim(self, limit: int, now: dt.datetime, *, conn: Any = None) -> list[Job]:
        """Lease up to ``limit`` due jobs; each claim increments the job's attempts.

        ``conn``: claim in this connection's transaction (a session), else on its own.
        """
        ...

    def retry_later(self, job: Job, due_at: dt.datetime, error: str) -> None: ...

    def next_due(self) -> dt.datetime | None: ...

    def pending(self) -> int: ...


class PostgresJobQueue:
    """``saga.jobs`` in PostgreSQL.

    Args:
        pool: connections to the event store database.
    """

    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool

    def claim(self, limit: int, now: dt.datetime, *, conn: Any = None) -> list[Job]:
        with contextlib.ExitStack() as stack:
            if conn is None:
                conn = stack.enter_context(self._pool.connection())
            rows = conn.execute(
                "UPDATE saga.jobs SET due_at = %s, attempts = attempts + 1 "
                "WHERE (booking_id, kind) IN (SELECT booking_id, kind FROM saga.jobs "
                "  WHERE due_at <= %s ORDER BY due_at LIMIT %s FOR UPDATE SKIP LOCKED) "
                "RETURNING booking_id, kind, due_at, attempts, correlation_id",
                (now + LEASE, now, limit),
            ).fetchall()
        return [_job(row) for row in rows]

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


def _job(row: Any) -> Job:
    """A claimed job from its row (a tuple, or a dict on the event store's connections)."""
    if isinstance(row, dict):
        row = (
            row["booking_id"],
            row["kind"],
            row["due_at"],
            row["attempts"],
            row["correlation_id"],
        )
    return Job(
        booking_id=row[0],
        kind=JobKind(row[1]),
        due_at=row[2],
        attempts=row[3],
        correlation_id=row[4],
    )


def _job_key(key: object) -> tuple[UUID, JobKind]:
    if not isinstance(key, tuple) or len(key) != 2:  # pragma: no cover - written by the rows
        raise TypeError(f"not a job key: {key!r}")
    booking_id, kind = key
    return UUID(str(booking_id)), JobKind(kind)


class MemoryJobQueue:
    """``saga.jobs`` in the in-memory event store's tables.

    Args:
        database: the tables the in-memory recorders write the jobs' rows to.
    """

    def __init__(self, database: MemoryDatabase) -> None:
        self._database = database

    def claim(self, limit: int, now: dt.datetime, *, conn: Any = None) -> list[Job]:
        with self._database.lock:
            table = self._database.table(TABLE)
            due = sorted((row["due_at"], key) for key, row in table.items() if row["due_at"] <= now)
            claimed = []
            for _due_at, key in due[:limit]:
                row = table[key]
                row["due_at"], row["attempts"] = now + LEASE, row["attempts"] + 1
                booking_id, kind = _job_key(key)
                claimed.append(
                    Job(
                        booking_id=booking_id,
                        kind=kind,
                        due_at=row["due_at"],
                        attempts=row["attempts"],
                        correlation_id=row["correlation_id"],
                    )
                )
            return claimed

    def retry_later(self, job: Job, due_at: dt.datetime, error: str) -> None:
        with self._database.lock:
            row = self._database.table(TABLE).get((job.booking_id, job.kind))
            if row is not None and row["attempts"] == job.attempts:
                row["due_at"], row["last_error"] = due_at, error[:500]

    def next_due(self) -> dt.datetime | None:
        with self._database.lock:
            rows = self._database.table(TABLE).values()
            return min((row["due_at"] for row in rows), default=None)

    def pending(self) -> int:
        with self._database.lock:
            return len(self._database.table(TABLE))

    def jobs(self) -> dict[tuple[UUID, JobKind], dict[str, object]]:
        """Every job, by (booking id, kind) (for tests)."""
        with self._database.lock:
            return {key: dict(row) for key, row in self._database.table(TABLE).items()}  # type: ignore[misc]
