"""Connections of the event store's database taken from a psycopg pool.

:func:`autocommit`: a pooled connection on which each statement is its own transaction.
A pool's connections open a transaction at their first statement and commit it when
they go back, so one read cost three statements (BEGIN, the read, COMMIT) and its own
transaction; a single-statement read or write needs none of that.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from psycopg import pq

if TYPE_CHECKING:
    from collections.abc import Iterator

    import psycopg
    from psycopg_pool import ConnectionPool

__all__ = ("autocommit",)


@contextlib.contextmanager
def autocommit(pool: ConnectionPool[Any]) -> Iterator[psycopg.Connection[Any]]:
    """A pooled connection in autocommit mode, given back in the mode it came in.

    The pool may be shared with users who expect their own setting, so it is restored; a
    broken connection is left alone (the pool discards it, and changing it would raise).
    """
    with pool.connection() as conn:
        was = conn.autocommit
        if not was:
            conn.autocommit = True
        try:
            yield conn
        finally:
            if not was and conn.info.transaction_status == pq.TransactionStatus.IDLE:
                conn.autocommit = False
