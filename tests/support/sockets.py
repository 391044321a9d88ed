"""A client of ``WebSocket /ws/bookings`` as a script would hold one (websockets' sync client)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect
from websockets.typing import Subprotocol

__all__ = ("closed_with", "messages_until", "socket")

PATH = "/ws/bookings"


@contextmanager
def socket(
    base_url: str,
    *,
    headers: Mapping[str, str] | None = None,
    subprotocols: list[str] | None = None,
    since: Mapping[str, int] | None = None,
    query: str = "",
) -> Iterator[ClientConnection]:
    """A connection to ``/ws/bookings`` of the API at ``base_url`` (``http://host:port``).

    ``since`` becomes its ``since=<booking>:<seq>`` parameters; ``query`` is sent as it is.
    """
    query = query or "&".join(f"since={booking}:{seq}" for booking, seq in (since or {}).items())
    url = base_url.replace("http://", "ws://", 1) + PATH + (f"?{query}" if query else "")
    with connect(
        url,
        additional_headers=dict(headers or {}),
        subprotocols=[Subprotocol(p) for p in subprotocols] if subprotocols else None,
        open_timeout=10,
        proxy=None,  # loopback only, whatever the environment says
    ) as connection:
        yield connection


def messages_until(
    connection: ClientConnection,
    done: Callable[[list[dict[str, Any]]], bool],
    *,
    within: float = 10.0,
) -> list[dict[str, Any]]:
    """The messages received, in order, until ``done(all so far)`` (or AssertionError)."""
    got: list[dict[str, Any]] = []
    deadline = time.monotonic() + within
    while not done(got):
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"the socket did not deliver what was awaited; got {got}")
        try:
            raw = connection.recv(timeout=left)
        except TimeoutError:
            continue
        got.append(json.loads(raw))
    return got


def closed_with(connection: ClientConnection, *, within: float = 10.0) -> tuple[int, str]:
    """``(code, reason)`` of the close frame the server sends first, whatever came before."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            connection.recv(timeout=deadline - time.monotonic())
        except ConnectionClosed as closed:
            if closed.rcvd is None:
                raise AssertionError("closed without a close frame") from None
            return closed.rcvd.code, closed.rcvd.reason
        except TimeoutError:
            break
    raise AssertionError("the server did not close the socket")
