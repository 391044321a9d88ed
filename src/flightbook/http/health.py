"""Health and metrics endpoints shared by the HTTP processes.

``/health/live`` answers while the process runs; ``/health/ready`` only when every
dependency check passes (503 with the failing names otherwise); ``/metrics`` is the
Prometheus text exposition of the process's registry. The APIs serve ``/metrics`` on their
ops port (:class:`flightbook.runtime.ops.OpsServer`), and on their public port only when
``FLIGHTBOOK_PUBLIC_METRICS`` is true: the counts of bookings, declines and refunds are
not for every client to read.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec
from litestar import Response, get
from litestar.status_codes import HTTP_200_OK, HTTP_503_SERVICE_UNAVAILABLE
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping

    from litestar.handlers import HTTPRouteHandler

__all__ = ("Health", "health_handlers")


class Health(msgspec.Struct, frozen=True, kw_only=True):
    status: str
    checks: dict[str, str] = msgspec.field(default_factory=dict)


def health_handlers(
    checks: Mapping[str, Callable[[], Awaitable[bool]]],
    registry: CollectorRegistry,
    *,
    metrics: bool = False,
) -> list[HTTPRouteHandler]:
    """Route handlers for ``/health/live``, ``/health/ready`` and (if ``metrics``) ``/metrics``."""

    @get("/health/live", tags=["operations"], sync_to_thread=False)
    def live() -> Health:
        return Health(status="ok")

    @get("/health/ready", tags=["operations"])
    async def ready() -> Response[Health]:
        results: dict[str, str] = {}
        for name, check in checks.items():
            try:
                results[name] = "ok" if await check() else "failing"
            except Exception as exc:
                results[name] = f"failing: {type(exc).__name__}"
        ok = all(value == "ok" for value in results.values())
        return Response(
            Health(status="ok" if ok else "unavailable", checks=results),
            status_code=HTTP_200_OK if ok else HTTP_503_SERVICE_UNAVAILABLE,
        )

    @get(
        "/metrics",
        name="metrics",
        tags=["operations"],
        media_type=CONTENT_TYPE_LATEST,
        sync_to_thread=False,
    )
    def metrics_handler() -> bytes:
        return generate_latest(registry)

    return [live, ready, metrics_handler] if metrics else [live, ready]
