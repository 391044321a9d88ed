"""The vault's own logic on the in-memory tables: its key cache, races, and a missing KEK.

What it shares with PostgreSQL is the contract in
``tests/integration/eventstore/test_vault_contract.py``.
"""

from __future__ import annotations

import pytest

from flightbook.eventstore.keks import KeyEncryptionKeyError, MemoryKeyEncryptionKeys
from flightbook.eventstore.memory import MemoryDatabase
from flightbook.eventstore.pii import ERASED, MemoryDataKeys, PersonalDataVault
from tests.support.memory import Seconds
from tests.support.sealed import opens_with_a_window_of
from tests.support.threads import at_once

pytestmark = pytest.mark.unit


def test_an_opening_key_is_cached_for_30_seconds_unless_forgotten() -> None:
    database, keks, clock = MemoryDatabase(), MemoryKeyEncryptionKeys(), Seconds(1000.0)
    reader = PersonalDataVault(MemoryDataKeys(database), keks, clock=clock)
    writer = PersonalDataVault(MemoryDataKeys(database), keks)
    sealed = writer.seal("alice", "Ada")
    assert reader.open("alice", sealed) == "Ada"

    writer.erase("alice")

    clock.now += 29
    assert reader.open("alice", sealed) == "Ada"  # an erasure reaches it within 30 s
    clock.now += 1
    assert reader.open("alice", sealed) == ERASED


def test_forgetting_a_subject_drops_only_its_cached_keys() -> None:
    database, keks = MemoryDatabase(), MemoryKeyEncryptionKeys()
    reader = PersonalDataVault(MemoryDataKeys(database), keks)
    writer = PersonalDataVault(MemoryDataKeys(database), keks)
    alice, bob = writer.seal("alice", "Ada"), writer.seal("bob", "Bob")
    assert (reader.open("alice", alice), reader.open("bob", bob)) == ("Ada", "Bob")
    writer.erase("alice")
    writer.erase("bob")

    reader.forget("alice")

    assert reader.open("alice", alice) == ERASED
    assert reader.open("bob", bob) == "Bob"  # still cached: not forgotten


def test_subjects_sealing_their_first_value_at_once_agree_on_one_key() -> None:
    database, keks = MemoryDatabase(), MemoryKeyEncryptionKeys()
    vaults = [PersonalDataVault(MemoryDataKeys(database), keks) for _ in range(8)]

    sealed = at_once(8, lambda n: vaults[n].seal("alice", f"value {n}"))

    assert len({value.split(":")[1] for value in sealed}) == 1
    assert [vaults[0].open("alice", v) for v in sealed] == [f"value {n}" for n in range(8)]


def test_a_vault_without_the_kek_opens_nothing_and_says_so() -> None:
    database = MemoryDatabase()
    sealed = PersonalDataVault.in_memory(database).seal("alice", "Ada")
    stranger = PersonalDataVault.in_memory(database)  # a KEK of its own

    with pytest.raises(KeyEncryptionKeyError, match="does not have"):
        stranger.open("alice", sealed)


def test_the_tables_hold_no_data_key_in_the_clear() -> None:
    database = MemoryDatabase()
    sealed = PersonalDataVault.in_memory(database).seal("alice", "Ada")

    stored = [
        value
        for table in database.tables.values()
        for row in table.values()
        for value in row.values()
        if isinstance(value, bytes)
    ]

    assert stored
    assert not any(opens_with_a_window_of(blob, "alice", sealed) for blob in stored)
