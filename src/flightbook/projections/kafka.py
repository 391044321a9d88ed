"""The projection worker's side of Kafka: consumer settings and reading message headers."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from confluent_kafka import Message

__all__ = ("consumer_config", "header")


def consumer_config(
    bootstrap: str, *, group: str, session_timeout_ms: int, client_id: str
) -> dict[str, str | int | bool]:
    """A consumer that commits only what was applied, from the earliest offset of a new group.

    The heartbeat must be well inside the session timeout (librdkafka's default heartbeat
    of 3 s is longer than a 2 s test session and makes the group rebalance forever).
    Topics are never created by the consumer: a topic that vanished must look missing.
    """
    return {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "client.id": client_id,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": session_timeout_ms,
        "heartbeat.interval.ms": max(100, session_timeout_ms // 3),
        "allow.auto.create.topics": False,
        "topic.metadata.refresh.interval.ms": 5000,
        "socket.timeout.ms": 10_000,
        # Lag: the broker answers a fetch at once when data waits, else after this long;
        # librdkafka's 500 ms (the stand-in broker answers after about half of it) held an
        # idle worker's next event that long. Busy, fetches still fill (fetch.min.bytes).
        "fetch.wait.max.ms": 10,
    }


def header(message: Message, name: str) -> str | None:
    headers = message.headers() or []
    pairs = headers.items() if isinstance(headers, dict) else headers
    for key, value in pairs:
        if key == name and isinstance(value, bytes):
            return value.decode("utf-8", "replace")
    return None
