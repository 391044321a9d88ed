"""``flightbook`` run in-process, as a shell would run it with the test's settings."""

from __future__ import annotations

from typing import TYPE_CHECKING

from flightbook.cli import main

if TYPE_CHECKING:
    import pytest

    from flightbook.config.settings import Settings


def use_settings(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Put ``settings`` in the environment (undone after the test), where the CLI reads them."""
    for key, value in settings.to_env().items():
        monkeypatch.setenv(key, value)
    return settings


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """``flightbook <args>``: its exit status, standard output and standard error."""
    try:
        code = main(list(args))
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err
