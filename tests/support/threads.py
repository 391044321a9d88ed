"""Calls made at one moment from many threads, to race each other; work in the background."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Self, TypeVar

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


class Background:
    """Work on a daemon thread of its own (:meth:`work`, until :attr:`stopping`).

    :meth:`halt` stops it and raises what the work raised, if anything.
    """

    def __init__(self, name: str) -> None:
        self.error: BaseException | None = None
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._guarded, name=name, daemon=True)

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def start(self) -> Self:
        self._thread.start()
        return self

    def halt(self, timeout: float) -> None:
        self._stopping.set()
        self._thread.join(timeout)
        if self.error is not None:
            raise self.error

    def work(self) -> None:
        raise NotImplementedError

    def _guarded(self) -> None:
        try:
            self.work()
        except BaseException as exc:  # raised by halt()
            self.error = exc
