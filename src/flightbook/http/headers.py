"""Security headers on every answer of both APIs (a Litestar ``before_send`` hook).

``before_send`` wraps the whole app, so the headers are on everything: routed answers,
problems, 404s and 405s of the router, 413s, 429s and the docs pages.

===========================  =========================================================
header                       value
===========================  =========================================================
``X-Content-Type-Options``   ``nosniff``
``Referrer-Policy``          ``no-referrer``
``Cache-Control``            ``no-store`` (bookings hold personal data), unless the answer
                             set its own (the docs assets: :mod:`flightbook.http.docs`)
``Content-Security-Policy``  JSON: ``default-src 'none'; frame-ancestors 'none'``;
                             HTML (the docs UI): scripts, styles, images and fetches from
                             the API itself only (:data:`DOCS_CSP`)
===========================  =========================================================

The ``server`` header is not sent at all (uvicorn's ``server_header=False``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from litestar.datastructures import MutableScopeHeaders

if TYPE_CHECKING:
    from litestar.types import Message, Scope

__all__ = ("API_CSP", "DOCS_CSP", "security_headers")

API_CSP = "default-src 'none'; frame-ancestors 'none'"
"""An API answer is data: it may load nothing and be framed by no one."""
DOCS_CSP = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",  # the bundle and the initialiser, both served by the API
        "style-src 'self' 'unsafe-inline'",  # Swagger UI sets inline styles
        "img-src 'self' data:",  # its icons are data: URIs
        "font-src 'self'",
        "connect-src 'self'",  # the OpenAPI document and "Try it out"
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    )
)
"""The docs UI's policy: nothing from anywhere but the API itself, no inline script."""


async def security_headers(message: Message, _scope: Scope) -> None:
    """Add the headers to the start of every HTTP answer.

    A coroutine function on purpose: Litestar runs a plain function given as a
    ``before_send`` hook in a worker thread, twice per answer (start and body), which
    cost the query API about 15% of its CPU per request (ADR 0029).
    """
    if message["type"] != "http.response.start":
        return
    headers = MutableScopeHeaders.from_message(message)
    headers["X-Content-Type-Options"] = "nosniff"
    headers["Referrer-Policy"] = "no-referrer"
    if "cache-control" not in headers:
        headers["Cache-Control"] = "no-store"
    html = headers.get("content-type", "").startswith("text/html")
    headers["Content-Security-Policy"] = DOCS_CSP if html else API_CSP
