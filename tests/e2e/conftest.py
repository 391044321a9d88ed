"""Processes of the system started for real (their composition roots), stopped by pid."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from flightbook.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


class SystemProcess:
    """One composition root (e.g. ``commands/saga.py``) run as a child process."""

    def __init__(self, script: str, settings: Settings, **env: str) -> None:
        self.script = script
        self.env = {**os.environ, **settings.to_env(), **env}
        self.process: subprocess.Popen[bytes] | None = None
        self.kills = 0

    def start(self) -> SystemProcess:
        self.process = subprocess.Popen(
            [sys.executable, str(ROOT / self.script)],
            env=self.env,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        return self

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()
        self.kills += 1

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def wait_http(self, url: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"{self.script} exited with {self.process.returncode}")
            try:
                with urllib.request.urlopen(url, timeout=1):  # noqa: S310 - loopback
                    return
            except OSError:
                time.sleep(0.1)
        raise AssertionError(f"{url} did not answer")


@pytest.fixture
def processes() -> Iterator[list[SystemProcess]]:
    """Register started processes here; each is stopped after the test."""
    started: list[SystemProcess] = []
    yield started
    for process in started:
        process.stop()
