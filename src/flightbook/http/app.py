"""What both HTTP APIs share: problems, health, OpenAPI, strict bodies, limits, headers, docs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from litestar import Litestar
from litestar.exceptions import ValidationException
from litestar.openapi import OpenAPIConfig

from flightbook.http.auth import BearerSecurityPlugin
from flightbook.http.bodies import StrictRequest
from flightbook.http.docs import LocalSwaggerRenderPlugin
from flightbook.http.headers import security_headers
from flightbook.http.health import health_handlers
from flightbook.http.openapi import ClosedStructSchemaPlugin
from flightbook.http.problems import problem_handlers
from flightbook.http.ratelimit import RateLimitPlugin
from flightbook.http.sessions import SessionCheckPlugin
from flightbook.http.validation import validation_handler

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping, Sequence

    from litestar.types import ControllerRouterHandler
    from prometheus_client import CollectorRegistry

    from flightbook.config.settings import Settings

__all__ = ("create_app",)


def create_app(
    title: str,
    settings: Settings,
    *,
    route_handlers: Sequence[ControllerRouterHandler] = (),
    checks: Mapping[str, Callable[[], Awaitable[bool]]],
    registry: CollectorRegistry,
    **litestar_options: Any,
) -> Litestar:
    """A Litestar app with flightbook's common behaviour around ``route_handlers``."""
    plugins = [
        BearerSecurityPlugin(),
        ClosedStructSchemaPlugin(),
        RateLimitPlugin(settings, registry),
        SessionCheckPlugin(settings),
        *litestar_options.pop("plugins", []),
    ]
    return Litestar(
        route_handlers=[
            *route_handlers,
            *health_handlers(checks, registry, metrics=settings.public_metrics),
        ],
        exception_handlers={**problem_handlers(), ValidationException: validation_handler()},
        openapi_config=OpenAPIConfig(
            title=title, version="1", path="/schema", render_plugins=[LocalSwaggerRenderPlugin()]
        ),
        before_send=[security_headers],
        request_max_body_size=settings.max_body_bytes,
        request_class=StrictRequest,
        debug=False,
        # logging is structlog's alone (runtime/logs.py): Litestar's default config would
        # replace the root handler, and with it the scrubber, for every stdlib logger
        logging_config=None,
        plugins=plugins,
        **litestar_options,
    )
