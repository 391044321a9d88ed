"""What ``flightbook up`` says about a process that never answered ``/health/live``."""

from __future__ import annotations

import subprocess
import sys

from flightbook.config.processes import ProcessSpec
from flightbook.config.settings import Settings
from flightbook.stack.supervisor import _announce, _Child
from tests.support.processes import free_port


def test_a_process_that_exited_before_answering_is_named_and_the_system_not_called_whole() -> None:
    settings = Settings(saga_http_port=free_port())  # nothing listens there
    exited = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    exited.wait(30)
    said: list[str] = []

    _announce(
        settings, [_Child(ProcessSpec("saga", "x.py", "saga_http_port"), exited)], said.append
    )

    assert said == [
        f"saga         does not answer http://{settings.host}:{settings.saga_http_port}"
        "/health/live yet (it exited with status 3)",
        "flightbook is running without saga so far; press Ctrl-C to stop",
    ]
