"""Where the time goes: py-spy samples every process while bookings flow.

Usage: python bench/profile_pipeline.py [SECONDS] [CLIENTS]   (needs `pip install py-spy`)

Starts its own stack and every process (like ``flightbook bench``), runs the booking load,
and samples each process with py-spy for the same time. Prints, per process, the share of
samples spent in each of the top functions (inclusive, "where does a sample sit in its
stack"), excluding idle waits. Raw collapsed stacks go to bench/results/profile-*.txt.
"""

from __future__ import annotations

import collections
import shutil
import subprocess
import sys
from pathlib import Path

from flightbook.bench.load import BookingLoad, schedule_flights
from flightbook.bench.system import SystemUnderTest, scratch_settings
from flightbook.config.processes import PROCESSES as SYSTEM

IDLE = (
    "wait (threading",
    "select (selectors",
    "_run_once (asyncio",
    "poll (",
    "consume (",
    "notifies (",
    "serve_forever",
    "sleep",
    "_wait_for_tstate_lock",
    "readinto (socket",
    "wait (psycopg",
    "recv_into",
)
PROCESSES = tuple(spec.name for spec in SYSTEM if spec.name != "auditor")


def busy_samples(path: Path) -> int:
    """Samples of a process that were not waiting (100 per second: 100 = one busy core)."""
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        if frames and not any(marker in frames[-1] for marker in IDLE):
            total += int(count)
    return total


def summarize(path: Path, top: int = 12) -> list[tuple[str, float]]:
    busy: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        if not frames or any(marker in frames[-1] for marker in IDLE):
            continue
        samples = int(count)
        total += samples
        for frame in set(frames):
            busy[
                frame.split(" (")[0] + " (" + frame.split(" (")[1].split(":")[0] + ")"
                if " (" in frame
                else frame
            ] += samples
    return [(name, 100.0 * n / total) for name, n in busy.most_common(top)] if total else []


def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 20.0
    clients = int(sys.argv[2]) if len(sys.argv) > 2 else 32
    settings = scratch_settings(".flightbook/profile")
    system = SystemUnderTest(settings, say=print)
    out = Path("bench/results")
    out.mkdir(parents=True, exist_ok=True)
    try:
        system.start_servers()
        system.start()
        command = system.url("command-api")
        flights = schedule_flights(command, system.settings, 8, seats=10_000)
        spies = {
            name: subprocess.Popen(
                [
                    shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy"),
                    "record",
                    "--pid",
                    str(system.processes[name].pid),
                    "--duration",
                    str(int(seconds)),
                    "--format",
                    "raw",
                    "--nonblocking",
                    "--threads",
                    "--output",
                    str(out / f"profile-{name}.txt"),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for name in PROCESSES
        }
        load = BookingLoad.against(system, flights=flights, clients=clients, seconds=seconds).run()
        for spy in spies.values():
            spy.wait(60)
        print(
            f"confirmed {load.completed} bookings in {load.seconds:.1f}s "
            f"({load.completed / load.seconds:.1f}/s)"
        )
        for name in PROCESSES:
            busy = busy_samples(out / f"profile-{name}.txt") / (seconds * 100)
            print(f"\n== {name}: busy {busy:.0%} of the time; share of busy samples (inclusive)")
            for function, share in summarize(out / f"profile-{name}.txt"):
                print(f"  {share:5.1f}%  {function}")
    finally:
        system.close()


if __name__ == "__main__":
    main()
