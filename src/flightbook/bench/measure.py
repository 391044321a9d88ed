"""Small measuring tools: percentiles, free ports, waiting for HTTP, metrics, peak RSS."""

from __future__ import annotations

import math
import re
import threading
import time
import urllib.request

import psutil

__all__ = (
    "RssWatcher",
    "latency_ms",
    "metric_values",
    "parse_metric",
    "percentile",
    "wait_http",
)

_LABEL = re.compile(r'[a-zA-Z_][a-zA-Z0-9_]*="((?:[^"\\]|\\.)*)"')


def percentile(values: list[float], p: float) -> float:
    """The ``p``-th percentile (0..100) by nearest rank; 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def latency_ms(values: list[float]) -> dict[str, float]:
    """p50, p95, p99 and max of ``values`` (seconds), in milliseconds."""
    return {
        "p50_ms": round(percentile(values, 50) * 1000, 2),
        "p95_ms": round(percentile(values, 95) * 1000, 2),
        "p99_ms": round(percentile(values, 99) * 1000, 2),
        "max_ms": round(max(values, default=0.0) * 1000, 2),
    }


def wait_http(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1):  # noqa: S310 - our loopback URL
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer within {timeout:.0f}s")


def parse_metric(text: str, name: str) -> dict[str, float]:
    """The samples of metric ``name`` in a Prometheus text exposition, by their labels.

    The key is the samples' label values joined by ``,`` (``""`` for a sample without
    labels): ``flightbook_saga_lag_positions{source="booking"} 3.0`` gives
    ``{"booking": 3.0}``.
    """
    found = {}
    for line in text.splitlines():
        if not line.startswith(name) or line.startswith("#"):
            continue
        head, _, value = line.rpartition(" ")
        metric, brace, labels = head.partition("{")
        if metric != name:
            continue  # another metric whose name starts with this one
        key = ",".join(_LABEL.findall(labels)) if brace else ""
        found[key] = float(value)
    return found


def metric_values(url: str, name: str, timeout: float = 5.0) -> dict[str, float]:
    """:func:`parse_metric` of the ``/metrics`` served at ``url``."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=timeout) as response:  # noqa: S310
        return parse_metric(response.read().decode(), name)


class RssWatcher:
    """Samples the RSS of named processes every ``interval`` seconds; keeps each one's peak."""

    def __init__(self, pids: dict[str, int], interval: float = 0.25) -> None:
        self.peaks: dict[str, int] = dict.fromkeys(pids, 0)
        self._pids = pids
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="rss-watcher")

    def __enter__(self) -> RssWatcher:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            for name, pid in self._pids.items():
                try:
                    rss = psutil.Process(pid).memory_info().rss
                except psutil.Error:
                    continue
                self.peaks[name] = max(self.peaks[name], rss)
