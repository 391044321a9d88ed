"""Off the local stack, every process that handles personal data refuses to start without
a key-encryption key file: one line naming FLIGHTBOOK_KEK_FILE, exit status 2, before it
connects anywhere (the servers named here do not exist)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.processes import ROOT, run_child, without_flightbook_settings

pytestmark = pytest.mark.integration

OFF_STACK = {
    "FLIGHTBOOK_HOST": "0.0.0.0",  # noqa: S104 - off the local stack on purpose
    "FLIGHTBOOK_POSTGRES_URL": "postgresql://flightbook@db.invalid:5432/flightbook",
    "FLIGHTBOOK_MONGO_URL": "mongodb://mongo.invalid:27017",
    "FLIGHTBOOK_REDIS_URL": "redis://redis.invalid:6379/0",
    "FLIGHTBOOK_KAFKA_BOOTSTRAP": "kafka.invalid:9092",
    "FLIGHTBOOK_JWT_JWKS": "https://identity.invalid/.well-known/jwks.json",
}


def start_off_stack(script: str, **env: str) -> subprocess.CompletedProcess[str]:
    """The composition root ``script`` started off the local stack, with ``env`` besides."""
    return run_child(
        [sys.executable, str(ROOT / script)],
        {**without_flightbook_settings(), **OFF_STACK, **env},
        timeout=60,
    )


@pytest.mark.parametrize(
    "script", ["commands/api.py", "commands/saga.py", "projections/bookings.py"]
)
def test_a_process_with_personal_data_refuses_to_start_without_a_kek_file(
    script: str, tmp_path: Path
) -> None:
    done = start_off_stack(script, FLIGHTBOOK_STATE_DIR=str(tmp_path))

    assert done.returncode == 2
    assert done.stderr.count("\n") == 1
    assert "error: FLIGHTBOOK_KEK_FILE is not set" in done.stderr
    assert not (tmp_path / "kek.json").exists()


def test_a_named_kek_file_that_does_not_exist_is_refused_too(tmp_path: Path) -> None:
    done = start_off_stack("commands/api.py", FLIGHTBOOK_KEK_FILE=str(tmp_path / "missing.json"))

    assert done.returncode == 2
    assert "FLIGHTBOOK_KEK_FILE" in done.stderr
    assert "missing.json" in done.stderr
    assert not (tmp_path / "missing.json").exists()
