"""The "hello" of ``flightbook bench`` on two uvicorn stacks: asyncio + h11, uvloop + httptools.

Usage: python bench/http_stack.py [SECONDS] [RUNS]

Alternates the two stacks RUNS times (default 2), each for SECONDS (default 6) under 64
keep-alive clients, and prints requests/s and the server's CPU per request (ADR 0021).
"""

from __future__ import annotations

import asyncio
import subprocess
import sys

import psutil

from flightbook.bench.measure import free_port, wait_http
from flightbook.bench.raw import _hammer

STACKS = (("asyncio", "h11"), ("uvloop", "httptools"))


def measure(loop: str, http: str, seconds: float) -> tuple[float, float]:
    """(requests/s, server CPU µs per request) of one stack."""
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", "flightbook.bench.hello:app", "--port", str(port)]
    server = subprocess.Popen(
        [*command, "--log-level", "warning", "--no-access-log", "--loop", loop, "--http", http],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}/hello"
        wait_http(url)
        process = psutil.Process(server.pid)
        before = sum(process.cpu_times()[:2])
        rate, _ = asyncio.run(_hammer(url, seconds, 64))
        spent = sum(process.cpu_times()[:2]) - before
        return rate, spent / (rate * seconds) * 1e6
    finally:
        server.terminate()
        server.wait(10)


def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 6.0
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    for _ in range(runs):
        for loop, http in STACKS:
            rate, micros = measure(loop, http, seconds)
            print(f"{loop} + {http}: {rate:,.0f} requests/s, server CPU {micros:.0f} µs/request")


if __name__ == "__main__":
    main()
