"""Dead letters: list them, and apply them again once whatever made them fail is fixed.

A dead letter keeps the message as text (the envelope's JSON). Replaying decodes it and
applies it with the live targets, exactly as the worker would have; the version guards
make a letter whose events have been applied since (by a repair from the event store) a
harmless duplicate. A letter that fails again keeps its place with the new error.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, NamedTuple

from flightbook.contracts.envelope import decoder
from flightbook.projections.engine import is_transient
from flightbook.projections.versions import VersionCache

if TYPE_CHECKING:
    from collections.abc import Callable

    from flightbook.projections.engine import Engine
    from flightbook.projections.ports import DeadLetter
    from flightbook.projections.services import ProjectionServices

__all__ = ("ReplayOutcome", "format_letters", "replay_dead_letters")


class ReplayOutcome(NamedTuple):
    """How many dead letters a replay applied, and how many still fail."""

    replayed: int
    failed: int


def format_letters(letters: list[DeadLetter]) -> str:
    """One line per dead letter, oldest first."""
    if not letters:
        return "no dead letters"
    lines = []
    for letter in letters:
        where = f"{letter.topic}[{letter.partition}]@{letter.offset}"
        state = f"replayed {letter.replayed_at:%Y-%m-%dT%H:%M:%SZ}" if letter.replayed_at else ""
        lines.append(
            f"{letter.failed_at:%Y-%m-%dT%H:%M:%SZ}  {letter.read_model:<8} {where}  "
            f"attempts={letter.attempts}  {letter.error}  {state}".rstrip()
        )
    return "\n".join(lines)


def replay_dead_letters(
    services: ProjectionServices,
    *,
    read_model: str | None = None,
    say: Callable[[str], None] = lambda _line: None,
) -> ReplayOutcome:
    """Apply every pending dead letter again; mark those that now succeed as replayed."""
    versions = VersionCache(services.progress, ttl=0.0)
    engines: dict[str, Engine] = {}
    replayed = failed = 0
    for letter in services.progress.dead_letters(read_model):
        now = dt.datetime.now(dt.UTC)
        try:
            engine = engines.get(letter.read_model)
            if engine is None:
                engine = engines[letter.read_model] = services.engine(letter.read_model)
            envelope = decoder.decode(letter.raw.encode())
            engine.apply([envelope], versions.targets(engine.kind))
        except Exception as exc:
            if is_transient(exc):
                raise
            error = f"{type(exc).__name__}: {exc}"
            services.progress.mark_failed_again(letter.id, error, now)
            say(f"still failing: {letter.id}: {error}")
            failed += 1
            continue
        services.progress.mark_replayed(letter.id, now)
        say(f"replayed: {letter.id}")
        replayed += 1
    return ReplayOutcome(replayed=replayed, failed=failed)
