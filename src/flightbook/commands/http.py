"""The command HTTP API (port 8000): POST endpoints that turn requests into events.

=====================================  =============  ============================================
route                                  roles          answer
=====================================  =============  ============================================
``POST /flights``                      ops            ``201 {"flight_id"}``
``POST /flights/{id}/cancel``          ops            ``202 {"flight_id", "status": "CANCELLED"}``
``POST /bookings``                     customer       ``202 {"booking_id", "status": "REQUESTED"}``
``POST /bookings/{id}/cancel``         owner, agent   ``202 {"booking_id", "status"}``
``POST /customers/{id}/erasure``       privacy        ``200 {"customer_id", "bookings_erased",
                                                      "already_erased"}``
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

from typing import TYPE_CHECKING, Annotated, Any, TypeVar
from uuid import UUID

import anyio
import anyio.to_thread
from litestar import Controller, Request, Response, Router, post
from litestar.datastructures import ResponseHeader
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, HeaderParameter, JSONBody, RawBody

from flightbook.commands.errors import command_exception_handlers
from flightbook.commands.requests import (
    DEFAULT_CANCELLATION_REASON,
    BookingRequest,
    ErasureRequest,
    FlightCancellationRequest,
    FlightRequest,
)
from flightbook.commands.responses import (
    BookingAccepted,
    ErasureDone,
    FlightCancellation,
    FlightScheduled,
)
from flightbook.commands.service import CommandService
from flightbook.http.app import create_app
from flightbook.http.auth import (
    requires,
)
from flightbook.http.correlation import REQUEST_ID_HEADER
from flightbook.http.openapi import (
    problem_responses,
)
from flightbook.http.positions import encode_positions
from flightbook.http.problems import Problem, try_again
from flightbook.http.routes import api_router
from flightbook.http.telemetry import RequestTrace, TelemetrySpec, trace_of
from flightbook.http.tokens import Principal

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping, Sequence

    from litestar import Litestar
    from litestar.types import LifespanHook
    from prometheus_client import CollectorRegistry

    from flightbook.config.settings import Settings

__all__ = (
    "POSITION_HEADER",
    "REQUEST_ID_HEADER",
    "TELEMETRY",
    "BookingController",
    "CustomerController",
    "FlightController",
    "create_command_app",
)

POSITION_HEADER = "X-Flightbook-Position"
IDEMPOTENCY_KEY_HEADER = "Idempotency-Key"
T = TypeVar("T")
R = TypeVar("R")

_PROBLEM_DESCRIPTIONS = {
    400: "Malformed request: bad JSON, wrong type, missing or unknown field, bad header",
    401: "No valid bearer token (WWW-Authenticate: Bearer)",
    403: "The token lacks the role this needs",
    404: "No such resource, or not yours",
    409: "The current state refuses the command",
    413: "The body is larger than the server accepts",
    422: "A value breaks a rule of the domain (the field is named)",
}


_problems = problem_responses(_PROBLEM_DESCRIPTIONS)


# -- per-request telemetry ------------------------------------------------------------------

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


def _outcome(status: int, trace: RequestTrace) -> str:
    if status < 400 and trace.repeated:
        return "repeated"
    if status >= 500:
        return "error"
    return _OUTCOMES.get(status, "rejected" if status >= 400 else "ok")


TELEMETRY = TelemetrySpec(
    log_event="command.handled",
    logger="flightbook.commands",
    counter="flightbook_commands",
    counter_help="Commands handled, by endpoint and outcome",
    histogram="flightbook_command_duration_seconds",
    histogram_help="Time to handle a command, by endpoint",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
    label="outcome",
    label_of=_outcome,
    log_label=True,
)
"""The command API's metrics and log line."""


def _answer(body: T, status_code: int, positions: Mapping[str, int]) -> Response[T]:
    return Response(
        body, status_code=status_code, headers={POSITION_HEADER: encode_positions(positions)}
    )


async def _within_deadline(service: CommandService, command: Callable[[], R]) -> R:
    """Run ``command`` in a worker thread; a 503 once ``command_deadline_seconds`` pass.

    The client then sends it again (with its Idempotency-Key): whether the abandoned
    thread still commits or not, the repeat answers as the first request would have. This
    is what bounds a request while PostgreSQL is away (ADR 0018): the library's own retries
    would otherwise hold it for half a minute.
    """
    try:
        with anyio.fail_after(service.settings.command_deadline_seconds):
            return await anyio.to_thread.run_sync(command, abandon_on_cancel=True)
    except TimeoutError:
        raise try_again(
            "the command did not complete in time (the event store may be away); "
            "send it again after Retry-After seconds, with the same Idempotency-Key"
        ) from None


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
        opt=requires("ops"),
        summary="Schedule a flight",
        responses=_problems(400, 401, 403, 413, 422),
    )
    async def schedule_flight(
        self,
        data: JSONBody[FlightRequest],
        request: Request[Any, Any, Any],
        service: NamedDependency[CommandService],
        principal: NamedDependency[Principal],
    ) -> Response[FlightScheduled]:
        trace = trace_of(request)
        result = await _within_deadline(
            service,
            lambda: service.schedule_flight(
                data, principal.subject, correlation_id=trace.correlation_id
            ),
        )
        trace.ids["flight_id"] = str(result.flight_id)
        return _answer(FlightScheduled(flight_id=result.flight_id), 201, result.positions)

    @post(
        "/{flight_id:uuid}/cancel",
        name="cancel_flight",
        status_code=202,
        opt=requires("ops"),
        summary="Cancel a flight; its bookings are then cancelled and refunded",
        responses=_problems(400, 401, 403, 404, 413, 422),
    )
    async def cancel_flight(
        self,
        flight_id: FromPath[UUID],
        request: Request[Any, Any, Any],
        service: NamedDependency[CommandService],
        principal: NamedDependency[Principal],
        data: JSONBody[FlightCancellationRequest | None] = None,
    ) -> Response[FlightCancellation]:
        trace = trace_of(request)
        trace.ids["flight_id"] = str(flight_id)
        reason = data.reason if data is not None else DEFAULT_CANCELLATION_REASON
        result = await _within_deadline(
            service,
            lambda: service.cancel_flight(
                flight_id, principal.subject, reason=reason, correlation_id=trace.correlation_id
            ),
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
        opt=requires("customer"),
        summary="Book seats; the booking then goes to CONFIRMED or REJECTED by itself",
        responses=_problems(400, 401, 403, 409, 413, 422),
    )
    async def request_booking(
        self,
        data: JSONBody[BookingRequest],
        idempotency_key: IdempotencyKey,
        request: Request[Any, Any, Any],
        service: NamedDependency[CommandService],
        principal: NamedDependency[Principal],
    ) -> Response[BookingAccepted]:
        trace = trace_of(request)
        result = await _within_deadline(
            service,
            lambda: service.request_booking(
                data,
                principal.subject,
                idempotency_key,
                principal.subject,
                correlation_id=trace.correlation_id,
            ),
        )
        trace.ids["booking_id"] = str(result.booking_id)
        trace.repeated = result.repeated
        body = BookingAccepted(booking_id=result.booking_id, status=result.status)
        return _answer(body, 202, result.positions)

    @post(
        "/{booking_id:uuid}/cancel",
        name="cancel_booking",
        status_code=202,
        opt=requires("customer", "agent"),
        summary="Cancel a booking (its owner or an agent); refunded per the fare's rules",
        responses=_problems(400, 401, 403, 404, 409, 413),
    )
    async def cancel_booking(
        self,
        booking_id: FromPath[UUID],
        body: RawBody,
        request: Request[Any, Any, Any],
        service: NamedDependency[CommandService],
        principal: NamedDependency[Principal],
    ) -> Response[BookingAccepted]:
        trace = trace_of(request)
        trace.ids["booking_id"] = str(booking_id)
        if body.strip() not in _NO_BODY:
            # Refused rather than ignored, as unknown fields are everywhere else.
            raise Problem(400, "invalid_request", "this command takes no body", field="body")
        result = await _within_deadline(
            service,
            lambda: service.cancel_booking(
                booking_id, principal, correlation_id=trace.correlation_id
            ),
        )
        trace.repeated = result.repeated
        answer = BookingAccepted(booking_id=result.booking_id, status=result.status)
        return _answer(answer, 202, result.positions)


class CustomerController(Controller):
    path = "/customers"
    tags = ("privacy",)

    @post(
        "/{customer_id:str}/erasure",
        name="erase_personal_data",
        status_code=200,
        opt=requires("privacy"),
        summary="Erase a customer's personal data (GDPR Art. 17); recorded with who and why",
        description=(
            "Erases every key the customer's personal data (passengers, payment tokens) was "
            "sealed with, and records `PassengersErased` on each of their bookings and "
            "`DataSubjectErased` (actor, time, reason code; no personal data) in one "
            "transaction; the read models then show `[erased]`. Refused with 409 "
            "`bookings_in_progress` while a booking of theirs is not yet confirmed, rejected "
            "or cancelled. Idempotent: asking again stores nothing and answers "
            "`already_erased: true`. The customer may book again afterwards (a new key)."
        ),
        responses=_problems(400, 401, 403, 409, 413, 422),
    )
    async def erase_personal_data(
        self,
        customer_id: FromPath[str],
        data: JSONBody[ErasureRequest],
        request: Request[Any, Any, Any],
        service: NamedDependency[CommandService],
        principal: NamedDependency[Principal],
    ) -> Response[ErasureDone]:
        trace = trace_of(request)
        result = await _within_deadline(
            service,
            lambda: service.erase_personal_data(
                customer_id,
                reason=data.reason,
                actor=principal.subject,
                correlation_id=trace.correlation_id,
            ),
        )
        trace.repeated = result.already
        body = ErasureDone(
            customer_id=customer_id,
            bookings_erased=result.bookings,
            already_erased=result.already,
        )
        return _answer(body, 200, result.positions)


def command_router(
    settings: Settings, *, service: CommandService, registry: CollectorRegistry
) -> Router:
    """The command routes with their guard, dependencies, error handlers and telemetry."""
    return api_router(
        settings,
        route_handlers=[FlightController, BookingController, CustomerController],
        service=Provide(lambda: service, sync_to_thread=False),
        telemetry=TELEMETRY,
        registry=registry,
        request_id=(
            "Correlation id stored with the events (else a new one); echoed back. "
            "An invalid one is a 400."
        ),
        exception_handlers=command_exception_handlers(),
        response_headers=[
            ResponseHeader(
                name=POSITION_HEADER,
                description="Positions of the events stored: pass as X-Flightbook-After",
                documentation_only=True,
            )
        ],
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
    return create_app(
        "flightbook command API",
        settings,
        route_handlers=[command_router(settings, service=service, registry=registry)],
        checks=checks,
        registry=registry,
        on_startup=list(on_startup),
        on_shutdown=list(on_shutdown),
    )
