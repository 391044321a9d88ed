"""Calls made at one moment from many threads, to race each other."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")


def at_once(count: int, call: Callable[[int], T], *, timeout: float = 60.0) -> list[T]:
    """``call(0)`` to ``call(count - 1)``, each on its own thread, released together by a
    barrier; their results in that order (an exception of a call is raised here)."""
    barrier = threading.Barrier(count)

    def released(n: int) -> T:
        barrier.wait(timeout)
        return call(n)

    with ThreadPoolExecutor(max_workers=count) as pool:
        futures = [pool.submit(released, n) for n in range(count)]
        return [future.result(timeout) for future in futures]
