"""``flightbook up``: the local stack, migrations, and every process, until Ctrl-C.

One supervisor owns the children: it starts them in their own sessions, forwards
SIGINT/SIGTERM as SIGTERM, waits for them to finish their unit of work, and then
stops the servers it started itself. A child that dies is restarted with a line
saying so (never silently); one that keeps dying while its servers are up stops the
whole system. A local server that dies is started again on its data directory and
port, with a line saying so; one that keeps dying stops the system too (ADR 0018).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from typing import TYPE_CHECKING

from flightbook.config.paths import project_dir
from flightbook.config.processes import PROCESSES
from flightbook.stack.launcher import (
    LocalStack,
    ServerState,
    StackError,
    settings_urls,
)
from flightbook.stack.migrate import migrate_all
from flightbook.stack.ports import port_free
from flightbook.stack.servers import KIND_BY_NAME

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path
    from types import FrameType

    from flightbook.config.processes import ProcessSpec
    from flightbook.config.settings import Settings

__all__ = ("run_system",)

_MAX_RESTARTS = 5
_RESTART_WINDOW = 60.0
_STOP_TIMEOUT = 20.0
_SERVER_GRACE = 15.0
"""A process that exits this long after a server came back still failed for the server."""
_AWAY_DELAY = 1.0
"""How long a process that exited while a server was away waits before it is started again."""


@dataclass
class _Child:
    spec: ProcessSpec
    process: subprocess.Popen[bytes]
    due: float | None = None  # exited while a server was away: started again at this time


class _Budget:
    """At most ``_MAX_RESTARTS`` restarts of one thing within ``_RESTART_WINDOW`` seconds."""

    def __init__(self) -> None:
        self._restarts: dict[str, list[float]] = {}

    def spend(self, name: str, now: float) -> int | None:
        """Count one restart of ``name``: how many so far in the window, None when spent."""
        recent = [t for t in self._restarts.get(name, []) if now - t < _RESTART_WINDOW]
        if len(recent) >= _MAX_RESTARTS:
            return None
        recent.append(now)
        self._restarts[name] = recent
        return len(recent)


class _Servers:
    """The servers the processes use: the local ones are started again when they die."""

    def __init__(
        self, stack: LocalStack, states: dict[str, ServerState], say: Callable[[str], None]
    ) -> None:
        self._stack = stack
        self._states = states
        self._local = [name for name, state in states.items() if not state.external]
        self._say = say
        self._budget = _Budget()
        self._trouble_at = -_SERVER_GRACE  # when a server was last seen away (monotonic)
        self._retry_at: dict[str, float] = {}

    def check(self, now: float) -> bool:
        """Start every dead local server again; False when one keeps dying (stop the system)."""
        for name in self._stack.dead(self._local):
            self._trouble_at = now
            if now < self._retry_at.get(name, 0.0):
                continue
            spent = self._budget.spend(name, now)
            if spent is None:
                self._say(
                    f"{name} died {_MAX_RESTARTS} times within {_RESTART_WINDOW:.0f}s: "
                    "stopping the system"
                )
                return False
            self._say(
                f"{name} died: starting it again on its data and port "
                f"({spent} of {_MAX_RESTARTS} allowed per minute)"
            )
            try:
                state = self._stack.restart(name)
            except StackError as exc:
                self._retry_at[name] = now + 2.0**spent
                self._say(f"{name} could not be started again: {exc}")
                continue
            self._say(f"started {name} again  {state.url}  (pid {state.pid})")
            self._trouble_at = time.monotonic()
        return True

    def all_up(self, now: float) -> bool:
        """Whether every server answers and none was away within the grace period."""
        if now - self._trouble_at < _SERVER_GRACE:
            return False
        for name, state in self._states.items():
            if not KIND_BY_NAME[name].answers(state.url):
                self._trouble_at = now
                return False
        return True


class _StopRequestedError(Exception):
    pass


def run_system(
    settings: Settings,
    *,
    say: Callable[[str], None],
    processes: tuple[ProcessSpec, ...] = PROCESSES,
) -> int:
    """Run the whole system in the foreground; return the exit code."""
    for spec in processes:
        for setting in (spec.port_setting, spec.ops_port_setting):
            if setting is None:
                continue
            port = getattr(settings, setting)
            if port and not port_free(port, settings.host):
                raise RuntimeError(
                    f"{spec.name}: {settings.host}:{port} is already in use; "
                    f"set FLIGHTBOOK_{setting.upper()}"
                )
    root = project_dir(settings.project_dir)
    stack = LocalStack(settings, say=say)
    states = stack.up()
    started_servers = [name for name, state in states.items() if state.started]
    children: list[_Child] = []
    stopping: list[int] = []

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stopping.append(signum)
        raise _StopRequestedError

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    code = 0
    try:
        full = settings.with_urls(**settings_urls(states))
        migrate_all(full, say=say)
        env = {**os.environ, **full.to_env()}
        for spec in processes:
            children.append(_Child(spec, _spawn(spec, root, env)))
        _announce(full, children, say)
        code = _watch(children, _Servers(stack, states, say), root, env, say)
    except _StopRequestedError:
        say(f"received {signal.Signals(stopping[0]).name}: stopping")
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the shutdown
        try:
            _stop_children(children, say)
            if started_servers:
                stack.down(started_servers)
        finally:
            signal.signal(signal.SIGINT, previous[signal.SIGINT])
    return code


def _spawn(spec: ProcessSpec, root: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, str(root / spec.script)],
        cwd=root,
        env=env,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        preexec_fn=_die_with_parent,  # noqa: PLW1509 - only calls prctl, no threads involved
    )


def _die_with_parent() -> None:
    """Linux: the child gets SIGTERM if the supervisor dies, even by SIGKILL (no orphans)."""
    if sys.platform != "linux":
        return
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def _announce(settings: Settings, children: list[_Child], say: Callable[[str], None]) -> None:
    late = []
    for child in children:
        if child.spec.port_setting is None:
            continue
        url = f"http://{settings.host}:{getattr(settings, child.spec.port_setting)}"
        if not _wait_http(url + "/health/live", child.process):
            late.append(child.spec.name)
            status = child.process.poll()
            say(
                f"{child.spec.name:<12} does not answer {url}/health/live yet"
                + ("" if status is None else f" (it exited with status {status})")
            )
        elif child.spec.api:
            say(f"{child.spec.name:<12} listening on {url}   (OpenAPI: {url}/schema/openapi.json)")
        else:
            say(f"{child.spec.name:<12} running; health and metrics on {url}")
    if late:
        say(f"flightbook is running without {', '.join(late)} so far; press Ctrl-C to stop")
    else:
        say("flightbook is running; press Ctrl-C to stop")


def _wait_http(url: str, process: subprocess.Popen[bytes], timeout: float = 30.0) -> bool:
    """Whether ``url`` answered within ``timeout`` (False at once when the process exited)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        try:
            with urllib.request.urlopen(url, timeout=1):  # noqa: S310 - our own loopback URL
                return True
        except OSError:
            time.sleep(0.1)
    return False


def _watch(
    children: list[_Child],
    servers: _Servers,
    root: Path,
    env: dict[str, str],
    say: Callable[[str], None],
) -> int:
    budget = _Budget()
    while True:
        time.sleep(0.2)
        if not servers.check(time.monotonic()):
            return 1
        for child in children:
            now = time.monotonic()
            if child.due is not None:
                if now >= child.due:
                    child.due = None
                    child.process = _spawn(child.spec, root, env)
                continue
            status = child.process.poll()
            if status is None:
                continue
            if not servers.all_up(now):
                say(
                    f"{child.spec.name} exited with status {status} while a server was away: "
                    "starting it again shortly (not counted against its restart budget)"
                )
                child.due = now + _AWAY_DELAY
                continue
            spent = budget.spend(child.spec.name, now)
            if spent is None:
                say(
                    f"{child.spec.name} exited with status {status} {_MAX_RESTARTS} times "
                    f"within {_RESTART_WINDOW:.0f}s: stopping the system"
                )
                return 1
            say(
                f"{child.spec.name} exited with status {status}: restarting it "
                f"({spent} of {_MAX_RESTARTS} allowed per minute)"
            )
            child.process = _spawn(child.spec, root, env)


def _stop_children(children: list[_Child], say: Callable[[str], None]) -> None:
    for child in children:
        if child.process.poll() is None:
            child.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + _STOP_TIMEOUT
    for child in children:
        try:
            child.process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            say(f"{child.spec.name} did not stop within {_STOP_TIMEOUT:.0f}s: killing it")
            child.process.kill()
            child.process.wait()
        say(f"stopped {child.spec.name}")
