"""Ports to promise to a server before it starts: free now, and kept free by the kernel.

A port found with ``bind(("127.0.0.1", 0))`` comes from the kernel's ephemeral range, the
range every outgoing connection's local port is drawn from too. Between the moment it is
picked and the moment its server binds it, a connection (to PostgreSQL, to the broker)
may be given that very port, and the server then fails with "Address already in use".
So :func:`free_port` picks below the ephemeral range, where no connection is ever given a
port, and checks that nothing listens there. ``lane`` of ``lanes`` splits that range for
pickers that run side by side (the test suite's workers), so that two of them never
promise one port.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Collection

__all__ = ("free_port", "port_free")

_LOWEST = 10_000  # below are the well-known and registered ports other programs expect
_EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_EPHEMERAL_FALLBACK = 32_768  # Linux's default start; macOS and Windows start at 49152


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether a server could listen on ``port`` now.

    With ``SO_REUSEADDR``, as the servers themselves bind: a port whose last connections
    sit in TIME-WAIT (a server killed a moment ago) is free; one another program listens
    on is not.
    """
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(avoid: Collection[int] = (), *, lane: int = 0, lanes: int = 1) -> int:
    """A port nothing listens on, below the ephemeral range, none of ``avoid``.

    ``avoid``: ports promised already (to processes not started yet). ``lane``: which of
    ``lanes`` equal slices of the range to pick from.
    """
    low, high = _pickable()
    width = (high - low) // max(1, lanes)
    start = low + width * (lane % max(1, lanes))
    candidates = random.sample(range(start, start + width), k=min(width, 500))
    for port in candidates:
        if port not in avoid and port_free(port):
            return port
    raise OSError(f"no free port found in {start}-{start + width - 1}")


def _pickable() -> tuple[int, int]:
    """The ports from ``_LOWEST`` up to the start of the ephemeral range."""
    try:
        ephemeral = int(_EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        ephemeral = _EPHEMERAL_FALLBACK
    if ephemeral - _LOWEST < 1_000:  # an unusual set-up: the range above it, then
        return 1_024, 65_536
    return _LOWEST, ephemeral
