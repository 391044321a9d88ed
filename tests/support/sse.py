"""Reading a ``text/event-stream``: the benchmark's reader (one home for the format)."""

from __future__ import annotations

from flightbook.bench.sse import events, events_of

__all__ = ("events", "events_of")
