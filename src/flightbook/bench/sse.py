"""Reading a ``text/event-stream`` the way a browser's EventSource does.

The benchmark's clients wait for a booking's outcome on ``GET /bookings/{id}/events``;
the tests read the same streams with it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

__all__ = ("events", "events_of")


def events(lines: Iterable[str]) -> Iterator[dict[str, str]]:
    """The events of the stream (comment lines skipped), each as field -> value."""
    event: dict[str, str] = {}
    for line in lines:
        if not line:
            if event:
                yield event
            event = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(":")
            event[name] = value.removeprefix(" ")
    if event:
        yield event


def events_of(body: bytes) -> list[dict[str, str]]:
    """The events of a whole stream's body."""
    return list(events(body.decode().splitlines()))
