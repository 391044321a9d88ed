"""Ports promised to servers come from below the ephemeral range, in the picker's lane."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from flightbook.stack.ports import _pickable, free_port, port_free


@pytest.fixture
def listening() -> Iterator[int]:
    """The port of a socket listening on loopback for the test."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield listener.getsockname()[1]


def test_a_promised_port_is_below_the_ports_outgoing_connections_are_given(
    listening: int,
) -> None:
    low, high = _pickable()

    ports = {free_port() for _ in range(50)}

    assert all(low <= port < high for port in ports)
    with socket.create_connection(("127.0.0.1", listening)) as connection:
        assert connection.getsockname()[1] >= high  # the kernel's ephemeral range


def test_lanes_never_share_a_port() -> None:
    first = {free_port(lane=0, lanes=2) for _ in range(50)}
    second = {free_port(lane=1, lanes=2) for _ in range(50)}

    assert max(first) < min(second)


def test_an_avoided_port_is_never_given() -> None:
    low, high = _pickable()
    lanes = (high - low) // 100  # lanes of about 100 ports: every one of them is tried
    width = (high - low) // lanes
    lane = next(n for n in range(lanes) if port_free(low + width * n + width - 1))
    start = low + width * lane
    promised = set(range(start, start + width - 1))  # all but the lane's last port

    assert free_port(promised, lane=lane, lanes=lanes) == start + width - 1


def test_a_port_something_listens_on_is_not_free(listening: int) -> None:
    assert not port_free(listening)
