#!/usr/bin/env python3
"""The two commands a newcomer needs; each sets everything up first (needs Python 3.11+ and pip).

    python3 dev.py up      start the whole system with its local servers (Ctrl-C stops it)
    python3 dev.py test    run the whole test suite: lint, types, unit, integration, e2e

Set-up: a virtual environment in .venv with flightbook and its test tools installed
(again only when pyproject.toml changed). Every other argument is passed on:
``python3 dev.py test tests/unit -x`` runs part of the suite.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
STAMP = VENV / ".flightbook-installed"


def _run(*args: str | Path) -> None:
    result = subprocess.run([str(a) for a in args], cwd=ROOT, check=False)
    if result.returncode != 0:
        sys.exit(result.returncode)


def setup() -> None:
    """Create .venv and install flightbook with its test tools, unless already current."""
    if sys.version_info < (3, 11):  # noqa: UP036 - the one check that must run on any Python
        sys.exit("flightbook needs Python 3.11 or newer")
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if STAMP.exists() and STAMP.read_text() == wanted and (BIN / "flightbook").exists():
        return
    if not (BIN / "python").exists():
        print("creating .venv ...", file=sys.stderr, flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    print("installing flightbook and its servers into .venv ...", file=sys.stderr, flush=True)
    _run(
        BIN / "python",
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--editable",
        ".[test]",
    )
    STAMP.write_text(wanted)


def up(extra: list[str]) -> None:
    os.execv(BIN / "flightbook", [str(BIN / "flightbook"), "up", *extra])  # noqa: S606


WORKERS = ["-n", "2", "--dist", "worksteal"]
"""The whole suite runs on two workers, each with its own local servers: the end-to-end
tests mostly wait (for an outage to last, a process to restart), and two of them can
wait at once (ADR 0023). A part of the suite runs in one process, unless ``-n`` is given."""


def test(extra: list[str]) -> None:
    if not extra:  # the whole suite: style and types first, they take seconds
        _run(BIN / "ruff", "check", ".")
        _run(BIN / "ruff", "format", "--check", ".")
        _run(BIN / "mypy")
    pytest = [str(BIN / "python"), "-m", "pytest", *(extra or WORKERS)]
    os.execv(BIN / "python", pytest)  # noqa: S606


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in {"up", "test"}:
        sys.exit(__doc__)
    command, extra = sys.argv[1], sys.argv[2:]
    setup()
    up(extra) if command == "up" else test(extra)


if __name__ == "__main__":
    main()
