"""The system under test: its own stack and every process, on free ports."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from typing import TYPE_CHECKING

import msgspec

from flightbook.bench.measure import wait_http
from flightbook.config.paths import project_dir
from flightbook.config.processes import PROCESSES, ProcessSpec
from flightbook.config.settings import Settings
from flightbook.stack.launcher import LocalStack, settings_urls
from flightbook.stack.migrate import migrate_all
from flightbook.stack.ports import free_port

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ("UNTHROTTLED", "SystemUnderTest", "scratch_settings")

UNTHROTTLED = dict.fromkeys(
    ("rate_limit_writes", "rate_limit_reads", "rate_limit_address", "rate_limit_refused_tokens"),
    "1000000/minute",
)
"""Rate limits no benchmark client reaches: the limiter still runs (its Redis round trips
are in the figures) but never refuses, so the figures measure the system, not the limits."""


def scratch_settings(state_dir: str) -> Settings:
    """The environment's settings with a fresh state folder and local servers on free ports.

    For the scripts in ``bench/``: their stack never meets ``flightbook up``'s or a test's.
    """
    shutil.rmtree(state_dir, ignore_errors=True)
    return msgspec.structs.replace(
        Settings.from_env(),
        state_dir=state_dir,
        stack_postgres_port=0,
        stack_redis_port=0,
        stack_kafka_port=0,
        stack_mongo_port=0,
    )


class SystemUnderTest:
    """Starts the servers (unless configured by URL) and the processes; stops what it started."""

    def __init__(self, settings: Settings, *, say: Callable[[str], None]) -> None:
        self.settings = msgspec.structs.replace(
            settings, log_level="warning", **_free_ports(), **UNTHROTTLED
        )
        self._say = say
        self._stack = LocalStack(self.settings, say=say)
        self._started_servers: list[str] = []
        self.server_pids: dict[str, int] = {}  # the local servers (not those configured by URL)
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self._env: dict[str, str] = {}

    def start_servers(self) -> None:
        states = self._stack.up()
        self._started_servers = [name for name, state in states.items() if state.started]
        self.server_pids = {n: s.pid for n, s in states.items() if s.pid is not None}
        self.settings = self.settings.with_urls(**settings_urls(states))
        migrate_all(self.settings)
        self._env = {**os.environ, **self.settings.to_env()}

    def start(self, *names: str) -> None:
        if not names and not self.processes:
            # ports picked just before use: the raw limits ran since __init__, and another
            # run on this machine may have taken one of those meanwhile
            self.settings = msgspec.structs.replace(self.settings, **_free_ports())
            self._env = {**os.environ, **self.settings.to_env()}
        root = project_dir(self.settings.project_dir)
        for spec in PROCESSES:
            if names and spec.name not in names:
                continue
            self.processes[spec.name] = subprocess.Popen(
                [sys.executable, str(root / spec.script)],
                cwd=root,
                env=self._env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            if spec.port_setting:
                wait_http(f"{self.url(spec)}/health/live", timeout=60)
                if self.processes[spec.name].poll() is not None:  # another one answered
                    raise RuntimeError(f"{spec.name} exited on start (its port was taken?)")

    def url(self, spec: ProcessSpec | str) -> str:
        if isinstance(spec, str):
            spec = next(s for s in PROCESSES if s.name == spec)
        if spec.port_setting is None:
            raise ValueError(f"{spec.name} serves no HTTP")
        return f"http://{self.settings.host}:{getattr(self.settings, spec.port_setting)}"

    def stop(self, *names: str) -> None:
        for name, process in list(self.processes.items()):
            if names and name not in names:
                continue
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for name, process in list(self.processes.items()):
            if names and name not in names:
                continue
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            del self.processes[name]

    def close(self) -> None:
        self.stop()
        if self._started_servers:
            self._stack.down(self._started_servers)


def _free_ports() -> dict[str, int]:
    """A free port for every process's HTTP (and ops) port setting, no two the same."""
    chosen: dict[str, int] = {}
    for spec in PROCESSES:
        for setting in (spec.port_setting, spec.ops_port_setting):
            if setting:
                chosen[setting] = free_port(set(chosen.values()))
    return chosen
