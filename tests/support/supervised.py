"""``flightbook up`` run as a child process with its own state folder and ports, by its pid.

:class:`SupervisedSystem` is the whole system as an operator runs it: the supervisor, the
local servers it starts and every process; :class:`Bookers` are customers booking through
the command API (and reading through the query API) without pause, counting what they see.
"""

from __future__ import annotations

import collections
import contextlib
import json
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import httpx
import psutil

from flightbook.config.processes import PROCESSES
from flightbook.config.settings import Settings
from flightbook.http.tokens import mint_token
from flightbook.stack.servers import KIND_BY_NAME
from tests.support.api import booking_body, fare_body, flight_body
from tests.support.processes import ROOT, free_port, without_flightbook_settings
from tests.support.system import eventually

__all__ = ("Bookers", "SupervisedSystem", "up_env")

FLIGHTBOOK = [sys.executable, "-m", "flightbook.cli"]
SERVERS = ("postgres", "redis", "kafka", "mongo")


def up_env(state_dir: Path, **extra: str) -> dict[str, str]:
    """The environment of a ``flightbook`` run of its own: state folder, free server ports."""
    env = without_flightbook_settings()
    env.update(
        {
            "FLIGHTBOOK_STATE_DIR": str(state_dir),
            "FLIGHTBOOK_PROJECT_DIR": str(ROOT),
            **{f"FLIGHTBOOK_STACK_{name.upper()}_PORT": "0" for name in SERVERS},
            "FLIGHTBOOK_LOG_FORMAT": "json",
            **extra,
        }
    )
    return env


def process_ports() -> dict[str, str]:
    """A free port for every process's HTTP (and ops) port setting."""
    ports: dict[str, str] = {}
    for spec in PROCESSES:
        for setting in (spec.port_setting, spec.ops_port_setting):
            if setting is not None:
                ports[f"FLIGHTBOOK_{setting.upper()}"] = str(free_port())
    return ports


def _get_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - loopback
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


class SupervisedSystem:
    """``flightbook up`` in a child process; its output is collected line by line.

    Args:
        state_dir: Its own state folder (the local servers' data, pid files, keys).
        extra: More ``FLIGHTBOOK_*`` variables (e.g. a configured server's URL).
    """

    def __init__(self, state_dir: Path, **extra: str) -> None:
        self.state_dir = state_dir
        # every client of a test comes from 127.0.0.1: the per-address limit is not under test
        limits = {
            "FLIGHTBOOK_RATE_LIMIT_ADDRESS": "1000/second;100000/minute",
            "FLIGHTBOOK_RATE_LIMIT_READS": "1000/second;100000/minute",
        }
        self.env = up_env(state_dir, **process_ports(), **limits, **extra)
        self.settings = Settings.from_env(self.env)
        self.lines: list[str] = []
        self._up: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None
        self._running = threading.Event()

    # -- running ----------------------------------------------------------------------------

    def start(self, timeout: float = 180.0) -> SupervisedSystem:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._up = subprocess.Popen(
            [*FLIGHTBOOK, "up"],
            env=self.env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        if not self._running.wait(timeout):
            raise AssertionError("flightbook up did not start:\n" + self.output())
        return self

    def _read(self) -> None:
        assert self._up is not None
        assert self._up.stdout is not None
        with (self.state_dir / "up.log").open("a") as kept:  # for whoever reads a failure
            for line in self._up.stdout:
                kept.write(line)
                kept.flush()
                self.lines.append(line.rstrip("\n"))
                if "flightbook is running" in line:
                    self._running.set()

    @property
    def pid(self) -> int:
        assert self._up is not None
        return self._up.pid

    def kill(self) -> None:
        """SIGKILL the supervisor itself (its processes get SIGTERM from the kernel)."""
        assert self._up is not None
        self._up.send_signal(signal.SIGKILL)
        self._up.wait(10)

    def output(self) -> str:
        return "\n".join(self.lines)

    def mark(self) -> int:
        """Where the output is now (for :meth:`said` ``since``)."""
        return len(self.lines)

    def said(self, text: str, *, since: int = 0) -> list[str]:
        """The lines of output that contain ``text`` (the supervisor and its processes write
        to one pipe, so a line of the supervisor may share a line with a process's log)."""
        return [line for line in self.lines[since:] if text in line]

    def stop(self) -> int | None:
        """SIGINT, as Ctrl-C would; the exit status (killed after a minute)."""
        if self._up is None:
            return None
        code: int | None
        if self._up.poll() is None:
            self._up.send_signal(signal.SIGINT)
        try:
            code = self._up.wait(90)
        except subprocess.TimeoutExpired:
            self._up.kill()
            code = self._up.wait()
        if self._reader is not None:
            self._reader.join(10)
        if self._up.stdout is not None:
            self._up.stdout.close()
        return code

    # -- what runs --------------------------------------------------------------------------

    def _server_record(self, name: str) -> dict[str, Any]:
        record: dict[str, Any] = json.loads((self.state_dir / "stack" / f"{name}.json").read_text())
        return record

    def server_pid(self, name: str) -> int:
        return int(self._server_record(name)["pid"])

    def server_url(self, name: str) -> str:
        return str(self._server_record(name)["url"])

    def gateway_url(self) -> str:
        """The simulated payment provider's database: the configured one, else the database
        beside flightbook's on the local server."""
        configured = self.settings.gateway_database()
        if configured is not None:
            return configured
        return KIND_BY_NAME["postgres"].settings_urls(self.server_url("postgres"))[
            "gateway_postgres_url"
        ]

    def server_answers(self, name: str) -> bool:
        return KIND_BY_NAME[name].answers(self.server_url(name))

    def process_pids(self) -> dict[str, int]:
        """The pid of each flightbook process the supervisor runs, by process name."""
        assert self._up is not None
        scripts = {str(ROOT / spec.script): spec.name for spec in PROCESSES}
        pids: dict[str, int] = {}
        for child in psutil.Process(self._up.pid).children():
            with contextlib.suppress(psutil.Error):
                for arg in child.cmdline()[1:2]:
                    if arg in scripts:
                        pids[scripts[arg]] = child.pid
        return pids

    def url(self, setting: str) -> str:
        return f"http://127.0.0.1:{getattr(self.settings, setting)}"

    @property
    def commands(self) -> str:
        return self.url("command_port")

    @property
    def queries(self) -> str:
        return self.url("query_port")

    def apis_ready(self) -> bool:
        return all(_get_ok(f"{base}/health/ready") for base in (self.commands, self.queries))

    def all_ready(self) -> dict[str, bool]:
        return {
            spec.name: _get_ok(f"{self.url(spec.port_setting)}/health/ready")
            for spec in PROCESSES
            if spec.port_setting is not None
        }

    def wait_all_ready(self, within: float = 60.0) -> None:
        """Until every process answers ``/health/ready``; a failure shows the system's output."""
        try:
            eventually(
                self.all_ready, lambda ready: all(ready.values()), within=within, what="all ready"
            )
        except AssertionError as exc:
            tail = "\n".join(self.lines[-80:])
            raise AssertionError(
                f"{exc}\n--- the last lines of flightbook up ---\n{tail}"
            ) from None

    def token(self, subject: str, role: str) -> str:
        return mint_token(self.settings, subject=subject, roles=[role])

    def schedule_flight(self, seats: int) -> str:
        answer = httpx.post(
            f"{self.commands}/flights",
            json=flight_body(fares=[fare_body(seats=seats)]),
            headers={"Authorization": f"Bearer {self.token('olga', 'ops')}"},
            timeout=30,
        )
        assert answer.status_code == 201, answer.text
        flight_id: str = answer.json()["flight_id"]
        return flight_id

    def cli(self, *args: str, timeout: float = 300.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*FLIGHTBOOK, *args],
            env=self.env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


class Bookers:
    """Customers booking without pause on some threads, and one reader of the query API.

    A booking answered 503 (or not answered in time) is sent again with the same
    idempotency key after its ``Retry-After``, as a well-behaved client does, until it is
    answered 202 or 4xx. Every answer is counted by status (``"timeout"`` for none).

    Args:
        system: The running system.
        flight_id: Where they book.
        clients: How many book at once.
        timeout: How long a client waits for an answer (a longer wait is a "hang").
    """

    def __init__(
        self, system: SupervisedSystem, flight_id: str, *, clients: int = 3, timeout: float = 15.0
    ) -> None:
        self._system = system
        self.flight_id = flight_id
        self._clients = clients
        self._timeout = timeout
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self.commands: collections.Counter[str] = collections.Counter()
        self.queries: collections.Counter[str] = collections.Counter()
        self.accepted: dict[str, str] = {}  # booking id -> its customer's token
        self.keys: dict[str, str] = {}  # idempotency key -> booking id
        self.mismatched: list[tuple[str, str, str]] = []  # a key answered with two bookings
        self.answered_after_retry = 0  # bookings accepted only when sent again (same key)

    def __enter__(self) -> Bookers:
        self._threads = [
            threading.Thread(target=self._book, args=(n,), daemon=True)
            for n in range(self._clients)
        ]
        self._threads.append(threading.Thread(target=self._read, daemon=True))
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(self._timeout * 4)

    def snapshot(self) -> tuple[dict[str, int], dict[str, int]]:
        with self._lock:
            return dict(self.commands), dict(self.queries)

    def _count(self, counter: collections.Counter[str], answer: str) -> None:
        with self._lock:
            counter[answer] += 1

    def _book(self, client: int) -> None:
        with httpx.Client(base_url=self._system.commands, timeout=self._timeout) as http:
            n = 0
            while not self._stop.is_set():
                n += 1
                customer = f"outage-{client}-{n}-{uuid.uuid4().hex[:6]}"
                token = self._system.token(customer, "customer")
                key = str(uuid.uuid4())
                self._one_booking(http, token, key)

    def _one_booking(self, http: httpx.Client, token: str, key: str) -> None:
        body = booking_body(self.flight_id)
        headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": key}
        deadline = time.monotonic() + 120  # a booking under way is sent until it is answered
        tries = 0
        while time.monotonic() < deadline:
            tries += 1
            try:
                answer = http.post("/bookings", json=body, headers=headers)
            except httpx.TimeoutException:
                self._count(self.commands, "timeout")
                continue
            except httpx.TransportError as exc:
                self._count(self.commands, type(exc).__name__)
                time.sleep(0.2)
                continue
            self._count(self.commands, str(answer.status_code))
            if answer.status_code == 503:
                time.sleep(min(1.0, float(answer.headers.get("Retry-After", "1"))))
                continue
            if answer.status_code == 202:
                booking_id = answer.json()["booking_id"]
                with self._lock:
                    if key in self.keys and self.keys[key] != booking_id:
                        self.mismatched.append((key, self.keys[key], booking_id))
                    self.keys[key] = booking_id
                    self.accepted[booking_id] = token
                    if tries > 1:
                        self.answered_after_retry += 1
            return

    def _read(self) -> None:
        with httpx.Client(base_url=self._system.queries, timeout=self._timeout) as http:
            while not self._stop.is_set():
                with self._lock:  # one accepted a moment ago: projected, or about to be
                    some = list(self.accepted.items())[-10:-9]
                path = f"/bookings/{some[0][0]}" if some else f"/flights/{self.flight_id}"
                token = some[0][1] if some else self._system.token("reader", "customer")
                try:
                    answer = http.get(path, headers={"Authorization": f"Bearer {token}"})
                except httpx.TimeoutException:
                    self._count(self.queries, "timeout")
                    continue
                except httpx.TransportError as exc:
                    self._count(self.queries, type(exc).__name__)
                    time.sleep(0.2)
                    continue
                self._count(self.queries, str(answer.status_code))
                time.sleep(0.1)
