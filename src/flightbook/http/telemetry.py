"""Per-request telemetry of both APIs: correlation id, one log line, a count and a latency.

One middleware (:class:`Telemetry`) serves the command and the query API; each describes
its metrics and log line with a :class:`TelemetrySpec`. Handlers tell it what to log
through the request's :class:`RequestTrace` (:func:`trace_of`).

The caller's ``X-Request-ID`` becomes the correlation id (stored with the events by the
command API); an invalid one is refused with ``400`` rather than kept.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import structlog
from litestar.datastructures import MutableScopeHeaders
from litestar.enums import ScopeType
from litestar.middleware import ASGIMiddleware
from prometheus_client import Counter, Histogram

from flightbook.http.correlation import REQUEST_ID_HEADER, correlation_of
from flightbook.http.problems import Problem

if TYPE_CHECKING:
    from collections.abc import Callable

    from litestar import Request
    from litestar.types import ASGIApp, Message, Receive, Scope, Send
    from prometheus_client import CollectorRegistry

__all__ = ("RequestTrace", "Telemetry", "TelemetrySpec", "trace_of")

_TRACE_KEY = "flightbook_request_trace"


@dataclass
class RequestTrace:
    """What one request's handler tells the telemetry middleware."""

    correlation_id: str
    ids: dict[str, str] = field(default_factory=dict)
    """Ids to log (``booking_id``, ``flight_id``)."""
    repeated: bool = False
    """Nothing was stored: an idempotent repeat."""


@dataclass(frozen=True)
class TelemetrySpec:
    """The names one API gives its request metrics and its log line."""

    log_event: str
    """The event of the one line per request (``command.handled``)."""
    logger: str
    counter: str
    counter_help: str
    histogram: str
    histogram_help: str
    buckets: tuple[float, ...]
    label: str
    """The counter's second label: ``outcome`` or ``status``."""
    label_of: Callable[[int, RequestTrace], str]
    """The value of that label for a response status."""
    histogram_by_label: bool = False
    """Whether the latency histogram is labelled with it too."""
    log_label: bool = False
    """Whether the log line carries it too."""


class _Metrics:
    def __init__(self, spec: TelemetrySpec, registry: CollectorRegistry) -> None:
        self.count = Counter(
            spec.counter, spec.counter_help, ["endpoint", spec.label], registry=registry
        )
        self.duration = Histogram(
            spec.histogram,
            spec.histogram_help,
            ["endpoint", spec.label] if spec.histogram_by_label else ["endpoint"],
            registry=registry,
            buckets=spec.buckets,
        )


class Telemetry(ASGIMiddleware):
    """Correlation id, one log line, count and latency per request.

    Args:
        spec: The API's metric names and log line.
        registry: Where the metrics go (never the global registry).
    """

    scopes = (ScopeType.HTTP,)

    def __init__(self, spec: TelemetrySpec, registry: CollectorRegistry) -> None:
        self.spec = spec
        self.metrics = _Metrics(spec, registry)
        self._log = structlog.get_logger(spec.logger)

    def __deepcopy__(self, _memo: dict[int, object]) -> Telemetry:
        # Litestar deep-copies a router (and its middleware) when it registers it;
        # the metrics must stay the ones in the registry.
        return self

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        started = time.perf_counter()
        correlation_id, acceptable = correlation_of(scope)
        trace = RequestTrace(correlation_id=correlation_id)
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
                self._observe(endpoint, status, trace, time.perf_counter() - started)

    def _observe(self, endpoint: str, status: int, trace: RequestTrace, elapsed: float) -> None:
        spec = self.spec
        label = spec.label_of(status, trace)
        self.metrics.count.labels(endpoint, label).inc()
        if spec.histogram_by_label:
            self.metrics.duration.labels(endpoint, label).observe(elapsed)
        else:
            self.metrics.duration.labels(endpoint).observe(elapsed)
        extra: dict[str, Any] = {spec.label: label} if spec.log_label else {}
        self._log.info(
            spec.log_event,
            correlation_id=trace.correlation_id,
            endpoint=endpoint,
            status=status,
            **extra,
            duration_ms=round(elapsed * 1000, 2),
            **trace.ids,
        )


def trace_of(request: Request[Any, Any, Any]) -> RequestTrace:
    """The trace the :class:`Telemetry` middleware opened for ``request``."""
    trace = request.scope["state"].get(_TRACE_KEY)
    if not isinstance(trace, RequestTrace):  # pragma: no cover - a wiring mistake
        raise RuntimeError("these routes need the Telemetry middleware")
    return trace
