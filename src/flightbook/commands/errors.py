"""How the command API answers what it refuses: an RFC 9457 problem naming the field.

=============================================  ======  =====================
refusal                                        status  ``field``
=============================================  ======  =====================
malformed JSON, no body                        400     ``body``
wrong type, missing/unknown field, too long,   400     the field (``passengers[0].name``,
out of bounds, bad header                              ``Idempotency-Key``...)
body larger than ``max_body_bytes``            413     ``body``
no/bad/expired token                           401     ``Authorization``
token without the route's role                 403     -
unknown booking (or someone else's), flight    404     -
invalid value (domain rule), unknown fare,     422     the field (``fares[0].price.amount``,
unknown flight, reused Idempotency-Key                 ``fare``, ``flight_id``...)
flight cancelled or departed                   409     ``flight_id``
erasure while a booking is in progress         409     - (``bookings_in_progress``)
a business-flow cap reached (``cap_exceeded``) 409     - (the body names ``cap``,
                                                       ``limit``, ``current``, ``requested``)
illegal transition (e.g. cancel a rejected)    409     -
too many concurrent changes                    409     -
=============================================  ======  =====================

A cap is a ``409``, not a ``429``: it is about what the customer holds now, not how fast
they ask; it clears when one of their bookings is confirmed, rejected or cancelled, not
after a time a ``Retry-After`` could name (the rate limits answer ``429``).

The shared handlers of :mod:`flightbook.http.problems` stay in charge of everything else;
these are installed on the command routes' router, where Litestar prefers them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from litestar.exceptions import ClientException, HTTPException, ValidationException
from litestar.exceptions.http_exceptions import RequestEntityTooLarge

from flightbook.commands.service import ConcurrentChangeError, NotFoundError
from flightbook.domain.caps import CapExceededError
from flightbook.domain.errors import (
    CapacityBelowCommitmentsError,
    DomainError,
    FlightNotBookableError,
    HoldConflictError,
    HoldNotExpiredError,
    IllegalTransitionError,
    SeatsUnavailableError,
)
from flightbook.domain.subject import BookingsInProgressError
from flightbook.http.problems import problem_handlers, problem_response
from flightbook.http.validation import validation_handler

if TYPE_CHECKING:
    from litestar import Request, Response
    from litestar.types import ExceptionHandlersMap

__all__ = ("WIRE_NAMES", "command_exception_handlers", "status_for")

WIRE_NAMES = {
    "idempotency_key": "Idempotency-Key",
    "idempotency-key": "Idempotency-Key",
    "request_id": "X-Request-ID",
    "x-request-id": "X-Request-ID",
}
"""Handler parameter (or lower-cased header) names -> the header a client knows."""

_CONFLICTS: tuple[type[DomainError], ...] = (
    CapExceededError,
    IllegalTransitionError,
    FlightNotBookableError,
    SeatsUnavailableError,
    HoldConflictError,
    HoldNotExpiredError,
    CapacityBelowCommitmentsError,
    ConcurrentChangeError,
    BookingsInProgressError,
)


def status_for(exc: DomainError) -> int:
    """``409`` for a command the current state refuses, ``422`` for an invalid one."""
    return 409 if isinstance(exc, _CONFLICTS) else 422


def _on_domain_error(_request: Request[Any, Any, Any], exc: DomainError) -> Response[Any]:
    return problem_response(status_for(exc), exc.code, exc.message, field=exc.field)


def _on_cap_exceeded(_request: Request[Any, Any, Any], exc: CapExceededError) -> Response[Any]:
    extra = {"cap": exc.cap.value, "limit": exc.limit, "current": exc.current}
    extra["requested"] = exc.requested
    return problem_response(status_for(exc), exc.code, exc.message, extra=extra)


def _on_not_found(_request: Request[Any, Any, Any], exc: NotFoundError) -> Response[Any]:
    return problem_response(404, "not_found", str(exc))


def _on_client_error(request: Request[Any, Any, Any], exc: ClientException) -> Response[Any]:
    if isinstance(exc, RequestEntityTooLarge):
        return problem_response(
            413, "request_too_large", "the request body is too large", field="body"
        )
    if type(exc) is ClientException and exc.status_code == 400:
        # what Litestar raises for a body that is not JSON at all
        return problem_response(400, "malformed_body", str(exc.detail), field="body")
    shared = problem_handlers()[HTTPException]
    response: Response[Any] = shared(request, exc)
    return response


def command_exception_handlers() -> ExceptionHandlersMap:
    """Handlers for the command routes, layered over the app's ``problem_handlers()``."""
    return {
        DomainError: _on_domain_error,
        CapExceededError: _on_cap_exceeded,
        NotFoundError: _on_not_found,
        ValidationException: validation_handler(wire_names=WIRE_NAMES, fallback="body"),
        ClientException: _on_client_error,
    }
