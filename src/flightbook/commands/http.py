"""The command HTTP API (port 8000): POST endpoints that turn requests into events."""

from __future__ import annotations

from typing import TYPE_CHECKING

from flightbook.web import create_app

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping

    from litestar import Litestar
    from prometheus_client import CollectorRegistry

    from flightbook.settings import Settings

__all__ = ("create_command_app",)


def create_command_app(
    settings: Settings,
    *,
    checks: Mapping[str, Callable[[], Awaitable[bool]]],
    registry: CollectorRegistry,
) -> Litestar:
    """The command API with its dependencies passed in (STYLE G5)."""
    return create_app("flightbook command API", settings, checks=checks, registry=registry)
