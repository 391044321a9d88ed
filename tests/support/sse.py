"""Reading a ``text/event-stream`` the way a browser's EventSource does."""

from __future__ import annotations

from collections.abc import Iterator

__all__ = ("events",)


def events(lines: Iterator[str]) -> Iterator[dict[str, str]]:
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
