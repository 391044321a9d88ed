"""Start, reuse and stop the local servers, as processes of our own (STACK.md).

State lives under ``<state_dir>/stack``: one data directory, one log and one
``<name>.json`` (pid, process start time, port, url) per server. A server whose
pid file names a live process of ours that answers is reused, never started twice;
``down`` stops exactly the processes named by those files, by pid.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import psutil

from flightbook.config.keyfiles import replace_atomically
from flightbook.config.processes import PROCESSES
from flightbook.stack.ports import free_port, port_free
from flightbook.stack.servers import KIND_BY_NAME, KINDS, ServerKind

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from pathlib import Path

    from flightbook.config.settings import Settings

__all__ = (
    "LocalStack",
    "ServerState",
    "StackError",
    "postgres_url",
    "settings_urls",
)

_READY_TIMEOUT = 60.0

# servers started by this process, kept so that they are reaped (and not warned about) here
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


class StackError(RuntimeError):
    """A local server could not be started or stopped."""


@dataclass(frozen=True)
class ServerState:
    """What the stack knows of one server: where it is, and whether it is ours."""

    name: str
    url: str
    pid: int | None  # None: configured by URL, not started by us
    started: bool = False  # True when this call started it (False: reused or external)

    @property
    def external(self) -> bool:
        return self.pid is None


def settings_urls(states: Mapping[str, ServerState | None]) -> dict[str, str]:
    """The URL settings the servers fill in (a local PostgreSQL also the gateway's database)."""
    urls: dict[str, str] = {}
    for state in states.values():
        if state is None:
            continue
        kind = KIND_BY_NAME[state.name]
        urls.update({kind.setting: state.url} if state.external else kind.settings_urls(state.url))
    return urls


class LocalStack:
    """The servers a flightbook needs, started locally for each URL not configured.

    Args:
        settings: the process settings; ``*_url`` set means "use that server".
        say: where progress lines go (``print`` for the CLI, a no-op in tests).
    """

    def __init__(self, settings: Settings, *, say: Callable[[str], None] | None = None) -> None:
        self._settings = settings
        self._root = settings.state_path / "stack"
        self._say = say or (lambda _line: None)
        self._promised: set[int] = set()  # ports picked for servers that may not listen yet

    # -- public verbs -----------------------------------------------------------------------

    def up(self) -> dict[str, ServerState]:
        """Start (or reuse) every server whose URL is not configured; wait until each answers."""
        self._root.mkdir(parents=True, exist_ok=True)
        states: dict[str, ServerState] = {}
        pending: list[tuple[ServerKind, ServerState]] = []
        for kind in KINDS:
            configured = getattr(self._settings, kind.setting)
            if configured:
                states[kind.name] = ServerState(kind.name, configured, None)
                continue
            state = self._running(kind) or self._start(kind)
            states[kind.name] = state
            if state.started:
                pending.append((kind, state))
        for kind, state in pending:  # started in parallel above; now wait for each
            self._wait_until_answers(kind, state)
            kind.after_start(state.url)
            self._say(f"started {kind.name:<8} {state.url}  (pid {state.pid})")
        for state in states.values():
            if not state.started and not state.external:
                KIND_BY_NAME[state.name].after_start(state.url)  # started by an older version
        for state in states.values():
            if not state.started:
                origin = "configured" if state.external else f"running, pid {state.pid}"
                self._say(f"using   {state.name:<8} {state.url}  ({origin})")
        return states

    def down(self, names: list[str] | None = None) -> list[str]:
        """Stop the servers this stack started (all, or those named); return what was stopped.

        Each is asked to stop at once, then each is waited for: they shut down side by side.
        """
        asked: list[tuple[ServerKind, dict[str, object], psutil.Process]] = []
        for kind in KINDS:
            if names is not None and kind.name not in names:
                continue
            record = self._read_record(kind)
            if record is None:
                continue
            process = self._live_process(record)
            if process is None:
                self._record_path(kind).unlink(missing_ok=True)
                continue
            with contextlib.suppress(psutil.NoSuchProcess):
                process.send_signal(kind.stop_signal)
            asked.append((kind, record, process))
        for kind, record, process in asked:
            _terminate(process, None)
            self._say(f"stopped {kind.name:<8} (pid {record['pid']})")
            self._record_path(kind).unlink(missing_ok=True)
        return [kind.name for kind, _record, _process in asked]

    def status(self) -> dict[str, ServerState | None]:
        """Each server's state, or None when it is neither configured nor running."""
        result: dict[str, ServerState | None] = {}
        for kind in KINDS:
            configured = getattr(self._settings, kind.setting)
            if configured:
                result[kind.name] = ServerState(kind.name, configured, None)
            else:
                result[kind.name] = self._running(kind)
        return result

    def dead(self, names: list[str]) -> list[str]:
        """Those of ``names`` (servers this stack started) whose process is gone."""
        gone = []
        for kind in KINDS:
            record = self._read_record(kind) if kind.name in names else None
            if record is not None and self._live_process(record) is None:
                child = _CHILDREN.pop(int(str(record["pid"])), None)
                if child is not None:
                    child.poll()  # reap it: a dead child of ours is a zombie until then
                gone.append(kind.name)
        return gone

    def restart(self, name: str) -> ServerState:
        """Start a dead server again, on its data directory and its port; wait until it answers.

        Raises:
            StackError: its port is taken now (by another program), or it did not answer.
        """
        kind = KIND_BY_NAME[name]
        record = self._read_record(kind)
        if record is None or not isinstance(record.get("port"), int):
            raise StackError(f"{name} was not started by this stack")
        port = int(str(record["port"]))
        if not port_free(port):
            raise StackError(f"{name}: port {port} is taken by another program")
        state = self._start(kind, port=port)
        self._wait_until_answers(kind, state)
        kind.after_start(state.url)
        return state

    def kill(self, name: str) -> None:
        """SIGKILL one server we started (fault tests); its record stays for a restart."""
        kind = next(k for k in KINDS if k.name == name)
        record = self._read_record(kind)
        process = self._live_process(record) if record else None
        if process is None:
            raise StackError(f"{name} is not running")
        process.kill()
        process.wait(10)

    # -- internals --------------------------------------------------------------------------

    def _record_path(self, kind: ServerKind) -> Path:
        return self._root / f"{kind.name}.json"

    def _read_record(self, kind: ServerKind) -> dict[str, object] | None:
        try:
            data: dict[str, object] = json.loads(self._record_path(kind).read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None
        return data

    def _live_process(self, record: dict[str, object]) -> psutil.Process | None:
        pid, created = record.get("pid"), record.get("create_time")
        if not isinstance(pid, int) or not isinstance(created, float):
            return None
        try:
            process = psutil.Process(pid)
            # a recycled pid belongs to another process: compare start times
            if abs(process.create_time() - created) > 0.01 or process.status() == "zombie":
                return None
        except psutil.Error:
            return None
        return process

    def _running(self, kind: ServerKind) -> ServerState | None:
        record = self._read_record(kind)
        if record is None or self._live_process(record) is None:
            return None
        url, pid = str(record["url"]), int(str(record["pid"]))
        if not kind.answers(url):
            # alive but not answering yet (just started by someone else): wait for it
            self._wait_until_answers(kind, ServerState(kind.name, url, pid))
        return ServerState(kind.name, url, pid)

    def _port_for(self, kind: ServerKind) -> int:
        configured: int = getattr(self._settings, f"stack_{kind.name}_port")
        record = self._read_record(kind)
        if configured == 0 and record is not None and isinstance(record.get("port"), int):
            previous = int(str(record["port"]))
            if port_free(previous) and previous not in self._process_ports():
                return previous  # keep the URL stable across restarts
        if configured == 0:
            port = free_port(self._process_ports() | self._promised)
            self._promised.add(port)
            return port
        if not port_free(configured):
            raise StackError(
                f"{kind.name}: port {configured} is taken by another program; "
                f"set FLIGHTBOOK_STACK_{kind.name.upper()}_PORT "
                f"or FLIGHTBOOK_{kind.setting.upper()}"
            )
        return configured

    def _process_ports(self) -> set[int]:
        """The ports flightbook's own processes will listen on (not started yet, so free now)."""
        ports = set()
        for spec in PROCESSES:
            for setting in (spec.port_setting, spec.ops_port_setting):
                if setting is not None:
                    ports.add(int(getattr(self._settings, setting)))
        return ports

    def _start(self, kind: ServerKind, *, port: int | None = None) -> ServerState:
        data_dir = self._root / kind.name
        record = self._read_record(kind)
        leader = record.get("pid") if record is not None else None
        if isinstance(leader, int) and _end_session_of(leader):
            kind.clear_stale(data_dir)  # what a killed server left behind
        try:
            kind.prepare(data_dir)
        except subprocess.CalledProcessError as exc:
            detail = (exc.stderr or b"").decode(errors="replace").strip().splitlines()
            raise StackError(f"{kind.name}: preparing {data_dir} failed: {detail[-1:]}") from exc
        if port is None:
            port = self._port_for(kind)
        log = (self._root / f"{kind.name}.log").open("ab")
        process = subprocess.Popen(
            kind.command(data_dir, port),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C in the terminal is ours to forward, not theirs
            user=kind.run_as(),
            cwd=data_dir,
        )
        log.close()
        _CHILDREN[process.pid] = process
        url = kind.url(port)
        record = {
            "pid": process.pid,
            "create_time": psutil.Process(process.pid).create_time(),
            "port": port,
            "url": url,
        }
        # a reader (a status call, a fault test) sees the old record or the new, never half
        replace_atomically(self._record_path(kind), json.dumps(record).encode(), mode=0o644)
        return ServerState(kind.name, url, process.pid, started=True)

    def _wait_until_answers(self, kind: ServerKind, state: ServerState) -> None:
        deadline = time.monotonic() + _READY_TIMEOUT
        while time.monotonic() < deadline:
            if kind.answers(state.url):
                return
            if state.pid is not None and not psutil.pid_exists(state.pid):
                break
            time.sleep(0.1)
        log = self._root / f"{kind.name}.log"
        tail = log.read_text(errors="replace").strip().splitlines()[-3:] if log.exists() else []
        raise StackError(
            f"{kind.name} did not answer at {state.url}; log {log}: {' | '.join(tail)}"
        )


def postgres_url(settings: Settings, *, set_one_of: str = "FLIGHTBOOK_POSTGRES_URL") -> str:
    """The configured PostgreSQL URL, else that of the local stack's PostgreSQL if it runs.

    Raises:
        StackError: there is neither (the message names ``set_one_of``, what to set).
    """
    if settings.postgres_url:
        return settings.postgres_url
    state = LocalStack(settings).status().get("postgres")
    if state is None:
        raise StackError(
            f"no PostgreSQL: set {set_one_of}, or start the local stack with 'flightbook stack up'"
        )
    return state.url


def _terminate(process: psutil.Process, sig: int | None, timeout: float = 15.0) -> None:
    """Send ``sig`` (None: it was sent already), wait; kill it if it does not stop in time."""
    try:
        if sig is not None:
            process.send_signal(sig)
        process.wait(timeout)
    except psutil.TimeoutExpired:
        process.kill()
        process.wait(5)
    except psutil.NoSuchProcess:
        pass
    # reap if it is our child (avoids a zombie in long-lived parents such as tests)
    child = _CHILDREN.pop(process.pid, None)
    if child is not None:
        child.wait(5)


def _end_session_of(leader: int, *, grace: float = 10.0) -> bool:
    """Whether a server's leader is dead; if so, its session's processes are gone too.

    Each server runs in a session of its own (``start_new_session``). When its leader was
    killed, its children (PostgreSQL's backends) exit on their own a moment later; until
    they have, they hold the data directory and a new server refuses to start there. Those
    still there after ``grace`` seconds are killed: they belong to a server that is dead.
    """
    if not _dead(leader):
        return False  # a live (or recycled) pid: not ours to touch
    deadline = time.monotonic() + grace
    while True:
        left = [p for p in psutil.process_iter() if p.pid != leader and _session(p) == leader]
        if not left:
            return True
        if time.monotonic() >= deadline:
            for process in left:
                with contextlib.suppress(psutil.Error):
                    process.kill()
            psutil.wait_procs(left, timeout=5)
            return True
        time.sleep(0.1)


def _dead(pid: int) -> bool:
    try:
        return bool(psutil.Process(pid).status() == psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return True


def _session(process: psutil.Process) -> int | None:
    try:
        return os.getsid(process.pid)
    except OSError:
        return None
