"""The auditor process: seals new events into the hash chain, continuously."""

from __future__ import annotations

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
        self._log = EventLog(url)
        self._sealer = Sealer(url, self._log)
        self._interval = interval
        self.loop = ProcessLoop("auditor")
        self._healthy = True

    def ready(self) -> bool:
        return self._healthy

    def stop(self) -> None:
        self.loop.stop()

    def close(self) -> None:
        self._log.close()

    def run(self) -> None:
        try:
            while not self.loop.stop_requested():
                started = time.perf_counter()
                try:
                    added = self._sealer.seal_once()
                    self._healthy = True
                except Exception:
                    self._healthy = False
                    _log.exception("audit.seal_failed")
                    added = 0
                self._last.set_to_current_time()
                if added:
                    self._sealed.inc(added)
                    _log.info(
                        "audit.sealed",
                        count=added,
                        duration_ms=round((time.perf_counter() - started) * 1000, 2),
                    )
                self.loop.wait(self._interval)
        finally:
            self.close()
