"""Rebuild a read model into a new version from the event store, then switch to it without downtime.

1. ``read_model_versions.building = M`` (M = active + 1). The live workers see it within a
   second and from then on write every new event to both N and M. The replay starts at
   once: whatever a worker writes to N only meanwhile is in the event store, and so in
   the replay (ADR 0027).
2. Replay the event store into version M (the same engine as the workers, with the
   version guards, so the replay and the live workers can write M in any order).
3. When the replay has reached the head, ``active = M`` and ``building = null``: readers
   resolve the active version per request (cached at most 1 s), so none of them ever
   reads a half-built version.
4. One more pass over what was committed meanwhile (a worker that had not seen step 1
   yet may have written an event to N only), then, after a grace period, drop version N.

The ``analytics`` read model has no events of its own: it is recomputed from the active
``bookings`` and ``flights`` documents.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import TYPE_CHECKING

from flightbook.contracts.readmodels import (
    COLLECTIONS,
    CONTEXTS_OF,
    READ_MODELS,
    collection,
    projection_of_context,
    redis_version_prefix,
)
from flightbook.projections.deadletters import letter_for_envelope
from flightbook.projections.engine import Targets, recompute_analytics, replay
from flightbook.projections.ports import VersionInfo

if TYPE_CHECKING:
    from collections.abc import Callable

    from flightbook.contracts.envelope import Envelope
    from flightbook.projections.engine import ApplyResult, Engine
    from flightbook.projections.services import ProjectionServices

__all__ = ("RebuildError", "drop_version", "rebuild")


class RebuildError(RuntimeError):
    """The rebuild cannot start (unknown read model, or one is already being built)."""


def drop_version(services: ProjectionServices, read_model: str, version: int) -> None:
    """Delete every collection (or Redis key) of one version of a read model."""
    for name in COLLECTIONS[read_model]:  # type: ignore[index]
        services.documents.drop(collection(name, version))
    if read_model == "redis":
        prefix = redis_version_prefix(services.settings.redis_prefix, version)
        services.hashes.delete_prefix(prefix)


def _targets(services: ProjectionServices, read_model: str, worker: str, version: int) -> Targets:
    if read_model == "redis":
        active = services.progress.versions().get(worker, VersionInfo()).active
        return Targets(documents=(active,), redis=(version,), markers=False)
    return Targets(documents=(version,), markers=False)


def _replay_context(
    services: ProjectionServices,
    engine: Engine,
    targets: Targets,
    *,
    after: int,
    label: str,
    say: Callable[[str], None],
) -> int:
    """Replay one context into ``targets`` until the head stays put; return the position."""
    context = engine.kind.context
    position = after
    started = time.monotonic()
    shown = [0.0]

    def on_poison(envelope: Envelope, exc: Exception) -> None:
        letter = letter_for_envelope(
            engine.kind.read_model, context, envelope, exc, dt.datetime.now(dt.UTC)
        )
        services.progress.add_dead_letter(letter)
        say(f"{label}: dead letter at {context} position {envelope.position}: {letter.error}")

    while True:
        head = services.reader.head(context)
        if head <= position:
            return position

        def on_batch(reached: int, _result: ApplyResult, head: int = head) -> None:
            now = time.monotonic()
            if now - shown[0] >= 2.0 or reached >= head:
                shown[0] = now
                rate = (reached - after) / max(now - started, 1e-6)
                percent = 100.0 * reached / head if head else 100.0
                say(f"{label}: {context} {reached}/{head} ({percent:.0f}%), {rate:.0f} events/s")

        position = replay(
            engine,
            services.reader,
            after=position,
            upto=head,
            targets=lambda: targets,
            on_poison=on_poison,
            on_batch=on_batch,
        )


def rebuild(
    services: ProjectionServices,
    read_model: str,
    *,
    say: Callable[[str], None],
    grace_seconds: float = 3.0,
    settle_seconds: float = 2.0,
    keep_old: bool = False,
    force: bool = False,
) -> int:
    """Rebuild ``read_model`` into a new version and switch to it; return the new version.

    Args:
        services: The clients.
        read_model: ``bookings``, ``flights``, ``analytics`` or ``redis``.
        say: Where progress lines go (stderr in the CLI).
        grace_seconds: How long readers may still use the old version before it is dropped.
        settle_seconds: How long the live workers get to notice a change of versions.
        keep_old: Do not drop the old version.
        force: Start over even if a build of this read model is marked as running.

    Raises:
        RebuildError: An unknown read model, or a build already running.
    """
    if read_model not in READ_MODELS:
        raise RebuildError(f"no read model {read_model!r} (choose from {', '.join(READ_MODELS)})")
    progress = services.progress
    info = progress.versions().get(read_model, VersionInfo())
    if info.building is not None and not force:
        raise RebuildError(
            f"version {info.building} of {read_model} is already being built "
            "(another rebuild runs, or one stopped half-way: use --force to start over)"
        )
    old, new = info.active, info.active + 1
    label = f"{read_model} v{new}"
    drop_version(services, read_model, new)  # what an interrupted rebuild left
    progress.start_building(read_model, new)
    say(f"{label}: building (active: v{old}); the live workers now write both versions")
    # No wait here: an event a worker writes to the old version only, before it sees the
    # build, is in the event store, so the replay below (or its last pass) writes it anew.
    started = time.monotonic()
    reached: dict[str, int] = {}
    switched = False
    try:
        if read_model == "analytics":
            versions = progress.versions()
            written = recompute_analytics(
                services.documents,
                bookings_version=versions.get("bookings", VersionInfo()).active,
                flights_version=versions.get("flights", VersionInfo()).active,
                target_version=new,
            )
            say(f"{label}: {written} analytics documents computed")
        else:
            for context in CONTEXTS_OF[read_model]:
                worker = projection_of_context(context).name
                engine = services.engine(worker)
                targets = _targets(services, read_model, worker, new)
                reached[context] = _replay_context(
                    services, engine, targets, after=0, label=label, say=say
                )
        progress.switch(read_model, new)
        switched = True
        say(f"{label}: active (was v{old}) after {time.monotonic() - started:.1f}s")
        time.sleep(settle_seconds)
        for name, position in reached.items():
            worker = projection_of_context(name).name
            engine = services.engine(worker)
            targets = _targets(services, read_model, worker, new)
            _replay_context(services, engine, targets, after=position, label=label, say=say)
    finally:
        if not switched:
            progress.stop_building(read_model)
    if keep_old:
        say(f"{label}: version {old} kept")
    else:
        say(f"{label}: dropping version {old} in {grace_seconds:.0f}s")
        time.sleep(grace_seconds)
        drop_version(services, read_model, old)
        say(f"{label}: version {old} dropped")
    return new
