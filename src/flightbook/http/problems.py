"""RFC 9457 problem documents for every error either HTTP API returns.

A 4xx names the offending field (``field``) whenever one is to blame; a server the API
needs being away is a 503 with ``Retry-After`` (:mod:`.outages`); any other unexpected
exception becomes a 500 without internals, and is logged with the correlation id.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import structlog
from litestar import Response
from litestar.exceptions import HTTPException
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR, HTTP_503_SERVICE_UNAVAILABLE

from flightbook.runtime.outages import RETRY_AFTER_SECONDS, unavailable_server

if TYPE_CHECKING:
    from litestar import Request
    from litestar.types import ExceptionHandlersMap

__all__ = ("PROBLEM_JSON", "Problem", "problem_handlers", "problem_response", "try_again")

PROBLEM_JSON = "application/problem+json"
_TYPE_BASE = "https://flightbook.example/problems/"
_log = structlog.get_logger()


class Problem(HTTPException):
    """An error to answer with a problem document.

    Args:
        status_code: the HTTP status.
        code: a short stable slug, becomes the problem ``type``.
        detail: a sentence for humans.
        field: the request field to blame, if any (``passengers[0].email``).
    """

    def __init__(
        self,
        status_code: int,
        code: str,
        detail: str,
        *,
        field: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail=detail, status_code=status_code, headers=headers)
        self.code = code
        self.field = field


def try_again(detail: str) -> Problem:
    """The ``503`` of an outage (ADR 0018): ``service_unavailable`` with ``Retry-After``."""
    return Problem(
        HTTP_503_SERVICE_UNAVAILABLE,
        "service_unavailable",
        detail,
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


def problem_response(
    status: int,
    code: str,
    detail: str,
    *,
    field: str | None = None,
    headers: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> Response[dict[str, Any]]:
    body: dict[str, Any] = {
        "type": _TYPE_BASE + code,
        "title": code.replace("_", " ").capitalize(),
        "status": status,
        "detail": detail,
    }
    if field is not None:
        body["field"] = field
    if extra:
        body.update(extra)
    return Response(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _on_problem(_request: Request[Any, Any, Any], exc: Problem) -> Response[dict[str, Any]]:
    return problem_response(
        exc.status_code, exc.code, exc.detail, field=exc.field, headers=exc.headers
    )


def _on_http(_request: Request[Any, Any, Any], exc: HTTPException) -> Response[dict[str, Any]]:
    code = {
        401: "unauthorized",
        403: "forbidden",
        404: "not_found",
        405: "method_not_allowed",
        413: "request_too_large",
        415: "unsupported_media_type",
        429: "too_many_requests",
    }.get(exc.status_code, "http_error")
    return problem_response(exc.status_code, code, str(exc.detail), headers=exc.headers)


def _on_unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    server = unavailable_server(exc)
    if server is not None:
        _log.warning(
            "http.server_unavailable",
            path=request.url.path,
            server=server,
            error=type(exc).__name__,
        )
        return _on_problem(
            request,
            try_again(
                f"a server this API needs ({server}) cannot be reached just now; "
                "nothing of this request was lost: send it again after Retry-After seconds "
                "(with the same Idempotency-Key)"
            ),
        )
    _log.error("http.unhandled_error", path=request.url.path, error=repr(exc), exc_info=exc)
    return problem_response(
        HTTP_500_INTERNAL_SERVER_ERROR,
        "internal_error",
        "the server failed to handle this request; it was logged",
    )


def problem_handlers() -> ExceptionHandlersMap:
    """Exception handlers that answer every error as ``application/problem+json``.

    Validation failures are :mod:`flightbook.http.validation`'s (added by the app factory).
    """
    return {
        Problem: _on_problem,
        HTTPException: _on_http,
        Exception: _on_unexpected,
    }
