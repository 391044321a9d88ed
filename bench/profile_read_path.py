"""The read path's price: requests/s against the "hello" limit, and CPU per request.

Usage: python bench/profile_read_path.py [SECONDS] [CLIENTS] [--py-spy]

Starts its own stack and every process (like ``flightbook bench``), makes some bookings,
measures the raw "hello" limit (:func:`flightbook.bench.raw.http_hello_rate`, the same
client and server stack), then runs the read path of ``flightbook bench``
(:class:`~flightbook.bench.load.ReadLoad`: 100 searches per ``GET /bookings/{id}``) and
prints requests/s, the ratio to "hello", latencies, and the CPU per request of the query
API and of the servers it reads (from their process CPU times, so the figure holds on a
busy machine). With ``--py-spy`` (needs py-spy on the PATH) the query API is sampled
during the read path and its hottest functions printed; collapsed stacks go to
``bench/results/profile-read-path.txt``. Sampling slows the process: take the rates from
a run without it.
"""

from __future__ import annotations

import collections
import shutil
import subprocess
import sys
from pathlib import Path

import psutil

from flightbook.bench import raw
from flightbook.bench.load import BookingLoad, ReadLoad, schedule_flights
from flightbook.bench.measure import latency_ms
from flightbook.bench.system import SystemUnderTest, scratch_settings

IDLE = ("_run_once", "select (", "poll (", "run (uvloop", "sleep", "wait (threading")


def cpu_seconds(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


def hottest(path: Path, top: int = 25) -> list[tuple[str, float, float]]:
    """(function, inclusive %, self %) of the busy samples of a py-spy raw file."""
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = [frame.split(":")[0] for frame in stack.split(";")]
        if not frames or any(marker in frames[-1] for marker in IDLE):
            continue
        samples = int(count)
        total += samples
        for frame in set(frames):
            inclusive[frame] += samples
        own[frames[-1]] += samples
    if not total:
        return []
    return [
        (name, 100.0 * n / total, 100.0 * own[name] / total)
        for name, n in inclusive.most_common(top)
    ]


def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    spy = "--py-spy" in sys.argv
    seconds = float(args[0]) if args else 10.0
    clients = int(args[1]) if len(args) > 1 else 16
    system = SystemUnderTest(scratch_settings(".flightbook/profile-read"), say=print)
    out = Path("bench/results")
    out.mkdir(parents=True, exist_ok=True)
    try:
        system.start_servers()
        hello, _ = raw.http_hello_rate(6.0)
        system.start()
        flights = schedule_flights(system.url("command-api"), system.settings, 8, seats=10_000)
        booked = BookingLoad.against(system, flights=flights, clients=8, seconds=5).run()
        watched = {"query-api": system.processes["query-api"].pid, **system.server_pids}
        before = {name: cpu_seconds(pid) for name, pid in watched.items()}
        recorder = None
        if spy:
            recorder = subprocess.Popen(
                [
                    shutil.which("py-spy") or "py-spy",
                    *("record", "--pid", str(watched["query-api"]), "--format", "raw"),
                    *("--duration", str(int(seconds)), "--nonblocking"),
                    *("--output", str(out / "profile-read-path.txt")),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        read = ReadLoad(
            settings=system.settings,
            query_url=system.url("query-api"),
            booking_ids=booked.booking_ids,
            clients=clients,
            seconds=seconds,
        ).run()
        spent = {name: cpu_seconds(pid) - before[name] for name, pid in watched.items()}
        if recorder is not None:
            recorder.wait(60)
        rate = read.completed / read.seconds
        print(f"hello {hello:,.0f} req/s; read path {rate:,.0f} req/s ({read.failed} failed)")
        print(f"ratio {rate / hello:.3f}; loadgen CPU {read.loadgen_cpu_percent:.0f}%")
        print(f"search {latency_ms(read.extra['search'])}")
        print(f"booking {latency_ms(read.extra['booking'])}")
        for name, cpu in spent.items():
            print(f"CPU {name}: {cpu * 1000 / max(1, read.completed):.3f} ms/request")
        if recorder is not None:
            for name, share, own in hottest(out / "profile-read-path.txt"):
                print(f"  {share:5.1f}% (self {own:4.1f}%)  {name}")
    finally:
        system.close()


if __name__ == "__main__":
    main()
