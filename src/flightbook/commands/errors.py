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
illegal transition (e.g. cancel a rejected)    409     -
too many concurrent changes                    409     -
=============================================  ======  =====================

The shared handlers of :mod:`flightbook.http.problems` stay in charge of everything else;
these are installed on the command routes' router, where Litestar prefers them.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from litestar.exceptions import ClientException, HTTPException, ValidationException
from litestar.exceptions.http_exceptions import RequestEntityTooLarge

from flightbook.commands.service import ConcurrentChangeError, NotFoundError
from flightbook.domain.errors import (
    CapacityBelowCommitmentsError,
    DomainError,
    FlightNotBookableError,
    HoldConflictError,
    HoldNotExpiredError,
    IllegalTransitionError,
    SeatsUnavailableError,
)
from flightbook.http.problems import problem_handlers, problem_response

if TYPE_CHECKING:
    from litestar import Request, Response
    from litestar.types import ExceptionHandlersMap

__all__ = ("HEADER_FIELDS", "command_exception_handlers", "status_for")

_CONFLICTS: tuple[type[DomainError], ...] = (
    IllegalTransitionError,
    FlightNotBookableError,
    SeatsUnavailableError,
    HoldConflictError,
    HoldNotExpiredError,
    CapacityBelowCommitmentsError,
    ConcurrentChangeError,
)

HEADER_FIELDS = {
    "idempotency_key": "Idempotency-Key",
    "idempotency-key": "Idempotency-Key",
    "request_id": "X-Request-ID",
    "x-request-id": "X-Request-ID",
}
"""Handler parameter (or lower-cased header) names -> the header a client knows."""

_MSGSPEC_FIELD = re.compile(
    r"^Object (?:missing required|contains unknown) field `(?P<name>[^`]+)`"
)
_MISSING_PARAMETER = re.compile(r"Missing required (?P<kind>\w+) parameter '(?P<name>[^']+)'")
_AT_PATH = re.compile(r" - at `\$\.?(?P<path>[^`]*)`")


def status_for(exc: DomainError) -> int:
    """``409`` for a command the current state refuses, ``422`` for an invalid one."""
    return 409 if isinstance(exc, _CONFLICTS) else 422


def _on_domain_error(_request: Request[Any, Any, Any], exc: DomainError) -> Response[Any]:
    return problem_response(status_for(exc), exc.code, exc.message, field=exc.field)


def _on_not_found(_request: Request[Any, Any, Any], exc: NotFoundError) -> Response[Any]:
    return problem_response(404, "not_found", str(exc))


def _join(prefix: str, name: str) -> str:
    if not prefix:
        return name
    return f"{prefix}{name}" if name.startswith("[") else f"{prefix}.{name}"


def _explain(item: dict[str, Any]) -> dict[str, str]:
    """One validation failure as ``{field, message, source}`` with the field a client knows."""
    message = str(item.get("message", ""))
    key = str(item.get("key") or "")
    source = str(getattr(item.get("source"), "value", item.get("source")) or "")  # a ParamType
    if source == "header":
        return {"field": HEADER_FIELDS.get(key, key), "message": message, "source": source}
    # Litestar names the body "data" and a nested value by its path ("passengers[0]");
    # msgspec names a missing or unknown field only in the message.
    base = "" if key == "data" else key
    at = _AT_PATH.search(message)
    if at is not None:
        base = _join(base, at.group("path"))
        message = _AT_PATH.sub("", message)
    named = _MSGSPEC_FIELD.match(message)
    if named is not None:
        field = _join(base, named.group("name"))
    elif key == "data" and message == "'data'":
        field, message = "body", "a JSON body is required"
    else:
        field = base or "body"
    return {"field": field, "message": message, **({"source": source} if source else {})}


def _on_validation(_request: Request[Any, Any, Any], exc: ValidationException) -> Response[Any]:
    raw = exc.extra if isinstance(exc.extra, list) else []
    errors = [_explain(item) for item in raw if isinstance(item, dict)]
    if not errors:
        detail = str(exc.detail)
        missing = _MISSING_PARAMETER.search(detail)
        if missing is not None:
            name = missing.group("name")
            field = HEADER_FIELDS.get(name.lower(), name)
            errors.append({"field": field, "message": f"the {missing.group('kind')} is required"})
        else:
            errors.append(_explain({"message": detail, "key": "data"}))
    first = errors[0]
    return problem_response(
        400,
        "invalid_request",
        f"{first['field']}: {first['message']}",
        field=first["field"],
        extra={"errors": errors},
    )


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
        NotFoundError: _on_not_found,
        ValidationException: _on_validation,
        ClientException: _on_client_error,
    }
