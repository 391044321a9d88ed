"""The router every API mounts its routes on: bearer guard, principal, telemetry, problems."""

from __future__ import annotations

from typing import TYPE_CHECKING

from litestar import Router

from flightbook.http.auth import bearer_guard, provide_principal
from flightbook.http.openapi import REQUEST_ID_RESPONSE_HEADER, request_id_parameter
from flightbook.http.telemetry import Telemetry

if TYPE_CHECKING:
    from collections.abc import Sequence

    from litestar.datastructures import ResponseHeader
    from litestar.di import Provide
    from litestar.types import ControllerRouterHandler, ExceptionHandlersMap
    from prometheus_client import CollectorRegistry

    from flightbook.config.settings import Settings
    from flightbook.http.telemetry import TelemetrySpec

__all__ = ("api_router",)


def api_router(
    settings: Settings,
    *,
    route_handlers: Sequence[ControllerRouterHandler],
    service: Provide,
    telemetry: TelemetrySpec,
    registry: CollectorRegistry,
    request_id: str,
    exception_handlers: ExceptionHandlersMap,
    response_headers: Sequence[ResponseHeader] = (),
) -> Router:
    """The API's routes behind the bearer guard, with ``service`` and ``principal`` to inject.

    Args:
        settings: The token checks.
        route_handlers: The API's controllers.
        service: Provides the ``service`` dependency (the API's use cases).
        telemetry: The API's metrics and log line.
        registry: Where the metrics go.
        request_id: What the API does with ``X-Request-ID`` (for the OpenAPI document).
        exception_handlers: The API's own, layered over the app's problem handlers.
        response_headers: Headers the API's answers carry besides ``X-Request-ID``.
    """
    return Router(
        path="/",
        route_handlers=list(route_handlers),
        guards=[bearer_guard(settings)],
        dependencies={"service": service, "principal": provide_principal()},
        parameters=request_id_parameter(request_id),
        response_headers=[*response_headers, REQUEST_ID_RESPONSE_HEADER],
        exception_handlers=exception_handlers,
        middleware=[Telemetry(telemetry, registry)],
    )
