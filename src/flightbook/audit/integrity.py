"""A hash chain over each context's log: proof that no event was altered, removed or inserted.

``link(n) = sha256(link(n-1) || position || aggregate id || version || topic || state)``.
The :class:`Sealer` appends links as the log grows (under ``flightbook up`` it runs in
the auditor process); :func:`check_chain` recomputes every link from the log and
compares, reporting the first position where log and chain disagree. The head link of
each context can be written down elsewhere (printed by the command) to make rewriting
the whole chain detectable too.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

import msgspec
import psycopg

from flightbook.eventstore.contexts import CONTEXT_NAMES

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from eventsourcing.persistence import Notification

    from flightbook.audit.log import EventLog

__all__ = ("ChainBreak", "ChainReport", "Sealer", "check_chain", "link_of")

_GENESIS = b"\x00" * 32
_LOCK = 0x_A0D17  # advisory lock: one sealer per database at a time


def link_of(previous: bytes, notification: Notification) -> bytes:
    digest = hashlib.sha256(previous)
    digest.update(
        f"{notification.id}|{notification.originator_id}|{notification.originator_version}|"
        f"{notification.topic}|".encode()
    )
    digest.update(notification.state)
    return digest.digest()


class ChainBreak(msgspec.Struct, frozen=True, kw_only=True):
    context: str
    position: int
    problem: str  # altered | removed | inserted


class ChainReport(msgspec.Struct, frozen=True, kw_only=True):
    context: str
    checked: int
    sealed_head: int
    log_head: int
    head_link: str
    first_break: ChainBreak | None


class Sealer:
    """Appends links for new events of every context.

    Args:
        url: PostgreSQL URL (needs write access to ``audit.chain``).
        log: a reader of the logs.
        batch_size: events sealed per transaction.
    """

    def __init__(self, url: str, log: EventLog, *, batch_size: int = 1000) -> None:
        self._url = url
        self._log = log
        self._batch = batch_size

    def seal_once(self) -> int:
        """Seal every event not sealed yet; return how many links were added."""
        added = 0
        with psycopg.connect(self._url) as conn:
            for context in CONTEXT_NAMES:
                while True:
                    with conn.transaction():
                        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK,))
                        row = conn.execute(
                            "SELECT position, link FROM audit.chain WHERE context = %s "
                            "ORDER BY position DESC LIMIT 1",
                            (context,),
                        ).fetchone()
                        position, link = (int(row[0]), bytes(row[1])) if row else (0, _GENESIS)
                        rows = []
                        for notification in self._log.stream(
                            context, start=position + 1, stop=position + self._batch
                        ):
                            link = link_of(link, notification)
                            rows.append((context, notification.id, link))
                        if rows:  # one statement for the whole batch
                            conn.execute(
                                "INSERT INTO audit.chain (context, position, link)"
                                " SELECT * FROM unnest(%s::text[], %s::bigint[], %s::bytea[])",
                                ([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]),
                            )
                    added += len(rows)
                    if len(rows) < self._batch:
                        break
        return added


def _chain(
    conn: psycopg.Connection[tuple[Any, ...]], context: str, batch: int = 5000
) -> Iterator[tuple[int, bytes]]:
    position = 0
    while True:
        rows = conn.execute(
            "SELECT position, link FROM audit.chain WHERE context = %s AND position > %s "
            "ORDER BY position LIMIT %s",
            (context, position, batch),
        ).fetchall()
        for row in rows:
            yield int(row[0]), bytes(row[1])
        if len(rows) < batch:
            return
        position = int(rows[-1][0])


def check_chain(
    url: str, log: EventLog, context: str, progress: Callable[[int], None] | None = None
) -> ChainReport:
    """Recompute ``context``'s chain from its log and compare it with the sealed one.

    Events after the sealed head are not judged (they are waiting for the sealer).
    """
    with psycopg.connect(url, autocommit=True) as conn:
        chain = _chain(conn, context)
        events = log.stream(context)
        previous = _GENESIS
        checked = 0
        sealed_head = 0
        first_break: ChainBreak | None = None
        sealed = next(chain, None)
        event = next(events, None)
        while sealed is not None and first_break is None:
            sealed_head = sealed[0]
            if event is None or event.id > sealed[0]:
                first_break = ChainBreak(context=context, position=sealed[0], problem="removed")
                break
            if event.id < sealed[0]:
                first_break = ChainBreak(context=context, position=event.id, problem="inserted")
                break
            previous = link_of(previous, event)
            if previous != sealed[1]:
                first_break = ChainBreak(context=context, position=event.id, problem="altered")
                break
            checked += 1
            if progress is not None and checked % 10000 == 0:
                progress(checked)
            sealed = next(chain, None)
            event = next(events, None)
        for rest in chain:  # the chain's true head, also past a break
            sealed_head = rest[0]
    return ChainReport(
        context=context,
        checked=checked,
        sealed_head=sealed_head,
        log_head=log.head(context),
        head_link=previous.hex(),
        first_break=first_break,
    )
