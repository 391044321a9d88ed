"""CPU time per process group, from the kernel's own accounting (psutil), for CPU per booking.

A group is a process and every descendant: PostgreSQL's postmaster with all its backends,
say. Each process counts its own CPU and that of its children that ended and were waited
for (``children_user``/``children_system``), so a backend that exits between two snapshots
is still counted. The load generator is this process alone (its children are the servers
and processes it started, measured apart).
"""

from __future__ import annotations

import contextlib
import urllib.parse
from typing import TYPE_CHECKING

import psutil

if TYPE_CHECKING:
    from collections.abc import Mapping

    from flightbook.config.settings import Settings

__all__ = ("LOADGEN", "CpuMeter", "listening_pid", "server_pids")

LOADGEN = "loadgen"
"""The name of this process (the load generator and the benchmark's probes) in a meter."""

_SERVER_URLS = {
    "postgres": "postgres_url",
    "redis": "redis_url",
    "kafka": "kafka_bootstrap",
    "mongo": "mongo_url",
}
_LOOPBACK = {"127.0.0.1", "::1", "localhost"}


def _own_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system + times.children_user + times.children_system)


def group_seconds(pid: int) -> float | None:
    """CPU seconds of ``pid`` and its descendants so far; None if ``pid`` is gone."""
    try:
        leader = psutil.Process(pid)
        total = _own_seconds(leader)
        descendants = leader.children(recursive=True)
    except psutil.Error:
        return None
    for child in descendants:
        with contextlib.suppress(psutil.Error):  # it ended meanwhile: its parent counts it
            total += _own_seconds(child)
    return total


def _self_seconds() -> float:
    times = psutil.Process().cpu_times()
    return float(times.user + times.system)


class CpuMeter:
    """CPU seconds of named process groups, plus :data:`LOADGEN` (this process)."""

    def __init__(self, pids: Mapping[str, int]) -> None:
        self._pids = dict(pids)

    @property
    def names(self) -> list[str]:
        return [*self._pids, LOADGEN]

    def snapshot(self) -> dict[str, float]:
        """Each group's CPU seconds so far (a group that is gone is left out)."""
        found = {}
        for name, pid in self._pids.items():
            seconds = group_seconds(pid)
            if seconds is not None:
                found[name] = seconds
        found[LOADGEN] = _self_seconds()
        return found


def listening_pid(address: str) -> int | None:
    """The pid of the local process listening on ``address``'s port; None if not local.

    ``address`` is a URL or a ``host:port``. Servers configured by URL (not started by the
    benchmark) are found this way when they run on this machine's loopback.
    """
    parsed = urllib.parse.urlsplit(address if "//" in address else f"//{address}")
    try:
        host, port = parsed.hostname, parsed.port
    except ValueError:
        return None
    if host not in _LOOPBACK or port is None:
        return None
    try:
        connections = psutil.net_connections(kind="tcp")
    except psutil.Error:
        return None
    for connection in connections:
        if (
            connection.status == psutil.CONN_LISTEN
            and connection.laddr
            and connection.laddr.port == port
            and connection.pid is not None
        ):
            return int(connection.pid)
    return None


def server_pids(settings: Settings, known: Mapping[str, int]) -> dict[str, int]:
    """The pid of each stand-in server: as the stack knows it, else by its listening port."""
    pids = {}
    for name, setting in _SERVER_URLS.items():
        if name in known:
            pids[name] = known[name]
            continue
        url = getattr(settings, setting)
        pid = listening_pid(str(url)) if url else None
        if pid is not None:
            pids[name] = pid
    return pids
