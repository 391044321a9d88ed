"""The whole system as processes, driven through its two HTTP APIs and its command line.

Command API, query API, relay, saga and both projection workers run from their composition
roots, each writing its output to ``<logs>/<name>.log``; :class:`Caller` is someone with a
token; :func:`flightbook` runs the command line as an operator would, in a child process.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import httpx

from flightbook.config.settings import Settings
from flightbook.http.tokens import mint_token
from tests.support.pipeline import Process
from tests.support.processes import run_child

__all__ = ("FINAL", "Caller", "RunningSystem", "eventually", "flightbook", "running_system")

T = TypeVar("T")
FINAL = frozenset({"CONFIRMED", "REJECTED", "CANCELLED"})
"""Booking statuses the saga is done with."""


def eventually(
    probe: Callable[[], T], done: Callable[[T], bool], *, within: float = 60.0, what: str = ""
) -> T:
    """Call ``probe`` until ``done`` says yes about its answer; fail with the last one."""
    deadline = time.monotonic() + within
    answer = probe()
    while not done(answer):
        assert time.monotonic() < deadline, f"not within {within:.0f}s: {what}; last: {answer}"
        time.sleep(0.2)
        answer = probe()
    return answer


class Caller:
    """Someone with a token, calling one of the APIs."""

    def __init__(self, base: str, settings: Settings, subject: str, role: str) -> None:
        self.base = base
        self.subject = subject
        self.token = mint_token(settings, subject=subject, roles=[role])
        self._client = httpx.Client(base_url=base, timeout=30)

    def headers(self, **extra: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}", **extra}

    def get(self, path: str, *, after: str | None = None) -> httpx.Response:
        extra = {"X-Flightbook-After": after} if after else {}
        return self._client.get(path, headers=self.headers(**extra))

    def post(self, path: str, body: Any = None, **headers: str) -> httpx.Response:
        return self._client.post(path, json=body, headers=self.headers(**headers))

    def close(self) -> None:
        self._client.close()


class RunningSystem:
    """Every process of the system, started for real; stopped by :meth:`stop` (by pid).

    Args:
        settings: Their settings (as ``FLIGHTBOOK_*`` variables).
        logs: The folder each process writes ``<name>.log`` into.
    """

    NAMES = ("command-api", "query-api", "relay", "saga", "bookings", "flights")

    def __init__(self, settings: Settings, logs: Path) -> None:
        self.settings = settings
        self.logs = logs
        self.processes = {name: Process(name, settings, logs) for name in self.NAMES}
        for process in self.processes.values():
            process.env["PYTHONUNBUFFERED"] = "1"  # every line in the log as it is written
        self.commands = f"http://127.0.0.1:{self.processes['command-api'].port}"
        self.queries = f"http://127.0.0.1:{self.processes['query-api'].port}"
        self._callers: list[Caller] = []

    def start(self) -> RunningSystem:
        for process in self.processes.values():
            process.start()
        for process in self.processes.values():
            process.wait_ready(timeout=90)
        return self

    def stop(self) -> None:
        """SIGTERM to all at once (each leaves its consumer group meanwhile), then wait for each."""
        for caller in self._callers:
            caller.close()
        for process in self.processes.values():
            if process.running():
                assert process.process is not None
                process.process.terminate()
        for process in self.processes.values():
            process.stop()

    def log_files(self) -> list[Path]:
        return sorted(self.logs.glob("*.log"))

    def command_caller(self, subject: str, role: str) -> Caller:
        caller = Caller(self.commands, self.settings, subject, role)
        self._callers.append(caller)
        return caller

    def query_caller(self, subject: str, role: str) -> Caller:
        caller = Caller(self.queries, self.settings, subject, role)
        self._callers.append(caller)
        return caller

    def book(
        self, customer: Caller, flight_id: str, passengers: list[dict[str, str]], token: str
    ) -> str:
        """A booking through the command API (202); its id."""
        answer = customer.post(
            "/bookings",
            {
                "flight_id": flight_id,
                "fare": "Y",
                "passengers": passengers,
                "payment_token": token,
            },
            **{"Idempotency-Key": str(uuid.uuid4())},
        )
        assert answer.status_code == 202, answer.text
        booking_id: str = answer.json()["booking_id"]
        return booking_id


@contextmanager
def running_system(settings: Settings, tmp_path: Path) -> Iterator[RunningSystem]:
    """Every process started with ``settings`` (logs in ``tmp_path/logs``); stopped after."""
    logs = tmp_path / "logs"
    logs.mkdir()
    system = RunningSystem(settings, logs)
    try:
        yield system.start()
    finally:
        system.stop()


def flightbook(
    settings: Settings, *args: str, stdin: str | None = None, timeout: float = 120.0
) -> subprocess.CompletedProcess[str]:
    """``flightbook <args>`` in a child process with these settings; its exit code and output."""
    env = {**os.environ, **settings.to_env(), "PYTHONUNBUFFERED": "1"}
    return run_child(
        [sys.executable, "-m", "flightbook.cli", *args], env, stdin=stdin, timeout=timeout
    )
