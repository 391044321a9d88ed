"""The auditor process: seals new events into the hash chain, continuously.

Its connection is opened when first needed and opened again after a failure, so a
PostgreSQL restart costs it one failed pass (not ready meanwhile), never its life.
"""

from __future__ import annotations

import contextlib
import time

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge, ProcessCollector

from flightbook.audit.integrity import Sealer
from flightbook.audit.log import EventLog
from flightbook.runtime.loop import ProcessLoop

__all__ = ("SealerProcess",)

_log = structlog.get_logger()


class SealerProcess:
    """Seals every ``interval`` seconds until stopped; one log line per batch sealed."""

    def __init__(self, url: str, *, interval: float) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        self._sealed = Counter(
            "flightbook_audit_sealed_total", "Events sealed into the chain", registry=self.registry
        )
        self._last = Gauge(
            "flightbook_audit_last_seal_timestamp_seconds",
            "When the sealer last finished a pass",
            registry=self.registry,
        )
        self._url = url
        self._log: EventLog | None = None
        self._interval = interval
        self.loop = ProcessLoop("auditor")
        self._healthy = True

    def ready(self) -> bool:
        return self._healthy

    def stop(self) -> None:
        self.loop.stop()

    def close(self) -> None:
        if self._log is not None:
            with contextlib.suppress(Exception):  # a broken connection has nothing to flush
                self._log.close()
            self._log = None

    def _seal_once(self) -> int:
        if self._log is None:
            self._log = EventLog(self._url)
        return Sealer(self._url, self._log).seal_once()

    def run(self) -> None:
        try:
            while not self.loop.stop_requested():
                started = time.perf_counter()
                wait = self._interval
                try:
                    added = self._seal_once()
                    self._healthy = True
                    self.loop.backoff.reset()
                except Exception as exc:
                    self._healthy = False
                    self.close()  # opened afresh for the next pass
                    wait = max(wait, self.loop.backoff.next_delay())
                    _log.warning("audit.seal_failed", error=repr(exc), retry_in_s=round(wait, 2))
                    added = 0
                self._last.set_to_current_time()
                if added:
                    self._sealed.inc(added)
                    _log.info(
                        "audit.sealed",
                        count=added,
                        duration_ms=round((time.perf_counter() - started) * 1000, 2),
                    )
                self.loop.wait(wait)
        finally:
            self.close()
