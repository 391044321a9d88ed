"""Where the CPU goes: CPU seconds of every process on the machine while bookings flow.

Usage: python bench/cpu_by_process.py [SECONDS] [CLIENTS] [FLIGHTS]

Starts its own stack and every process (like ``flightbook bench``), runs the booking load
without any profiler attached, and prints, per process (PostgreSQL backends summed), the
CPU seconds (user + system, from /proc) used during the load, the machine's CPU use from
vmstat, and the bookings confirmed. Linux only.
"""

from __future__ import annotations

import collections
import os
import subprocess
import sys
from pathlib import Path

from flightbook.bench.load import BookingLoad, schedule_flights
from flightbook.bench.system import SystemUnderTest, scratch_settings

STATE = ".flightbook/cpu-profile"


def cpu_seconds() -> dict[str, tuple[str, float]]:
    """pid -> (command line, CPU seconds so far)."""
    ticks = os.sysconf("SC_CLK_TCK")
    found: dict[str, tuple[str, float]] = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            command = Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " ").strip()
        except OSError:
            continue
        fields = stat.rpartition(")")[2].split()
        name = command or stat.split("(", 1)[1].split(")", 1)[0]
        found[pid] = (name, (int(fields[11]) + int(fields[12])) / ticks)
    return found


def label(command: str) -> str:
    if command.startswith("postgres:"):
        return "postgres (backends)"
    parts = command.split()
    for part in parts:
        if part.endswith((".py", "nx-27017")) or "tansu" in part:
            return "/".join(part.split("/")[-2:])
    return parts[0].split("/")[-1] if parts else command


def used(
    before: dict[str, tuple[str, float]], after: dict[str, tuple[str, float]]
) -> collections.Counter[str]:
    totals: collections.Counter[str] = collections.Counter()
    for pid, (command, seconds) in after.items():
        totals[label(command)] += seconds - before.get(pid, (command, 0.0))[1]
    return totals


def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 30.0
    clients = int(sys.argv[2]) if len(sys.argv) > 2 else 32
    flights = int(sys.argv[3]) if len(sys.argv) > 3 else 8
    settings = scratch_settings(STATE)
    system = SystemUnderTest(settings, say=print)
    try:
        system.start_servers()
        system.start()
        command = system.url("command-api")
        ids = schedule_flights(command, system.settings, flights, seats=10_000)
        vmstat = subprocess.Popen(
            ["vmstat", "5", str(max(1, int(seconds // 5)))], stdout=subprocess.PIPE, text=True
        )
        before = cpu_seconds()
        load = BookingLoad.against(system, flights=ids, clients=clients, seconds=seconds).run()
        after = cpu_seconds()
        print(vmstat.communicate()[0])
        confirmed = load.completed
        print(
            f"{confirmed} bookings confirmed in {load.seconds:.1f} s "
            f"({confirmed / load.seconds:.2f}/s); CPU seconds per process during the load:"
        )
        for name, spent in used(before, after).most_common(12):
            per_booking = 1000 * spent / confirmed if confirmed else 0.0
            print(f"  {spent:6.1f} s  {per_booking:6.1f} ms/booking  {name}")
    finally:
        system.close()


if __name__ == "__main__":
    main()
