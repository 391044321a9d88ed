"""Processes of the system started for real (their composition roots), and a private broker."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from confluent_kafka import Consumer, KafkaException

from flightbook.config.settings import Settings
from flightbook.stack.servers import KIND_BY_NAME

ROOT = Path(__file__).resolve().parents[2]
"""The project folder (composition roots, migrations)."""


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
