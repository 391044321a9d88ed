"""Sessions: the durable record in PostgreSQL, the live copy in Redis (ADR 0019).

A login opens a session (``identity.sessions``) and issues its first refresh token; each
refresh spends the token presented and issues the next (``identity.refresh_tokens``, only
SHA-256 hashes stored). Presenting a spent token again means it was stolen or replayed:
the whole session is revoked. A revoked session's Redis key
(:func:`~flightbook.http.sessions.session_key`) is deleted, and the APIs refuse its access
tokens within their cache time.

Redis is written after PostgreSQL commits: a crash between the two leaves a live session
without its key (its tokens are refused until the next refresh writes the key again), or,
on revocation, a key whose record is revoked (:meth:`SessionStore.revoke` deletes it
first, then records; a refresh of a revoked record never succeeds).
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from flightbook.http.sessions import session_key
from flightbook.identity.accounts import record_change

if TYPE_CHECKING:
    import redis
    from psycopg_pool import ConnectionPool

__all__ = ("RefreshOutcome", "SessionStore", "token_hash")

_REFRESH_PREFIX = "rt_"


def token_hash(refresh_token: str) -> str:
    """What is stored of a refresh token (a random 256-bit value: SHA-256 is enough)."""
    return hashlib.sha256(refresh_token.encode()).hexdigest()


def _new_refresh_token() -> str:
    return _REFRESH_PREFIX + secrets.token_urlsafe(32)


@dataclass(frozen=True)
class RefreshOutcome:
    """What presenting a refresh token did.

    ``token`` and ``account_id`` are set when a new pair may be issued; ``reused`` when the
    token had been spent already and its session was revoked for it.
    """

    session_id: str | None
    account_id: str | None
    token: str | None
    reused: bool = False


class SessionStore:
    """Opens, rotates and revokes sessions in PostgreSQL and Redis."""

    def __init__(
        self,
        pool: ConnectionPool,
        cache: redis.Redis,
        *,
        redis_prefix: str,
        lifetime_seconds: int,
    ) -> None:
        self.pool = pool
        self.cache = cache
        self.prefix = redis_prefix
        self.lifetime = timedelta(seconds=lifetime_seconds)

    def open(self, account_id: str) -> tuple[str, str]:
        """A new session of the account: its id and first refresh token."""
        session_id = uuid.uuid4().hex
        token = _new_refresh_token()
        expires = datetime.now(UTC) + self.lifetime
        with self.pool.connection() as conn, conn.transaction(), conn.cursor() as cursor:
            cursor.execute(
                "INSERT INTO identity.sessions (session_id, account_id, expires_at)"
                " VALUES (%s, %s, %s)",
                (session_id, account_id, expires),
            )
            cursor.execute(
                "INSERT INTO identity.refresh_tokens (token_hash, session_id) VALUES (%s, %s)",
                (token_hash(token), session_id),
            )
        self._publish(session_id, account_id, expires)
        return session_id, token

    def refresh(self, refresh_token: str) -> RefreshOutcome:
        """Spend ``refresh_token`` and issue the next one, or revoke the session on reuse."""
        hashed = token_hash(refresh_token)
        expires: datetime | None = None
        with self.pool.connection() as conn, conn.transaction(), conn.cursor() as cursor:
            cursor.execute(
                "UPDATE identity.refresh_tokens SET spent_at = now()"
                " WHERE token_hash = %s AND spent_at IS NULL RETURNING session_id",
                (hashed,),
            )
            spent = cursor.fetchone()
            if spent is None:
                cursor.execute(
                    "SELECT session_id FROM identity.refresh_tokens WHERE token_hash = %s",
                    (hashed,),
                )
                known = cursor.fetchone()
                reused = known is not None
                session_id = None if known is None else str(known[0])
                outcome = RefreshOutcome(session_id, None, None, reused=reused)
            else:
                session_id = str(spent[0])
                cursor.execute(
                    "SELECT account_id, expires_at FROM identity.sessions"
                    " WHERE session_id = %s AND revoked_at IS NULL AND expires_at > now()"
                    " FOR UPDATE",
                    (session_id,),
                )
                live = cursor.fetchone()
                if live is None:
                    outcome = RefreshOutcome(session_id, None, None)
                else:
                    token = _new_refresh_token()
                    cursor.execute(
                        "INSERT INTO identity.refresh_tokens (token_hash, session_id)"
                        " VALUES (%s, %s)",
                        (token_hash(token), session_id),
                    )
                    outcome = RefreshOutcome(session_id, str(live[0]), token)
                    expires = live[1]
        if outcome.reused and outcome.session_id is not None:
            self.revoke(outcome.session_id, reason="refresh_token_reused", actor="identity")
        elif outcome.token is not None and outcome.session_id and outcome.account_id and expires:
            self._publish(outcome.session_id, outcome.account_id, expires)
        return outcome

    def revoke(self, session_id: str, *, reason: str, actor: str) -> bool:
        """Revoke one session (Redis first, then the record); False if it was not live."""
        self.cache.delete(session_key(self.prefix, session_id))
        with self.pool.connection() as conn, conn.transaction(), conn.cursor() as cursor:
            cursor.execute(
                "UPDATE identity.sessions SET revoked_at = now(), revoked_reason = %s"
                " WHERE session_id = %s AND revoked_at IS NULL RETURNING account_id",
                (reason, session_id),
            )
            row = cursor.fetchone()
            if row is not None:
                record_change(
                    cursor, str(row[0]), actor, "session_revoked", session=session_id, reason=reason
                )
        return row is not None

    def revoke_all(self, account_id: str, *, reason: str, actor: str) -> int:
        """Revoke every live session of the account; how many there were."""
        with self.pool.connection() as conn:
            rows = conn.execute(
                "SELECT session_id FROM identity.sessions"
                " WHERE account_id = %s AND revoked_at IS NULL",
                (account_id,),
            ).fetchall()
        return sum(self.revoke(str(row[0]), reason=reason, actor=actor) for row in rows)

    def _publish(self, session_id: str, account_id: str, expires: datetime) -> None:
        seconds = max(1, int((expires - datetime.now(UTC)).total_seconds()))
        self.cache.set(session_key(self.prefix, session_id), account_id, ex=seconds)
