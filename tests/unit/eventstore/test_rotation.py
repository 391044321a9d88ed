"""Rotating the KEK on the in-memory tables (PostgreSQL: tests/integration/eventstore)."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from flightbook.eventstore.keks import MemoryKeyEncryptionKeys
from flightbook.eventstore.memory import MemoryDatabase
from flightbook.eventstore.pii import PersonalDataVault, RotationRunningError
from flightbook.eventstore.rotation import KekRotationError, retire_old_keks, rotate_kek

pytestmark = pytest.mark.unit


def test_a_stopped_rotation_resumes_then_the_old_kek_retires_and_everything_opens() -> None:
    database, keks = MemoryDatabase(), MemoryKeyEncryptionKeys()
    vault = PersonalDataVault.in_memory(database, keks)
    sealed = {f"c{n}": vault.seal(f"c{n}", f"value {n}") for n in range(5)}
    database.table("pii.subject_keys")["legacy"] = {"key": AESGCM.generate_key(bit_length=256)}
    old = keks.current_id

    stopped = rotate_kek(vault.keys, keks, batch_size=2, stop_after_batches=1)
    with pytest.raises(KekRotationError, match="3 key"):
        retire_old_keks(vault.keys, keks)
    resumed = rotate_kek(vault.keys, keks, batch_size=2)
    retired = retire_old_keks(vault.keys, keks)

    assert (stopped.new, stopped.rewrapped, stopped.remaining) == (True, 2, 4)
    assert (resumed.new, resumed.kek_id, resumed.rewrapped) == (False, stopped.kek_id, 4)
    assert retired == [old]
    assert database.table("pii.subject_keys")["legacy"]["key"] is None
    fresh = PersonalDataVault(vault.keys, keks)
    assert {s: fresh.open(s, v) for s, v in sealed.items()} == {
        f"c{n}": f"value {n}" for n in range(5)
    }


def test_one_rotation_at_a_time() -> None:
    vault = PersonalDataVault.in_memory(MemoryDatabase())

    with vault.keys.exclusive(), pytest.raises(RotationRunningError):
        rotate_kek(vault.keys, MemoryKeyEncryptionKeys())
