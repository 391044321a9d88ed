"""The API docs UI (Swagger UI) served from the installed ``swagger-ui-bundle`` package.

Litestar's own render plugins load their scripts from public CDNs, which leaves the docs
blank offline or on an intranet and trusts a third party with a page that holds a token.
Here ``/schema`` and ``/schema/swagger`` are a page with no inline script whose every
asset comes from the API itself: ``/schema/static/<file>`` (a fixed list of files of the
package) and ``/schema/swagger-init.js`` (points Swagger UI at ``/schema/openapi.json``).
The page's ``Content-Security-Policy`` (:data:`flightbook.http.headers.DOCS_CSP`) allows
nothing else. ReDoc and the other UIs are not served.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from litestar import Request, Response, get
from litestar.constants import OPENAPI_JSON_HANDLER_NAME
from litestar.exceptions import NotFoundException
from litestar.openapi.plugins import OpenAPIRenderPlugin
from litestar.params import FromPath
from litestar.response import File
from swagger_ui_bundle import swagger_ui_path  # type: ignore[import-untyped]

if TYPE_CHECKING:
    from litestar.router import Router

__all__ = ("ASSETS", "LocalSwaggerRenderPlugin")

ASSETS: dict[str, str] = {
    "swagger-ui.css": "text/css; charset=utf-8",
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui-standalone-preset.js": "text/javascript; charset=utf-8",
    "favicon-32x32.png": "image/png",
    "favicon-16x16.png": "image/png",
}
"""The files of the package the page uses, and their media types (nothing else is served)."""
_ASSET_CACHE = "public, max-age=86400"
_INIT = """window.addEventListener("load", function () {
  window.ui = SwaggerUIBundle({
    url: %(url)s,
    dom_id: "#swagger-ui",
    deepLinking: true,
    validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
    layout: "StandaloneLayout"
  });
});
"""


class LocalSwaggerRenderPlugin(OpenAPIRenderPlugin):
    """Swagger UI at ``/schema`` and ``/schema/swagger``, with its assets beside it."""

    def __init__(self) -> None:
        super().__init__(path=["/swagger", "/"], favicon="", style="")
        self._root = Path(swagger_ui_path)

    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        base = self._base(request)
        title = str(openapi_schema.get("info", {}).get("title", "API"))
        title = title.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        return f"""<!DOCTYPE html>
<html lang="en">
  <head>
    <meta charset="utf-8">
    <meta name="viewport" content="width=device-width, initial-scale=1">
    <title>{title}</title>
    <link rel="icon" type="image/png" href="{base}/static/favicon-32x32.png" sizes="32x32">
    <link rel="stylesheet" href="{base}/static/swagger-ui.css">
  </head>
  <body>
    <div id="swagger-ui"></div>
    <script src="{base}/static/swagger-ui-bundle.js"></script>
    <script src="{base}/static/swagger-ui-standalone-preset.js"></script>
    <script src="{base}/swagger-init.js"></script>
  </body>
</html>
""".encode()

    @staticmethod
    def _base(request: Request[Any, Any, Any]) -> str:
        return request.app.route_reverse(OPENAPI_JSON_HANDLER_NAME).rsplit("/", 1)[0]

    def receive_router(self, router: Router) -> None:
        root = self._root

        @get("/static/{name:str}", include_in_schema=False, sync_to_thread=False)
        def asset(name: FromPath[str]) -> File:
            media_type = ASSETS.get(name)
            if media_type is None:
                raise NotFoundException(detail="no such docs asset")
            return File(
                root / name,
                filename=name,
                media_type=media_type,
                content_disposition_type="inline",
                headers={"Cache-Control": _ASSET_CACHE},
            )

        @get("/swagger-init.js", include_in_schema=False, sync_to_thread=False)
        def init(request: Request[Any, Any, Any]) -> Response[bytes]:
            url = request.app.route_reverse(OPENAPI_JSON_HANDLER_NAME)
            script = _INIT % {"url": '"' + url.replace('"', "") + '"'}
            return Response(
                script.encode(),
                media_type="text/javascript; charset=utf-8",
                headers={"Cache-Control": _ASSET_CACHE},
            )

        router.register(asset)
        router.register(init)
