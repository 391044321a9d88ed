"""The command HTTP API (port 8000): POST endpoints that turn requests into events.

=====================================  =============  ============================================
route                                  roles          answer
=====================================  =============  ============================================
``POST /flights``                      ops            ``201 {"flight_id"}``
``POST /flights/{id}/cancel``          ops            ``202 {"flight_id", "status": "CANCELLED"}``
``POST /bookings``                     customer       ``202 {"booking_id", "status": "REQUESTED"}``
``POST /bookings/{id}/cancel``         owner, agent   ``202 {"booking_id", "status"}``
=====================================  =============  ============================================

Every answer carries ``X-Request-ID`` (the caller's, or a new one: it is the correlation
id stored with the events) and every success ``X-Flightbook-Position``, the positions of
the events the command stored, to pass to the query API as ``X-Flightbook-After``. An
idempotent repeat stores nothing and answers with the position of the event the first
request stored. Errors are problem documents (:mod:`flightbook.commands.errors`).

Each request is counted (``flightbook_commands_total{endpoint, outcome}``), timed
(``flightbook_command_duration_seconds{endpoint}``) and logged once (``command.handled``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, TypeVar
from uuid import UUID

import structlog
from litestar import Controller, Request, Response, Router, post
from litestar.datastructures import MutableScopeHeaders, ResponseHeader
from litestar.di import NamedDependency, Provide
from litestar.enums import ScopeType
from litestar.middleware import ASGIMiddleware
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, HeaderParameter, JSONBody, RawBody
from prometheus_client import Counter, Histogram

from flightbook.commands.errors import command_exception_handlers
from flightbook.commands.requests import (
    DEFAULT_CANCELLATION_REASON,
    BookingRequest,
    FlightCancellationRequest,
    FlightRequest,
)
from flightbook.commands.responses import (
    BookingAccepted,
    FlightCancellation,
    FlightScheduled,
    ProblemDocument,
)
from flightbook.commands.service import CommandService
from flightbook.http.app import REQUEST_ID, REQUEST_ID_HEADER, correlation_of, create_app
from flightbook.http.auth import (
    BEARER_SECURITY,
    BearerSecurityPlugin,
    bearer_guard,
    provide_principal,
    requires,
)
from flightbook.http.positions import encode_positions
from flightbook.http.problems import PROBLEM_JSON, Problem
from flightbook.http.tokens import Principal

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping, Sequence

    from litestar import Litestar
    from litestar.types import ASGIApp, LifespanHook, Message, Receive, Scope, Send
    from prometheus_client import CollectorRegistry

    from flightbook.config.settings import Settings

__all__ = (
    "POSITION_HEADER",
    "REQUEST_ID_HEADER",
    "BookingController",
    "CommandMetrics",
    "FlightController",
    "create_command_app",
)

POSITION_HEADER = "X-Flightbook-Position"
IDEMPOTENCY_KEY_HEADER = "Idempotency-Key"
T = TypeVar("T")
_TRACE_KEY = "flightbook_command_trace"
_log = structlog.get_logger("flightbook.commands")

_PROBLEM_DESCRIPTIONS = {
    400: "Malformed request: bad JSON, wrong type, missing or unknown field, bad header",
    401: "No valid bearer token (WWW-Authenticate: Bearer)",
    403: "The token lacks the role this needs",
    404: "No such resource, or not yours",
    409: "The current state refuses the command",
    413: "The body is larger than the server accepts",
    422: "A value breaks a rule of the domain (the field is named)",
}


def _problems(*statuses: int) -> dict[int, ResponseSpec]:
    return {
        status: ResponseSpec(
            data_container=ProblemDocument,
            description=_PROBLEM_DESCRIPTIONS[status],
            media_type=PROBLEM_JSON,
            generate_examples=False,
        )
        for status in statuses
    }


# -- per-request telemetry ------------------------------------------------------------------


@dataclass
class CommandTrace:
    """What one request's handler tells the telemetry middleware."""

    correlation_id: str
    ids: dict[str, str] = field(default_factory=dict)
    """Ids to log (``booking_id``, ``flight_id``)."""
    repeated: bool = False
    """Nothing was stored: an idempotent repeat."""


class CommandMetrics:
    """The command API's Prometheus metrics, in the process's registry.

    Args:
        registry: where to register them (never the global registry).
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.commands = Counter(
            "flightbook_commands",
            "Commands handled, by endpoint and outcome",
            ["endpoint", "outcome"],
            registry=registry,
        )
        self.duration = Histogram(
            "flightbook_command_duration_seconds",
            "Time to handle a command, by endpoint",
            ["endpoint"],
            registry=registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
        )

    def __deepcopy__(self, _memo: dict[int, object]) -> CommandMetrics:
        # Litestar deep-copies a router (and its middleware) when it registers it;
        # the metrics must stay the ones in the registry.
        return self


_OUTCOMES = {
    201: "created",
    202: "accepted",
    400: "invalid",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    409: "conflict",
    413: "invalid",
    422: "invalid",
}


def _outcome(status: int, trace: CommandTrace) -> str:
    if status < 400 and trace.repeated:
        return "repeated"
    if status >= 500:
        return "error"
    return _OUTCOMES.get(status, "rejected" if status >= 400 else "ok")


class CommandTelemetry(ASGIMiddleware):
    """Correlation id, one ``command.handled`` log line, count and latency per request."""

    scopes = (ScopeType.HTTP,)

    def __init__(self, metrics: CommandMetrics) -> None:
        self.metrics = metrics

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        started = time.perf_counter()
        correlation_id, acceptable = correlation_of(scope)
        trace = CommandTrace(correlation_id=correlation_id)
        scope["state"][_TRACE_KEY] = trace
        handler = scope["route_handler"]
        endpoint = handler.name or handler.handler_name
        status = 500

        async def send_with_request_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableScopeHeaders.from_message(message)[REQUEST_ID_HEADER] = trace.correlation_id
            await send(message)

        with structlog.contextvars.bound_contextvars(correlation_id=trace.correlation_id):
            try:
                if not acceptable:
                    # It would be stored with the events: refuse it rather than keep it.
                    # (Answered by the app's problem handler, outside this middleware.)
                    status = 400
                    raise Problem(
                        400,
                        "invalid_request",
                        f"{REQUEST_ID_HEADER} must be 1 to 64 letters, digits, '.', '_' or '-'",
                        field=REQUEST_ID_HEADER,
                        headers={REQUEST_ID_HEADER: trace.correlation_id},
                    )
                await next_app(scope, receive, send_with_request_id)
            finally:
                elapsed = time.perf_counter() - started
                outcome = _outcome(status, trace)
                self.metrics.commands.labels(endpoint=endpoint, outcome=outcome).inc()
                self.metrics.duration.labels(endpoint=endpoint).observe(elapsed)
                _log.info(
                    "command.handled",
                    correlation_id=trace.correlation_id,
                    endpoint=endpoint,
                    status=status,
                    outcome=outcome,
                    duration_ms=round(elapsed * 1000, 2),
                    **trace.ids,
                )


def _trace(request: Request[Any, Any, Any]) -> CommandTrace:
    trace = request.scope["state"].get(_TRACE_KEY)
    if not isinstance(trace, CommandTrace):  # pragma: no cover - a wiring mistake
        raise RuntimeError("the command routes need the CommandTelemetry middleware")
    return trace


def _answer(body: T, status_code: int, positions: Mapping[str, int]) -> Response[T]:
    return Response(
        body, status_code=status_code, headers={POSITION_HEADER: encode_positions(positions)}
    )


# -- routes ---------------------------------------------------------------------------------

_NO_BODY = (b"", b"{}", b"null")

IdempotencyKey = Annotated[
    str,
    HeaderParameter(
        name=IDEMPOTENCY_KEY_HEADER,
        min_length=1,
        max_length=200,
        description=(
            "Chosen by the client, one per booking: a repeat with the same key and body "
            "answers as the first time; the same key with another body is a 422."
        ),
    ),
]


class FlightController(Controller):
    path = "/flights"
    tags = ("flights",)

    @post(
        "/",
        name="schedule_flight",
        status_code=201,
        sync_to_thread=True,
        opt=requires("ops"),
        summary="Schedule a flight",
        responses=_problems(400, 401, 403, 413, 422),
    )
    def schedule_flight(
        self,
        data: JSONBody[FlightRequest],
        request: Request[Any, Any, Any],
        service: NamedDependency[CommandService],
        principal: NamedDependency[Principal],
    ) -> Response[FlightScheduled]:
        trace = _trace(request)
        result = service.schedule_flight(
            data, principal.subject, correlation_id=trace.correlation_id
        )
        trace.ids["flight_id"] = str(result.flight_id)
        return _answer(FlightScheduled(flight_id=result.flight_id), 201, result.positions)

    @post(
        "/{flight_id:uuid}/cancel",
        name="cancel_flight",
        status_code=202,
        sync_to_thread=True,
        opt=requires("ops"),
        summary="Cancel a flight; its bookings are then cancelled and refunded",
        responses=_problems(400, 401, 403, 404, 413, 422),
    )
    def cancel_flight(
        self,
        flight_id: FromPath[UUID],
        request: Request[Any, Any, Any],
        service: NamedDependency[CommandService],
        principal: NamedDependency[Principal],
        data: JSONBody[FlightCancellationRequest | None] = None,
    ) -> Response[FlightCancellation]:
        trace = _trace(request)
        trace.ids["flight_id"] = str(flight_id)
        result = service.cancel_flight(
            flight_id,
            principal.subject,
            reason=data.reason if data is not None else DEFAULT_CANCELLATION_REASON,
            correlation_id=trace.correlation_id,
        )
        trace.repeated = result.repeated
        body = FlightCancellation(flight_id=result.flight_id, status=result.status)
        return _answer(body, 202, result.positions)


class BookingController(Controller):
    path = "/bookings"
    tags = ("bookings",)

    @post(
        "/",
        name="request_booking",
        status_code=202,
        sync_to_thread=True,
        opt=requires("customer"),
        summary="Book seats; the booking then goes to CONFIRMED or REJECTED by itself",
        responses=_problems(400, 401, 403, 409, 413, 422),
    )
    def request_booking(
        self,
        data: JSONBody[BookingRequest],
        idempotency_key: IdempotencyKey,
        request: Request[Any, Any, Any],
        service: NamedDependency[CommandService],
        principal: NamedDependency[Principal],
    ) -> Response[BookingAccepted]:
        trace = _trace(request)
        result = service.request_booking(
            data,
            principal.subject,
            idempotency_key,
            principal.subject,
            correlation_id=trace.correlation_id,
        )
        trace.ids["booking_id"] = str(result.booking_id)
        trace.repeated = result.repeated
        body = BookingAccepted(booking_id=result.booking_id, status=result.status)
        return _answer(body, 202, result.positions)

    @post(
        "/{booking_id:uuid}/cancel",
        name="cancel_booking",
        status_code=202,
        sync_to_thread=True,
        opt=requires("customer", "agent"),
        summary="Cancel a booking (its owner or an agent); refunded per the fare's rules",
        responses=_problems(400, 401, 403, 404, 409, 413),
    )
    def cancel_booking(
        self,
        booking_id: FromPath[UUID],
        body: RawBody,
        request: Request[Any, Any, Any],
        service: NamedDependency[CommandService],
        principal: NamedDependency[Principal],
    ) -> Response[BookingAccepted]:
        trace = _trace(request)
        trace.ids["booking_id"] = str(booking_id)
        if body.strip() not in _NO_BODY:
            # Refused rather than ignored, as unknown fields are everywhere else.
            raise Problem(400, "invalid_request", "this command takes no body", field="body")
        result = service.cancel_booking(booking_id, principal, correlation_id=trace.correlation_id)
        trace.repeated = result.repeated
        answer = BookingAccepted(booking_id=result.booking_id, status=result.status)
        return _answer(answer, 202, result.positions)


def command_router(
    settings: Settings, *, service: CommandService, metrics: CommandMetrics
) -> Router:
    """The command routes with their guard, dependencies, error handlers and telemetry."""
    return Router(
        path="/",
        route_handlers=[FlightController, BookingController],
        guards=[bearer_guard(settings)],
        dependencies={
            "service": Provide(lambda: service, sync_to_thread=False),
            "principal": provide_principal(),
        },
        parameters={
            "request_id": HeaderParameter(
                name=REQUEST_ID_HEADER,
                annotation=str,
                required=False,
                pattern=REQUEST_ID.pattern,
                max_length=64,
                description=(
                    "Correlation id stored with the events (else a new one); echoed back. "
                    "An invalid one is a 400."
                ),
            )
        },
        response_headers=[
            ResponseHeader(
                name=POSITION_HEADER,
                description="Positions of the events stored: pass as X-Flightbook-After",
                documentation_only=True,
            ),
            ResponseHeader(
                name=REQUEST_ID_HEADER,
                description="The request's correlation id",
                documentation_only=True,
            ),
        ],
        exception_handlers=command_exception_handlers(),
        middleware=[CommandTelemetry(metrics)],
        security=BEARER_SECURITY,
    )


def create_command_app(
    settings: Settings,
    *,
    checks: Mapping[str, Callable[[], Awaitable[bool]]],
    registry: CollectorRegistry,
    service: CommandService,
    on_startup: Sequence[LifespanHook] = (),
    on_shutdown: Sequence[LifespanHook] = (),
) -> Litestar:
    """The command API with its dependencies passed in (STYLE G5).

    Args:
        settings: the process settings (token checks, body size limit).
        checks: readiness checks by name.
        registry: where the API's metrics go.
        service: the use cases.
        on_startup: hooks run on startup (open pools...).
        on_shutdown: hooks run on shutdown (close what was opened).
    """
    metrics = CommandMetrics(registry)
    return create_app(
        "flightbook command API",
        settings,
        route_handlers=[command_router(settings, service=service, metrics=metrics)],
        checks=checks,
        registry=registry,
        on_startup=list(on_startup),
        on_shutdown=list(on_shutdown),
        plugins=[BearerSecurityPlugin()],
    )
