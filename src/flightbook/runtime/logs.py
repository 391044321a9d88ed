"""structlog configuration: JSON lines when not on a terminal, readable when on one.

Every long-running process logs one canonical line per unit of work (STYLE G10),
with the correlation id bound through :func:`structlog.contextvars.bind_contextvars`.

No line carries a secret or personal data: tracebacks are rendered without frame locals
(they held the request's headers and body), and every line, the standard library's
included, passes :class:`~flightbook.runtime.scrub.Scrubber` just before the renderer.
"""

from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING, Literal

import structlog
from structlog.tracebacks import ExceptionDictTransformer

from flightbook.runtime.scrub import Scrubber

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = ("configure_logging",)

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


def configure_logging(
    *,
    log_format: Literal["auto", "json", "console"] = "auto",
    level: str = "info",
    process: str | None = None,
    secrets: Iterable[str] = (),
) -> None:
    """Configure structlog once per process.

    Args:
        log_format: ``json``, ``console``, or ``auto`` (console on a terminal, JSON otherwise).
        level: minimum level name.
        process: a name bound to every line (``command-api``, ``relay``, ...).
        secrets: strings never to log (the signing secret).
    """
    use_json = log_format == "json" or (log_format == "auto" and not sys.stderr.isatty())
    # exceptions are rendered into the event (without frame locals) before the scrubber
    # sees it, so the console renderer never formats a traceback itself
    renderer: structlog.typing.Processor
    exceptions: structlog.typing.Processor
    if use_json:
        renderer = structlog.processors.JSONRenderer()
        exceptions = structlog.processors.ExceptionRenderer(
            ExceptionDictTransformer(show_locals=False)
        )
    else:
        renderer = structlog.dev.ConsoleRenderer(exception_formatter=structlog.dev.plain_traceback)
        exceptions = structlog.processors.format_exc_info
    processors: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        exceptions,
        Scrubber(secrets),
    ]
    if process is not None:
        processors.insert(0, _bind_process(process))
    processors.append(renderer)
    # stdlib loggers (uvicorn, litestar, kafka, pymongo) go through the same chain
    formatter = structlog.stdlib.ProcessorFormatter(
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        foreign_pre_chain=processors[:-1],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(max(_LEVELS.get(level, logging.INFO), logging.INFO))
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS.get(level, logging.INFO)),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )


def _bind_process(name: str) -> structlog.typing.Processor:
    def add_process(
        _logger: object, _method: str, event_dict: structlog.typing.EventDict
    ) -> structlog.typing.EventDict:
        event_dict.setdefault("process", name)
        return event_dict

    return add_process
