"""Whether an access token's session is still live, as the APIs see it (ADR 0019).

The identity service keeps every live session as a Redis key (:func:`session_key`,
expiring with the session) beside its durable record in PostgreSQL, and deletes the key
when the session is revoked (logout, a reused refresh token, a role change). An API
looks the key up at most once per ``session_cache_seconds`` per session and process
(:class:`SessionCheck`), so a revoked session's token is refused within that time and a
busy session costs one Redis round trip per few seconds, not one per request.

While Redis is away, a session this process saw live recently is still accepted (its
tokens expire within minutes); one it cannot vouch for makes the request a 503 (ADR 0018).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import redis.asyncio
from litestar.plugins import InitPlugin
from redis.exceptions import RedisError

from flightbook.config.settings import require

if TYPE_CHECKING:
    from litestar import Litestar
    from litestar.config.app import AppConfig

    from flightbook.config.settings import Settings

__all__ = ("SESSIONS_STATE_KEY", "SessionCheck", "SessionCheckPlugin", "session_key")

SESSIONS_STATE_KEY = "flightbook_sessions"
"""Key of ``app.state`` holding the app's :class:`SessionCheck`."""
_REMEMBERED = 100_000  # sessions remembered per process; the oldest half is dropped beyond
_STALE_SECONDS = 900.0  # the longest a session seen live is trusted while Redis is away


def session_key(prefix: str, session_id: str) -> str:
    """The Redis key of a live session (the identity service writes it, the APIs read it)."""
    return f"{prefix}session:{session_id}"


class SessionCheck:
    """Looks sessions up in Redis, remembering each answer for ``cache_seconds``."""

    def __init__(self, client: redis.asyncio.Redis, *, prefix: str, cache_seconds: float) -> None:
        self._client = client
        self._prefix = prefix
        self._cache_seconds = cache_seconds
        self._seen: dict[str, tuple[bool, float]] = {}

    async def alive(self, session_id: str) -> bool:
        """Whether the session is live (at most ``cache_seconds`` old news).

        Raises:
            RedisError: Redis is away and this process has not seen the session live lately.
        """
        now = time.monotonic()
        seen = self._seen.get(session_id)
        if seen is not None and now - seen[1] < self._cache_seconds:
            return seen[0]
        try:
            live = bool(await self._client.exists(session_key(self._prefix, session_id)))
        except RedisError:
            if seen is not None and seen[0] and now - seen[1] < _STALE_SECONDS:
                return True
            raise
        self._remember(session_id, live, now)
        return live

    def _remember(self, session_id: str, live: bool, now: float) -> None:
        if len(self._seen) >= _REMEMBERED:
            for old in list(self._seen)[: _REMEMBERED // 2]:
                del self._seen[old]
        self._seen[session_id] = (live, now)

    async def close(self) -> None:
        await self._client.aclose()


class SessionCheckPlugin(InitPlugin):
    """Opens the app's :class:`SessionCheck` at start-up (``app.state``) and closes it."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    def on_app_init(self, app_config: AppConfig) -> AppConfig:
        settings = self._settings

        async def open_check(app: Litestar) -> None:
            client = redis.asyncio.Redis.from_url(
                require(settings.redis_url, "redis_url"), socket_timeout=2
            )
            app.state[SESSIONS_STATE_KEY] = SessionCheck(
                client, prefix=settings.redis_prefix, cache_seconds=settings.session_cache_seconds
            )

        async def close_check(app: Litestar) -> None:
            check: Any = app.state.get(SESSIONS_STATE_KEY)
            if isinstance(check, SessionCheck):
                await check.close()

        app_config.on_startup = [open_check, *app_config.on_startup]
        app_config.on_shutdown = [*app_config.on_shutdown, close_check]
        return app_config
