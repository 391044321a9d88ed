"""What both HTTP APIs share: problem documents, health, metrics, OpenAPI, body limit."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from litestar import Litestar
from litestar.openapi import OpenAPIConfig

from flightbook.observability import health_handlers
from flightbook.problems import problem_handlers

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping, Sequence

    from litestar.types import ControllerRouterHandler
    from prometheus_client import CollectorRegistry

    from flightbook.settings import Settings

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
    return Litestar(
        route_handlers=[*route_handlers, *health_handlers(checks, registry)],
        exception_handlers=problem_handlers(),
        openapi_config=OpenAPIConfig(title=title, version="1", path="/schema"),
        request_max_body_size=settings.max_body_bytes,
        debug=False,
        **litestar_options,
    )
