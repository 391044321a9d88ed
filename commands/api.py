"""Composition root of the command API process (``compose.yaml`` service ``command-api``)."""

from flightbook.bootstrap import build_command_api, load_settings, serve_http

settings = load_settings("command-api")
serve_http(
    build_command_api(settings),
    host=settings.host,
    port=settings.command_port,
    process="command-api",
)
