"""Health and metrics over HTTP for the processes that are not HTTP APIs (saga, relay, workers).

A tiny threaded server: ``/health/live`` (the process runs), ``/health/ready`` (its
check passes, else 503), ``/metrics`` (Prometheus text of the given registry).
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

if TYPE_CHECKING:
    from collections.abc import Callable

    from prometheus_client import CollectorRegistry

__all__ = ("OpsServer",)


class OpsServer:
    """Serves health and metrics on ``host:port`` in a daemon thread (port 0: any free port)."""

    def __init__(
        self, *, host: str, port: int, registry: CollectorRegistry, ready: Callable[[], bool]
    ) -> None:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/health/live":
                    outer._send(self, 200, "application/json", b'{"status":"ok"}')
                elif self.path == "/health/ready":
                    try:
                        ok = ready()
                    except Exception:
                        ok = False
                    body = json.dumps({"status": "ok" if ok else "unavailable"}).encode()
                    outer._send(self, 200 if ok else 503, "application/json", body)
                elif self.path == "/metrics":
                    outer._send(self, 200, CONTENT_TYPE_LATEST, generate_latest(registry))
                else:
                    outer._send(
                        self, 404, "application/problem+json", b'{"status":404,"title":"Not found"}'
                    )

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass  # the process logs its own units of work

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, daemon=True, name="ops-http"
        )

    @staticmethod
    def _send(handler: BaseHTTPRequestHandler, status: int, content_type: str, body: bytes) -> None:
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> OpsServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
