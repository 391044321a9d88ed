"""Whether an error means "a server is away" (ride it out) or a bug (ADR 0018).

:func:`unavailable_server` looks along an exception's chain of causes for the error a
client library raises when its server cannot be reached (refused, reset, shut down, timed
out, a pool that found no connection in time) and names that server. The APIs answer
those with ``503`` and ``Retry-After``, the workers wait and try again without exiting;
anything else is a bug and stays a ``500`` (or a process that exits and is restarted).
"""

from __future__ import annotations

import psycopg
import pymongo.errors
import redis.exceptions
from eventsourcing.persistence import InterfaceError, OperationalError

__all__ = ("RETRY_AFTER_SECONDS", "unavailable_server")

RETRY_AFTER_SECONDS = 2
"""What an API answered 503 during an outage tells its client to wait."""

_BY_SERVER: tuple[tuple[str, tuple[type[BaseException], ...]], ...] = (
    # psycopg_pool.PoolTimeout is an OperationalError; eventsourcing wraps psycopg's as its own
    ("postgres", (psycopg.OperationalError, psycopg.InterfaceError)),
    ("postgres", (OperationalError, InterfaceError)),
    ("mongo", (pymongo.errors.ConnectionFailure, pymongo.errors.NetworkTimeout)),
    ("redis", (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)),
)


def unavailable_server(exc: BaseException) -> str | None:
    """The server whose absence ``exc`` (or one of its causes) reports; None for other errors."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        for server, kinds in _BY_SERVER:
            if isinstance(current, kinds):
                return server
        current = current.__cause__ or current.__context__
    return None
