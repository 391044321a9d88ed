"""Composition root of the query API process (``compose.yaml`` service ``query-api``)."""

from flightbook.bootstrap import build_query_api, load_settings, serve_http

settings = load_settings("query-api")
serve_http(
    build_query_api(settings), host=settings.host, port=settings.query_port, process="query-api"
)
