"""Where the project's non-Python parts live: ``migrations/`` and the composition roots."""

from __future__ import annotations

from pathlib import Path

__all__ = ("ProjectLayoutError", "project_dir")


class ProjectLayoutError(RuntimeError):
    """The project folder (with ``migrations/`` and the composition roots) was not found."""


def project_dir(configured: str | None = None) -> Path:
    """The folder holding ``migrations/``, ``commands/``, ``queries/`` and ``projections/``.

    Looked for in: the configured folder, the working directory, then beside the source
    (an editable install or a container image that copies the whole project).
    """
    candidates = [Path(configured)] if configured else []
    candidates += [Path.cwd(), Path(__file__).resolve().parents[2]]
    for candidate in candidates:
        if (candidate / "migrations" / "postgres").is_dir() and (candidate / "commands").is_dir():
            return candidate.resolve()
    raise ProjectLayoutError(
        f"no flightbook project folder found (looked in {', '.join(map(str, candidates))}); "
        "set FLIGHTBOOK_PROJECT_DIR"
    )
