"""Which versions of the read models a live worker writes (``read_model_versions``, cached)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from flightbook.projections.engine import Targets
from flightbook.projections.ports import VersionInfo

if TYPE_CHECKING:
    from collections.abc import Callable

    from flightbook.projections.kinds import Kind
    from flightbook.projections.ports import ProgressStore

__all__ = ("VersionCache",)


class VersionCache:
    """``read_model_versions``, re-read at most every ``ttl`` seconds."""

    def __init__(
        self,
        progress: ProgressStore,
        *,
        ttl: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._progress = progress
        self._ttl = ttl
        self._clock = clock
        self._read_at: float | None = None
        self._versions: dict[str, VersionInfo] = {}

    def get(self) -> dict[str, VersionInfo]:
        now = self._clock()
        if self._read_at is None or now - self._read_at >= self._ttl:
            self._versions = self._progress.versions()
            self._read_at = now
        return self._versions

    def info(self, read_model: str) -> VersionInfo:
        return self.get().get(read_model, VersionInfo())

    def targets(self, kind: Kind) -> Targets:
        """The live worker's targets: every active version, and every version being built."""

        def live(read_model: str) -> tuple[int, ...]:
            info = self.info(read_model)
            if info.building is not None and info.building != info.active:
                return (info.active, info.building)
            return (info.active,)

        return Targets(
            documents=live(kind.read_model), redis=live("redis"), analytics=live("analytics")
        )
