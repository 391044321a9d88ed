"""Off the local stack, every process that handles personal data refuses to start without
a key-encryption key file: one line naming FLIGHTBOOK_KEK_FILE, exit status 2, before it
connects anywhere (the servers named here do not exist)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
OFF_STACK = {
    "FLIGHTBOOK_HOST": "0.0.0.0",  # noqa: S104 - off the local stack on purpose
    "FLIGHTBOOK_POSTGRES_URL": "postgresql://flightbook@db.invalid:5432/flightbook",
    "FLIGHTBOOK_MONGO_URL": "mongodb://mongo.invalid:27017",
    "FLIGHTBOOK_REDIS_URL": "redis://redis.invalid:6379/0",
    "FLIGHTBOOK_KAFKA_BOOTSTRAP": "kafka.invalid:9092",
    "FLIGHTBOOK_JWT_SECRET": "s" * 40,
}


@pytest.mark.parametrize(
    "script", ["commands/api.py", "commands/saga.py", "projections/bookings.py"]
)
def test_a_process_with_personal_data_refuses_to_start_without_a_kek_file(
    script: str, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLIGHTBOOK_")}
    env.update(OFF_STACK, FLIGHTBOOK_STATE_DIR=str(tmp_path))

    done = subprocess.run(
        [sys.executable, str(ROOT / script)],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert done.returncode == 2
    assert done.stderr.count("\n") == 1
    assert "error: FLIGHTBOOK_KEK_FILE is not set" in done.stderr
    assert not (tmp_path / "kek.json").exists()


def test_a_named_kek_file_that_does_not_exist_is_refused_too(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLIGHTBOOK_")}
    env.update(OFF_STACK, FLIGHTBOOK_KEK_FILE=str(tmp_path / "missing.json"))

    done = subprocess.run(
        [sys.executable, str(ROOT / "commands/api.py")],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert done.returncode == 2
    assert "FLIGHTBOOK_KEK_FILE" in done.stderr
    assert "missing.json" in done.stderr
    assert not (tmp_path / "missing.json").exists()
