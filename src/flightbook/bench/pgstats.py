"""What PostgreSQL itself says about the bookings: commit times, commits, statements, backlog.

End-to-end latency is measured on the server, from each transaction's commit timestamp
(``pg_xact_commit_timestamp(xmin)`` of the event rows; needs ``track_commit_timestamp``):
from the commit of a booking's ``Requested`` event to the commit of its ``Confirmed``.
Commits come from ``pg_stat_database.xact_commit`` and statements from
``pg_stat_statements`` (needs ``shared_preload_libraries = pg_stat_statements``); the local
stack's server runs with both (:mod:`flightbook.stack.servers`), and so does compose's.

The probe's own queries are counted, so that they can be taken out of the figures.
``pg_stat_database`` is fed by each backend at most once a second (and an idle one's last
second may come up to ten seconds later), so commit counts over a window are close, not
exact; ``pg_stat_statements`` counts each statement as it ends.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, LiteralString

import psycopg
from eventsourcing.utils import get_topic
from psycopg import sql

from flightbook.domain.booking import Booking
from flightbook.eventstore.contexts import BOOKING

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ("Counters", "Outcomes", "PostgresProbe")

REQUESTED = get_topic(Booking.Requested)
CONFIRMED = get_topic(Booking.Confirmed)
REJECTED = get_topic(Booking.Rejected)
CANCELLED = get_topic(Booking.Cancelled)
_IN_PROGRESS = sql.SQL("booking.bookings_in_progress")


@dataclass(frozen=True)
class Counters:
    """The database's cumulative counters at one moment.

    Attributes:
        commits: ``pg_stat_database.xact_commit`` of the database.
        statements: Sum of ``pg_stat_statements.calls`` in the database; None without it.
        own: Queries the probes had sent before this snapshot (to take out of a delta).
    """

    commits: int
    statements: int | None
    own: int
    next_xid: int = 0

    def since(self, earlier: Counters) -> tuple[int, int | None]:
        """Commits and statements of everyone but the probes, from ``earlier`` to this one."""
        own = self.own - earlier.own
        commits = max(0, self.commits - earlier.commits - own)
        statements = None
        if self.statements is not None and earlier.statements is not None:
            statements = max(0, self.statements - earlier.statements - own)
        return commits, statements

    def writes_since(self, earlier: Counters) -> int:
        """Transactions that wrote (were given a transaction id) from ``earlier`` to this one.

        ``xact_commit`` also counts every read-only transaction (an autocommit SELECT is
        one); a transaction gets an id only when it first writes, and the probes never do.
        """
        return max(0, self.next_xid - earlier.next_xid)


@dataclass(frozen=True)
class Outcomes:
    """Where a set of bookings stands, from their events.

    Attributes:
        confirmed: Bookings with a ``Confirmed`` event.
        rejected: Bookings with a ``Rejected`` event.
        cancelled: Bookings with a ``Cancelled`` event.
        end_to_end: Seconds from each confirmed booking's ``Requested`` commit to its
            ``Confirmed`` commit; None when the server does not track commit times.
    """

    confirmed: int
    rejected: int
    cancelled: int
    end_to_end: list[float] | None


class PostgresProbe:
    """One autocommit connection for the benchmark's own questions to the database.

    Each probe counts the queries it sent (``sent``), so that :meth:`counters` can take
    them out of the figures: its own and those of the probes passed as ``also`` (another
    thread's, say).

    Args:
        url: The database of the system under test.
    """

    def __init__(self, url: str) -> None:
        self._conn: psycopg.Connection[tuple[Any, ...]] = psycopg.connect(url, autocommit=True)
        self.sent = 0

    def close(self) -> None:
        self._conn.close()

    def _rows(
        self, query: LiteralString | sql.SQL | sql.Composed, params: Sequence[Any] = ()
    ) -> list[tuple[Any, ...]]:
        self.sent += 1
        cursor = self._conn.execute(query, params)
        return cursor.fetchall() if cursor.description is not None else []

    def _setting(self, name: str) -> str:
        rows = self._rows("SELECT current_setting(%s)", (name,))
        return str(rows[0][0])

    def tracks_commit_times(self) -> bool:
        return self._setting("track_commit_timestamp") == "on"

    def enable_statements(self) -> bool:
        """Create the ``pg_stat_statements`` view if the server has the module loaded."""
        libraries = [x.strip() for x in self._setting("shared_preload_libraries").split(",")]
        if "pg_stat_statements" not in libraries:
            return False
        self._rows("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        return True

    def counters(self, *, statements: bool, also: Sequence[PostgresProbe] = ()) -> Counters:
        own = self.sent + sum(probe.sent for probe in also)
        rows = self._rows(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
        )
        calls = None
        if statements:
            found = self._rows(
                "SELECT coalesce(sum(calls), 0) FROM pg_stat_statements WHERE dbid = "
                "(SELECT oid FROM pg_database WHERE datname = current_database())"
            )
            calls = int(found[0][0])
        xid = self._rows("SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint")
        return Counters(commits=int(rows[0][0]), statements=calls, own=own, next_xid=int(xid[0][0]))

    def statement_calls(self) -> dict[int, tuple[str, int]]:
        """Calls so far of each statement of the database (queryid -> (text, calls))."""
        rows = self._rows(
            "SELECT queryid, query, calls FROM pg_stat_statements WHERE dbid = "
            "(SELECT oid FROM pg_database WHERE datname = current_database())"
        )
        return {int(r[0]): (str(r[1]), int(r[2])) for r in rows if r[0] is not None}

    def in_progress(self, booking_ids: Sequence[str] | None = None) -> int:
        """Bookings requested and not yet final: all of them, or those of ``booking_ids``."""
        if booking_ids is None:
            rows = self._rows(sql.SQL("SELECT count(*) FROM {}").format(_IN_PROGRESS))
        else:
            rows = self._rows(
                sql.SQL("SELECT count(*) FROM {} WHERE booking_id = ANY(%s::uuid[])").format(
                    _IN_PROGRESS
                ),
                (list(booking_ids),),
            )
        return int(rows[0][0])

    def outcomes(self, booking_ids: Sequence[str], *, commit_times: bool) -> Outcomes:
        """How ``booking_ids`` ended, and (with ``commit_times``) how long confirming took."""
        ids = list(booking_ids)
        counted = self._rows(
            sql.SQL(
                "SELECT topic, count(DISTINCT originator_id) FROM {} "
                "WHERE originator_id = ANY(%s::uuid[]) AND topic = ANY(%s) GROUP BY topic"
            ).format(BOOKING.events),
            (ids, [CONFIRMED, REJECTED, CANCELLED]),
        )
        by_topic = {str(topic): int(count) for topic, count in counted}
        end_to_end = None
        if commit_times:
            rows = self._rows(
                sql.SQL(
                    "SELECT extract(epoch FROM pg_xact_commit_timestamp(c.xmin) "
                    "- pg_xact_commit_timestamp(r.xmin)) "
                    "FROM {events} AS r JOIN {events} AS c USING (originator_id) "
                    "WHERE r.originator_id = ANY(%s::uuid[]) AND r.topic = %s AND c.topic = %s"
                ).format(events=BOOKING.events),
                (ids, REQUESTED, CONFIRMED),
            )
            end_to_end = [float(row[0]) for row in rows if row[0] is not None]
        return Outcomes(
            confirmed=by_topic.get(CONFIRMED, 0),
            rejected=by_topic.get(REJECTED, 0),
            cancelled=by_topic.get(CANCELLED, 0),
            end_to_end=end_to_end,
        )
