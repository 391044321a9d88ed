"""``WebSocket /ws/bookings``: the statuses of all the caller's bookings, as they change (ADR 0025).

Each message is one JSON :class:`~flightbook.queries.models.StatusChange` (``type``
``status``, ``booking_id``, ``status``, ``at``, ``version``, ``final``, ``seq``), in order
per booking, each once. ``seq`` counts a booking's statuses (1 = ``REQUESTED``), as the
``id`` of ``GET /bookings/{id}/events`` does. On connect the socket sends what each of the
caller's unfinished bookings reached so far, then every status any of their bookings
reaches. A client that reconnects names what it has: ``?since=<booking_id>:<seq>`` (once per
booking, at most :data:`MAX_SINCE`) sends only what came after, even for a booking that
became final meanwhile; a booking it names that is not the caller's is ignored, exactly as
one that does not exist.

Credentials are those of ``GET /bookings/{id}``: ``Authorization: Bearer <token>``, or, from
a browser (which cannot set that header on a WebSocket), the subprotocols
``flightbook.v1`` and ``bearer.<token>``; the server selects ``flightbook.v1`` and never
echoes the token. The handshake is always accepted; a refusal is a close frame whose code
is ``4000 +`` the HTTP status the same request would get, with a reason a browser can show:

=====  =============================================================================
code   when
=====  =============================================================================
4400   ``since`` is not ``<booking id>:<seq>`` (the reason names it)
4401   no valid token, or its session was revoked (checked again while the socket is
       open, every ``session_cache_seconds``, at least 2 s)
4403   the token has no role this system knows
1013   the process holds :data:`~flightbook.queries.push.MAX_STREAMS` streams, or a
       read-model server is away: reconnect (with ``since``) shortly
=====  =============================================================================

The client sends nothing; what it sends is ignored. The server pings (uvicorn's
``ws_ping_interval``). A socket is one stream of the process's
:class:`~flightbook.queries.push.StreamGate`, shared with the Server-Sent Events, and one
Redis subscription (to its customer's channel). One log line per socket
(``query.socket_closed``), never the token.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from typing import TYPE_CHECKING, Any

import msgspec
import structlog
from litestar import WebSocket, websocket
from litestar.exceptions import WebSocketDisconnect
from pymongo.errors import PyMongoError
from redis.exceptions import RedisError

from flightbook.http.auth import principal_check
from flightbook.http.correlation import correlation_of
from flightbook.http.problems import Problem
from flightbook.http.sessions import SESSIONS_STATE_KEY, SessionCheck

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from litestar import Litestar
    from litestar.handlers import WebsocketRouteHandler

    from flightbook.config.settings import Settings
    from flightbook.http.tokens import Principal
    from flightbook.queries.push import StreamGate
    from flightbook.queries.service import QueryService

__all__ = (
    "MAX_SINCE",
    "PATH",
    "SUBPROTOCOL",
    "TOKEN_SUBPROTOCOL_PREFIX",
    "SinceError",
    "bookings_socket",
    "close_code",
    "credentials",
    "parse_since",
)

PATH = "/ws/bookings"
SUBPROTOCOL = "flightbook.v1"
"""The message protocol; a browser offering its token must offer this too (it is selected)."""
TOKEN_SUBPROTOCOL_PREFIX = "bearer."  # noqa: S105 - a prefix, not a secret
MAX_SINCE = 100
"""The most bookings a reconnecting client may name."""
_MAX_SEQ = 6  # a booking reaches at most its six statuses
_MAX_REASON_BYTES = 123  # RFC 6455: a close frame's reason
_TRY_AGAIN_LATER = 1013
_MIN_RECHECK_SECONDS = 2.0  # at most one Redis EXISTS per socket per 2 s
_encoder = msgspec.json.Encoder()
Socket = WebSocket[Any, Any, Any]
_log = structlog.get_logger("flightbook.queries")


class SinceError(ValueError):
    """A ``since`` value that is not ``<booking id>:<seq>``."""


def credentials(authorization: str | None, subprotocols: Sequence[str]) -> str | None:
    """The ``Authorization`` value to check: the header, else a ``bearer.<token>`` subprotocol."""
    if authorization:
        return authorization
    for offered in subprotocols:
        if offered.startswith(TOKEN_SUBPROTOCOL_PREFIX):
            return "Bearer " + offered.removeprefix(TOKEN_SUBPROTOCOL_PREFIX)
    return None


def parse_since(values: Sequence[str]) -> dict[str, int]:
    """``["<booking id>:<seq>", ...]`` as ``{booking id: seq}`` (ids in their canonical form).

    Raises:
        SinceError: a value is not a UUID, a colon and a count 0..6; a booking named twice;
            more than :data:`MAX_SINCE` values.
    """
    if len(values) > MAX_SINCE:
        raise SinceError(f"since: at most {MAX_SINCE} bookings")
    since: dict[str, int] = {}
    for value in values:
        booking, _, seq = value.partition(":")
        try:
            booking_id = str(uuid.UUID(booking))
        except ValueError:
            raise SinceError("since: each is <booking id>:<seq>, the id a UUID") from None
        if not (seq.isascii() and seq.isdigit() and int(seq) <= _MAX_SEQ):
            raise SinceError(f"since: each is <booking id>:<seq>, seq 0..{_MAX_SEQ}")
        if booking_id in since:
            raise SinceError("since: a booking named twice")
        since[booking_id] = int(seq)
    return since


def close_code(problem: Problem) -> int:
    """The close code of a refusal: ``4000 +`` its HTTP status; a 503 is 1013 (try again later)."""
    return _TRY_AGAIN_LATER if problem.status_code == 503 else 4000 + problem.status_code


def _reason(text: str) -> str:
    return text.encode()[:_MAX_REASON_BYTES].decode(errors="ignore")


async def _until_closed(socket: Socket) -> None:
    # the client sends nothing this needs; reading finds out when it goes
    try:
        while True:
            await socket.receive_data("text")
    except WebSocketDisconnect:
        return


async def _send_changes(
    socket: Socket,
    service: QueryService,
    customer_id: str,
    since: dict[str, int],
    counted: list[int],
) -> None:
    async for change in service.customer_status_changes(customer_id, since=since):
        try:
            await socket.send_data(_encoder.encode(change).decode())
        except (WebSocketDisconnect, OSError):  # uvicorn's ClientDisconnected is an OSError
            return  # the client went
        counted[0] += 1


async def _until_revoked(socket: Socket, session_id: str | None, every: float) -> None:
    # a socket outlives many requests: its session is checked again as a request's would be
    if session_id is None:
        await asyncio.Event().wait()  # a sessionless token (local stack only): never
        return
    sessions = socket.app.state.get(SESSIONS_STATE_KEY)
    if not isinstance(sessions, SessionCheck):  # pragma: no cover - a wiring mistake
        raise RuntimeError("this app has no SessionCheckPlugin: sessions cannot be checked")
    while await sessions.alive(session_id):
        await asyncio.sleep(every)


async def _stream_until_closed(
    socket: Socket,
    service: QueryService,
    principal: Principal,
    since: dict[str, int],
    counted: list[int],
    *,
    recheck: float,
) -> None:
    """Send the changes until the client goes; an error of the stream is raised here.

    Raises:
        Problem: ``401`` once the token's session is revoked.
    """
    tasks = (
        asyncio.create_task(_send_changes(socket, service, principal.subject, since, counted)),
        asyncio.create_task(_until_revoked(socket, principal.session_id, recheck)),
        asyncio.create_task(_until_closed(socket)),
    )
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.wait(tasks)
    for task in tasks[:2]:
        if not task.cancelled() and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]
    if not tasks[1].cancelled():
        raise Problem(401, "unauthorized", "the session was revoked")


def bookings_socket(
    settings: Settings, resources: Callable[[Litestar], tuple[QueryService, StreamGate]]
) -> WebsocketRouteHandler:
    """The ``/ws/bookings`` handler; ``resources`` gives the app's service and stream gate."""
    check = principal_check(settings)
    recheck = max(settings.session_cache_seconds, _MIN_RECHECK_SECONDS)

    @websocket(PATH, name="bookings_socket")
    async def bookings(socket: Socket) -> None:
        offered: list[str] = list(socket.scope.get("subprotocols") or [])
        await socket.accept(subprotocols=SUBPROTOCOL if SUBPROTOCOL in offered else None)
        request_id, _ = correlation_of(socket.scope)
        started = time.monotonic()
        counted = [0]  # messages sent
        code, reason = 1000, ""
        try:
            authorization = credentials(socket.headers.get("Authorization"), offered)
            principal = await check(socket, authorization, frozenset())
            since = parse_since(socket.query_params.getall("since", []))
            service, gate = resources(socket.app)
            gate.check()
            with gate.held():
                await _stream_until_closed(
                    socket, service, principal, since, counted, recheck=recheck
                )
            code = 1001  # the client went
        except Problem as exc:
            code, reason = close_code(exc), str(exc.detail)
        except SinceError as exc:
            code, reason = 4400, str(exc)
        except (RedisError, PyMongoError) as exc:
            code, reason = _TRY_AGAIN_LATER, "a read-model server is away; reconnect shortly"
            _log.warning("query.socket_failed", request_id=request_id, error=repr(exc))
        except WebSocketDisconnect:
            code = 1001
        finally:
            _log.info(
                "query.socket_closed",
                request_id=request_id,
                close_code=code,
                sent=counted[0],
                duration_ms=round((time.monotonic() - started) * 1000, 1),
            )
        if code != 1001:
            with contextlib.suppress(WebSocketDisconnect, OSError):  # unless it went meanwhile
                await socket.close(code, _reason(reason))

    return bookings
