"""Processes of the system started for real (their composition roots), and a private broker."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Self

from confluent_kafka import Consumer, KafkaException

from flightbook.config.settings import Settings
from flightbook.stack import ports
from flightbook.stack.servers import KIND_BY_NAME

ROOT = Path(__file__).resolve().parents[2]
"""The project folder (composition roots, migrations)."""


def run_child(
    argv: list[str], env: Mapping[str, str], *, stdin: str | None = None, timeout: float = 120.0
) -> subprocess.CompletedProcess[str]:
    """``argv`` run to its end in the project folder: its exit status and output, as text."""
    return subprocess.run(
        argv,
        env=dict(env),
        cwd=ROOT,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def without_flightbook_settings() -> dict[str, str]:
    """This process's environment without any ``FLIGHTBOOK_*`` variable."""
    return {k: v for k, v in os.environ.items() if not k.startswith("FLIGHTBOOK_")}


_GIVEN: set[int] = set()
"""Ports handed out in this session: a port given to one test's process is never given to
another's, even before either binds it."""


def free_port() -> int:
    """A free port in this test worker's own slice (pytest-xdist workers run side by side)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    lanes = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if len(_GIVEN) > 2_000:
        _GIVEN.clear()
    port = ports.free_port(_GIVEN, lane=int(worker) if worker.isdigit() else 0, lanes=lanes)
    _GIVEN.add(port)
    return port


class SystemProcess:
    """One composition root (e.g. ``commands/saga.py``) run as a child process, by its pid.

    Args:
        script: The composition root, relative to the project folder.
        settings: Its settings (given as ``FLIGHTBOOK_*`` variables).
        env: More variables.
    """

    log: Path | None = None
    """Where its output goes (nowhere if None)."""
    port: int = 0
    """The HTTP port it serves health and metrics on (for :meth:`wait_ready`)."""

    def __init__(self, script: str, settings: Settings, **env: str) -> None:
        self.script = script
        self.env = {**os.environ, **settings.to_env(), **env}
        self.process: subprocess.Popen[bytes] | None = None
        self.kills = 0

    def start(self) -> Self:
        with contextlib.ExitStack() as stack:
            out = stack.enter_context(self.log.open("ab")) if self.log else subprocess.DEVNULL
            self.process = subprocess.Popen(
                [sys.executable, str(ROOT / self.script)],
                env=self.env,
                cwd=ROOT,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT if self.log else subprocess.DEVNULL,
            )
        return self

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL, and wait for it to be gone."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()
        self.kills += 1

    def stop(self) -> int | None:
        """SIGTERM (it finishes its unit of work first), then its exit status."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def _tail(self) -> str:
        return self.log.read_text()[-2000:] if self.log else ""

    def wait_http(self, url: str, timeout: float = 30.0, poll: float = 0.1) -> None:
        """Until ``url`` answers 2xx; fails at once if the process exits."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(
                    f"{self.script} exited with {self.process.returncode}: {self._tail()}"
                )
            try:
                with urllib.request.urlopen(url, timeout=1):  # noqa: S310 - loopback
                    return
            except OSError:
                time.sleep(poll)
        raise AssertionError(f"{url} did not answer: {self._tail()}")

    def wait_ready(self, timeout: float = 60.0, poll: float = 0.1) -> None:
        """Until its ``/health/ready`` answers 200."""
        self.wait_http(f"http://127.0.0.1:{self.port}/health/ready", timeout, poll)

    def get(self, path: str) -> tuple[int, str]:
        """``GET`` one of its HTTP paths: status and body."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=2) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as error:
            with error:
                return error.code, error.read().decode()

    def metric(self, name: str) -> float:
        """Sum of every sample of ``name`` on its ``/metrics``."""
        _, text = self.get("/metrics")
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith(name) and not line.startswith("#")
        )


class PrivateBroker:
    """A Tansu broker for one test, restartable empty on the same port.

    The session's broker cannot be used for this: ``LocalStack`` keeps a killed server's
    port only if a plain bind() succeeds, and the dead broker's connections hold the port
    in TIME_WAIT, so ``test_stack.up()`` would move the session's broker to another port
    under every later test (the relay's fault tests found this). Tansu binds with
    SO_REUSEADDR, so this one comes back on its port at once - empty, as it always does.
    """

    def __init__(self, data_dir: Path) -> None:
        self.kind = KIND_BY_NAME["kafka"]
        self.data_dir = data_dir
        self.port = free_port()
        self.url = self.kind.url(self.port)
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.kind.prepare(self.data_dir)
        with (self.data_dir / "broker.log").open("ab") as log:
            self.process = subprocess.Popen(
                self.kind.command(self.data_dir, self.port),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.data_dir,
            )
        deadline = time.monotonic() + 30
        while not self._answers():
            assert self.process.poll() is None, (self.data_dir / "broker.log").read_text()
            assert time.monotonic() < deadline, "the private broker did not answer"
            time.sleep(0.1)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def _answers(self) -> bool:
        probe = Consumer({"bootstrap.servers": self.url, "group.id": "probe", "log_level": 0})
        try:
            probe.list_topics(timeout=2)
        except KafkaException:
            return False
        finally:
            probe.close()
        return True
