"""The query HTTP API (port 8001): GET endpoints over the MongoDB and Redis read models.

=======================================  ============================  =======================
route                                    who                           answer
=======================================  ============================  =======================
``GET /flights?origin&destination&date``  any valid token              ``{"items", "next_cursor"}``
``GET /flights/{id}``                    any valid token               a flight
``GET /bookings``                        any valid token (own only)    ``{"items", "next_cursor"}``
``GET /bookings/{id}``                   owner, agent, auditor         a booking
``GET /bookings/{id}/events``            owner, agent, auditor         Server-Sent Events
``WebSocket /ws/bookings``               any valid token (own only)    status changes
``GET /analytics/sales?from&to``         analyst                       ``{"items", "next_cursor"}``
``GET /analytics/load-factor?flight_id`` analyst                       per fare and overall
``GET /analytics/funnel?from&to``        analyst                       per day and totals
=======================================  ============================  =======================

- A booking someone may not see is a ``404`` identical to that of a booking that does not
  exist (same body, same headers), so ids cannot be probed.
- Lists are paged with an opaque ``cursor`` (``next_cursor`` of the previous page) and
  ``limit`` (1..100, default 20; sales 1..1000, default 100). Each list's cursor has a
  grammar (:data:`~flightbook.queries.cursors.CURSOR_PATTERNS`) stated in the OpenAPI
  document, as is that of ``X-Flightbook-After``: every rule a parameter must follow is
  in the document, so a request it calls valid is never refused.
- Analytics periods (``from``..``to``, both included) are any pair of days: a period that
  ends before it starts holds no day (an empty answer), a long one only the days with
  data (sales are paged).
- A search with ``destination`` equal to ``origin`` finds no flight (none can be
  scheduled), and is answered as such rather than refused.
- Read-your-writes: with ``X-Flightbook-After`` (a command's ``X-Flightbook-Position``) the
  flight routes wait for the ``flights`` read model and the booking routes for ``bookings``
  (:mod:`.freshness`), up to ``query_wait_seconds``, else ``503`` with ``Retry-After: 1``.
  Analytics routes do not wait (their read model is recomputed, not position-tracked).
- Every answer carries ``X-Request-ID`` (the caller's or a new one); errors are problem
  documents naming the field. Each request is counted
  (``flightbook_queries_total{endpoint, status}``), timed
  (``flightbook_query_duration_seconds{endpoint, status}``) and logged once
  (``query.handled``).
"""

from __future__ import annotations

import datetime as dt
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Annotated
from uuid import UUID

import structlog
from litestar import Controller, Litestar, Response, Router, get
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.exceptions import ValidationException
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, HeaderParameter, QueryParameter
from litestar.response import ServerSentEvent

from flightbook.http.app import create_app
from flightbook.http.auth import (
    requires,
)
from flightbook.http.correlation import REQUEST_ID_HEADER
from flightbook.http.etags import NOT_MODIFIED_RESPONSE, IfNoneMatch, tagged
from flightbook.http.openapi import ProblemDocument, problem_responses
from flightbook.http.positions import POSITIONS_PATTERN, PositionTokenError, decode_positions
from flightbook.http.problems import Problem
from flightbook.http.routes import api_router
from flightbook.http.telemetry import TelemetrySpec
from flightbook.http.tokens import Principal
from flightbook.http.validation import validation_handler
from flightbook.queries.cursors import CURSOR_PATTERNS, MAX_CURSOR_LENGTH, CursorError
from flightbook.queries.freshness import NotCaughtUpError
from flightbook.queries.models import (
    BookingPage,
    BookingView,
    FlightPage,
    FlightView,
    FunnelReport,
    LoadFactorReport,
    SalesPage,
    StatusChange,
)
from flightbook.queries.push import StreamGate, status_stream
from flightbook.queries.service import MAX_PAGE, QueryService
from flightbook.queries.sockets import PATH as SOCKET_PATH
from flightbook.queries.sockets import SUBPROTOCOL, bookings_socket

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
    from contextlib import AbstractAsyncContextManager

    from prometheus_client import CollectorRegistry

    from flightbook.config.settings import Settings
    from flightbook.queries.ports import ReadModels

__all__ = (
    "AFTER_HEADER",
    "TELEMETRY",
    "WIRE_NAMES",
    "AnalyticsController",
    "BookingController",
    "FlightController",
    "SocketController",
    "create_query_app",
)

AFTER_HEADER = "X-Flightbook-After"
_SERVICE_STATE_KEY = "flightbook_query_service"
_STREAMS_STATE_KEY = "flightbook_push_streams"
_log = structlog.get_logger("flightbook.queries")

WIRE_NAMES = {
    "start": "from",
    "end": "to",
    "after": AFTER_HEADER,
    "x-flightbook-after": AFTER_HEADER,
    "request_id": REQUEST_ID_HEADER,
    "x-request-id": REQUEST_ID_HEADER,
}
"""Handler parameter (or lower-cased header) names -> the name a client sent."""

_PROBLEM_DESCRIPTIONS = {
    400: "A bad query parameter, cursor or header (the problem's field names it)",
    401: "No valid bearer token (WWW-Authenticate: Bearer)",
    403: "The token lacks the role this needs",
    404: "No such resource, or not yours",
    503: (
        "X-Flightbook-After was given and the read model has not caught up within the "
        "bound, or a read-model server is away; retry after Retry-After seconds"
    ),
}


_problems = problem_responses(_PROBLEM_DESCRIPTIONS)


# -- parameters -----------------------------------------------------------------------------

Iata = Annotated[
    str, QueryParameter(pattern="^[A-Z]{3}$", description="IATA airport code (3 capital letters)")
]
OptionalIata = Annotated[
    str | None, QueryParameter(pattern="^[A-Z]{3}$", description="IATA airport code, to filter on")
]
Day = Annotated[dt.date, QueryParameter(description="Departure day (UTC), YYYY-MM-DD")]
LastEventId = Annotated[
    int,
    HeaderParameter(
        name="Last-Event-ID",
        required=False,
        ge=0,
        le=6,  # a booking reaches at most its six statuses
        description="The id of the last status event received: only those after it are sent",
    ),
]


def _cursor(kind: str) -> QueryParameter:
    return QueryParameter(
        description="The previous page's next_cursor (opaque)",
        pattern=CURSOR_PATTERNS[kind],
        max_length=MAX_CURSOR_LENGTH,
    )


FlightCursor = Annotated[str | None, _cursor("flights")]
BookingCursor = Annotated[str | None, _cursor("bookings")]
SalesCursor = Annotated[str | None, _cursor("sales")]
Limit = Annotated[int, QueryParameter(ge=1, le=MAX_PAGE, description="Page size, 1..100")]
SalesLimit = Annotated[int, QueryParameter(ge=1, le=1000, description="Page size, 1..1000")]
PeriodStart = Annotated[dt.date, QueryParameter(name="from", description="First day, YYYY-MM-DD")]
PeriodEnd = Annotated[
    dt.date,
    QueryParameter(name="to", description="Last day, YYYY-MM-DD (before from: an empty period)"),
]
After = Annotated[
    str,
    HeaderParameter(
        name=AFTER_HEADER,
        required=False,
        pattern=POSITIONS_PATTERN,
        description=(
            "A command's X-Flightbook-Position: answer only once the read model has applied "
            "those positions (else 503 with Retry-After)"
        ),
    ),
]


# -- per-request telemetry ------------------------------------------------------------------

TELEMETRY = TelemetrySpec(
    log_event="query.handled",
    logger="flightbook.queries",
    counter="flightbook_queries",
    counter_help="Queries handled, by endpoint and HTTP status",
    histogram="flightbook_query_duration_seconds",
    histogram_help="Time to answer a query, by endpoint and HTTP status",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
    label="status",
    label_of=lambda status, _trace: str(status),
    histogram_by_label=True,
)
"""The query API's metrics and log line."""


# -- helpers of the routes ------------------------------------------------------------------


def _positions(after: str) -> dict[str, int]:
    try:
        return decode_positions(after)
    except PositionTokenError:
        raise Problem(
            400,
            "invalid_request",
            f"{AFTER_HEADER} must be an X-Flightbook-Position token of the command API",
            field=AFTER_HEADER,
        ) from None


async def _caught_up(service: QueryService, read_model: str, after: str) -> bool:
    """Wait for ``read_model`` to apply ``after``; True if the request asked to wait."""
    positions = _positions(after)
    if not positions:
        return False
    try:
        await service.wait_for(read_model, positions)
    except NotCaughtUpError as exc:
        raise _not_caught_up(exc) from None
    return True


def _not_caught_up(exc: NotCaughtUpError) -> Problem:
    return Problem(503, "not_caught_up", f"{exc}; retry shortly", headers={"Retry-After": "1"})


def _bad_cursor() -> Problem:
    return Problem(
        400, "invalid_request", "cursor: not a cursor this list gave out", field="cursor"
    )


# -- routes ---------------------------------------------------------------------------------


class FlightController(Controller):
    path = "/flights"
    tags = ("flights",)

    @get(
        "/",
        name="search_flights",
        opt=requires(),
        summary="Flights of a route on a day, by departure, with fares and seats left",
        responses=_problems(400, 401, 503),
    )
    async def search_flights(
        self,
        origin: Iata,
        destination: Iata,
        date: Day,
        service: NamedDependency[QueryService],
        after: After = "",
        cursor: FlightCursor = None,
        limit: Limit = 20,
    ) -> FlightPage:
        # After a write, skip the cache: it may hold an answer from before that write.
        fresh = await _caught_up(service, "flights", after)
        try:
            return await service.search_flights(
                origin, destination, date, cursor=cursor, limit=limit, use_cache=not fresh
            )
        except CursorError:
            raise _bad_cursor() from None

    @get(
        "/{flight_id:uuid}",
        name="get_flight",
        opt=requires(),
        summary="One flight",
        responses={304: NOT_MODIFIED_RESPONSE, **_problems(400, 401, 404, 503)},
    )
    async def get_flight(
        self,
        flight_id: FromPath[UUID],
        service: NamedDependency[QueryService],
        after: After = "",
        if_none_match: IfNoneMatch = "",
    ) -> Response[FlightView]:
        await _caught_up(service, "flights", after)
        found = await service.flight(flight_id)
        if found is None:
            raise Problem(404, "not_found", f"flight {flight_id} not found")
        return tagged(found, if_none_match)


class BookingController(Controller):
    path = "/bookings"
    tags = ("bookings",)

    @get(
        "/",
        name="list_bookings",
        opt=requires(),
        summary="The caller's bookings, newest first",
        responses=_problems(400, 401, 503),
    )
    async def list_bookings(
        self,
        service: NamedDependency[QueryService],
        principal: NamedDependency[Principal],
        after: After = "",
        cursor: BookingCursor = None,
        limit: Limit = 20,
    ) -> BookingPage:
        await _caught_up(service, "bookings", after)
        try:
            return await service.bookings_of(principal, cursor=cursor, limit=limit)
        except CursorError:
            raise _bad_cursor() from None

    @get(
        "/{booking_id:uuid}",
        name="get_booking",
        opt=requires(),
        summary="One booking: its customer, an agent or an auditor (anyone else: 404)",
        responses={304: NOT_MODIFIED_RESPONSE, **_problems(400, 401, 404, 503)},
    )
    async def get_booking(
        self,
        booking_id: FromPath[UUID],
        service: NamedDependency[QueryService],
        principal: NamedDependency[Principal],
        after: After = "",
        if_none_match: IfNoneMatch = "",
    ) -> Response[BookingView]:
        await _caught_up(service, "bookings", after)
        found = await service.booking(booking_id, principal)
        if found is None:
            # Unknown, or not the caller's: the same answer, which does not even repeat
            # the id, so that two answers can be compared byte for byte.
            raise Problem(404, "not_found", "no such booking")
        return tagged(found, if_none_match)

    @get(
        "/{booking_id:uuid}/events",
        name="booking_events",
        opt=requires(),
        media_type="text/event-stream",
        summary="A booking's statuses, pushed as Server-Sent Events until it is final",
        description=(
            "`text/event-stream`: one `status` event per status reached, in order; its data "
            "is `{booking_id, status, at, version, final}` and its `id` counts the statuses "
            "sent (1 = REQUESTED). Reconnect with `Last-Event-ID` to get only what came "
            "after. The stream ends after CONFIRMED, REJECTED or CANCELLED; a comment every "
            "15 s keeps it open. The same 404 as `GET /bookings/{id}` for anyone else. Right "
            "after `POST /bookings`, send its `X-Flightbook-Position` as `X-Flightbook-After`: "
            "the stream then waits (by push, up to the read-your-writes bound) for the booking "
            "to reach the read model instead of answering 404."
        ),
        responses=_problems(400, 401, 404, 503),
    )
    async def booking_events(
        self,
        booking_id: FromPath[UUID],
        service: NamedDependency[QueryService],
        principal: NamedDependency[Principal],
        state: State,
        after: After = "",
        last_event_id: LastEventId = 0,
    ) -> ServerSentEvent:
        positions = _positions(after)
        try:
            found = await (
                service.arriving_status_path(booking_id, principal, positions)
                if positions
                else service.status_path(booking_id, principal)
            )
        except NotCaughtUpError as exc:
            raise _not_caught_up(exc) from None
        if found is None:
            raise Problem(404, "not_found", "no such booking")
        gate: StreamGate = state[_STREAMS_STATE_KEY]
        return status_stream(service, booking_id, after=last_event_id, gate=gate)


_SOCKET_DESCRIPTION = f"""A WebSocket (`ws://<host>{SOCKET_PATH}`): the status changes of
**all the caller's bookings**, one JSON message each (the 101 response's schema), in order
per booking, each once. `seq` counts a booking's statuses (1 = REQUESTED). On connect: what
each of the caller's unfinished bookings reached so far, then every status any of their bookings
reaches (a confirmed booking's later cancellation too).

- **Credentials** as for `GET /bookings/{{id}}`: `Authorization: Bearer <token>`, or from a
  browser the subprotocols `{SUBPROTOCOL}` and `bearer.<token>`
  (`new WebSocket(url, ["{SUBPROTOCOL}", "bearer." + token])`); `{SUBPROTOCOL}` is selected.
- **Resume**: `?since=<booking_id>:<seq>` per booking the client has heard of (at most 100):
  only what came after is sent, even for a booking that became final meanwhile. A booking
  that is not the caller's is ignored like one that does not exist.
- **Refusals** are close frames after the handshake: 4400 bad `since` (the reason names
  it), 4401 no valid token or a revoked session, 4403 no known role, 1013 too many streams
  on this server or a read-model server away (reconnect with `since`).
- The client sends nothing; the server pings. A plain GET (no `Upgrade: websocket`) is
  answered 426."""


class SocketController(Controller):
    """``GET /ws/bookings`` without an upgrade: the WebSocket's entry in the OpenAPI document."""

    path = SOCKET_PATH
    tags = ("bookings",)

    @get(
        "/",
        name="bookings_socket_doc",
        opt=requires(),
        status_code=101,
        summary="WebSocket: the status changes of all the caller's bookings, as they happen",
        description=_SOCKET_DESCRIPTION,
        responses={
            101: ResponseSpec(
                data_container=StatusChange,
                description="Switching Protocols; then one message (this JSON) per status change",
                generate_examples=False,
            ),
            426: ResponseSpec(
                data_container=ProblemDocument,
                media_type="application/problem+json",
                description="Not a WebSocket handshake: connect with Upgrade: websocket",
                generate_examples=False,
            ),
            **_problems(401, 403, 503),
        },
    )
    async def bookings_socket_doc(self) -> None:
        raise Problem(
            426,
            "upgrade_required",
            f"{SOCKET_PATH} is a WebSocket: connect with Upgrade: websocket",
            headers={"Upgrade": "websocket", "Connection": "Upgrade"},
        )


class AnalyticsController(Controller):
    path = "/analytics"
    tags = ("analytics",)

    @get(
        "/sales",
        name="sales",
        opt=requires("analyst"),
        summary="Sales per day (of booking) and route: confirmed, seats, revenue, refunds",
        responses=_problems(400, 401, 403),
    )
    async def sales(
        self,
        start: PeriodStart,
        end: PeriodEnd,
        service: NamedDependency[QueryService],
        origin: OptionalIata = None,
        destination: OptionalIata = None,
        cursor: SalesCursor = None,
        limit: SalesLimit = 100,
    ) -> SalesPage:
        try:
            return await service.sales(
                start, end, origin=origin, destination=destination, cursor=cursor, limit=limit
            )
        except CursorError:
            raise _bad_cursor() from None

    @get(
        "/load-factor",
        name="load_factor",
        opt=requires("analyst"),
        summary="Seats sold / seats of a flight, per fare class and overall",
        responses=_problems(400, 401, 403, 404),
    )
    async def load_factor(
        self,
        flight_id: Annotated[UUID, QueryParameter(description="The flight")],
        service: NamedDependency[QueryService],
    ) -> LoadFactorReport:
        found = await service.load_factor(flight_id)
        if found is None:
            raise Problem(404, "not_found", f"no load factor for flight {flight_id}")
        return found

    @get(
        "/funnel",
        name="funnel",
        opt=requires("analyst"),
        summary="Bookings made per day reaching each status; rejections and cancellations",
        responses=_problems(400, 401, 403),
    )
    async def funnel(
        self, start: PeriodStart, end: PeriodEnd, service: NamedDependency[QueryService]
    ) -> FunnelReport:
        return await service.funnel(start, end)


def _provide_service(state: State) -> QueryService:
    service = state.get(_SERVICE_STATE_KEY)
    if not isinstance(service, QueryService):  # pragma: no cover - used outside the lifespan
        raise RuntimeError("the query service exists only while the app runs (lifespan)")
    return service


def _socket_resources(app: Litestar) -> tuple[QueryService, StreamGate]:
    service = app.state.get(_SERVICE_STATE_KEY)
    gate = app.state.get(_STREAMS_STATE_KEY)
    if not isinstance(service, QueryService) or not isinstance(gate, StreamGate):
        raise RuntimeError("the query service exists only while the app runs (lifespan)")
    return service, gate


def query_router(settings: Settings, *, registry: CollectorRegistry) -> Router:
    """The query routes with their guard, dependencies, error handler and telemetry."""
    return api_router(
        settings,
        route_handlers=[
            FlightController,
            BookingController,
            SocketController,
            AnalyticsController,
        ],
        service=Provide(_provide_service, sync_to_thread=False),
        telemetry=TELEMETRY,
        registry=registry,
        request_id="Correlation id for the logs (else a new one); echoed back.",
        exception_handlers={
            ValidationException: validation_handler(wire_names=WIRE_NAMES, fallback="query")
        },
    )


def create_query_app(
    settings: Settings,
    *,
    checks: Mapping[str, Callable[[], Awaitable[bool]]],
    registry: CollectorRegistry,
    read_models: Callable[[], AbstractAsyncContextManager[ReadModels]],
) -> Litestar:
    """The query API with its dependencies passed in (STYLE G5).

    Args:
        settings: the process settings (token checks, ``query_wait_seconds``).
        checks: readiness checks by name.
        registry: where the API's metrics go.
        read_models: opens the readers when the app starts and closes them when it stops
            (long-lived async clients belong to the app's event loop, STYLE G9).
    """

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        async with read_models() as models:
            app.state[_SERVICE_STATE_KEY] = QueryService(
                models, wait_seconds=settings.query_wait_seconds
            )
            app.state[_STREAMS_STATE_KEY] = StreamGate()
            try:
                yield
            finally:
                del app.state[_SERVICE_STATE_KEY]

    return create_app(
        "flightbook query API",
        settings,
        route_handlers=[
            query_router(settings, registry=registry),
            bookings_socket(settings, _socket_resources),
        ],
        checks=checks,
        registry=registry,
        lifespan=[lifespan],
    )
