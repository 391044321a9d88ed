"""The personal-data vault: one contract, on the in-memory event store and on PostgreSQL.

Every assertion runs against both; the memory vault is what the unit tests use, so it
must behave as the real one does: seal and open, erasure (now, or as a row of an
erasure's transaction that rolls back with it), a new key after an erasure, and legacy
``pii1`` values from before the key hierarchy.
"""

from __future__ import annotations

import base64
import os
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from eventsourcing.persistence import IntegrityError
from psycopg_pool import ConnectionPool

from flightbook.eventstore.applications import EventStore
from flightbook.eventstore.keks import MemoryKeyEncryptionKeys
from flightbook.eventstore.memory import MemoryDatabase
from flightbook.eventstore.metadata import recording
from flightbook.eventstore.pii import (
    ERASED,
    LiveKeysGuard,
    PersonalDataVault,
    SealedDataError,
    SealedUnderErasedKeyError,
    build_vault,
    is_sealed,
)
from tests.support.builders import a_booking
from tests.support.memory import memory_of, memory_store

pytestmark = pytest.mark.integration
# a key id nothing has: fixed, so that every pytest-xdist worker collects the same test ids
UNKNOWN_KEY = uuid.UUID("0b1d6e5e-0000-4000-8000-0000000000cc")


@dataclass
class Contract:
    """A vault, the event store its keys live beside, and how to plant a legacy key."""

    vault: PersonalDataVault
    store: EventStore
    pool: ConnectionPool | None
    database: MemoryDatabase | None

    def fresh_vault(self) -> PersonalDataVault:
        """Another process's vault on the same keys and KEKs (nothing cached)."""
        return PersonalDataVault(self.vault.keys, self.vault.keks)

    def plant_legacy_key(self, subject_id: str) -> bytes:
        """A raw key in ``pii.subject_keys``, as before the key hierarchy."""
        key = AESGCM.generate_key(bit_length=256)
        if self.pool is not None:
            with self.pool.connection() as conn:
                conn.execute(
                    "INSERT INTO pii.subject_keys (subject_id, key) VALUES (%s, %s)",
                    (subject_id, key),
                )
        else:
            assert self.database is not None
            self.database.table("pii.subject_keys")[subject_id] = {"key": key}
        return key


def legacy_seal(key: bytes, subject_id: str, plaintext: str) -> str:
    """A value sealed the way the code before the key hierarchy did (``pii1``)."""
    nonce = os.urandom(12)
    box = AESGCM(key).encrypt(nonce, plaintext.encode(), subject_id.encode())
    return "pii1:" + base64.b64encode(nonce + box).decode()


@pytest.fixture(params=["memory", "postgres"])
def contract(request: pytest.FixtureRequest) -> Iterator[Contract]:
    if request.param == "memory":
        store = memory_store()
        database = memory_of(store)
        yield Contract(
            PersonalDataVault.in_memory(database, MemoryKeyEncryptionKeys()), store, None, database
        )
        return
    settings = request.getfixturevalue("settings")
    store = EventStore(settings)
    pool = ConnectionPool(settings.postgres_url, min_size=1, max_size=4, open=True)
    try:
        yield Contract(build_vault(settings, pool), store, pool, None)
    finally:
        pool.close()
        store.close()


def test_a_sealed_value_opens_for_its_subject_and_shows_nothing(contract: Contract) -> None:
    sealed = contract.vault.seal("alice", '[{"name": "Ada Lovelace"}]')

    assert sealed.startswith("pii2:")
    assert is_sealed(sealed)
    assert "Ada" not in sealed
    assert contract.vault.open("alice", sealed) == '[{"name": "Ada Lovelace"}]'
    assert contract.fresh_vault().open("alice", sealed) == '[{"name": "Ada Lovelace"}]'


def test_one_subject_keeps_one_key_until_erased(contract: Contract) -> None:
    first = contract.vault.seal("alice", "a")
    second = contract.fresh_vault().seal("alice", "b")
    other = contract.vault.seal("bob", "c")

    assert first.split(":")[1] == second.split(":")[1]
    assert other.split(":")[1] != first.split(":")[1]


def test_a_value_of_one_subject_does_not_open_for_another(contract: Contract) -> None:
    sealed = contract.vault.seal("alice", "secret")
    contract.vault.seal("bob", "bob's")

    with pytest.raises(SealedDataError):
        contract.vault.open("bob", sealed)
    with pytest.raises(SealedDataError):
        contract.fresh_vault().open("bob", sealed)


@pytest.mark.parametrize(
    "value",
    ["plain text", "pii2:", "pii2:zz:AAAA", f"pii2:{UNKNOWN_KEY.hex}:AAAA", "pii1:!!"],
)
def test_what_is_not_a_sealed_value_is_refused(contract: Contract, value: str) -> None:
    with pytest.raises(SealedDataError):
        contract.vault.open("alice", value)


def test_an_altered_value_is_refused(contract: Contract) -> None:
    sealed = contract.vault.seal("alice", "secret")
    head, _, body = sealed.rpartition(":")
    raw = bytearray(base64.b64decode(body))
    raw[-1] ^= 1

    with pytest.raises(SealedDataError):
        contract.vault.open("alice", f"{head}:{base64.b64encode(raw).decode()}")


def test_after_an_erasure_every_value_of_the_subject_reads_erased_everywhere(
    contract: Contract,
) -> None:
    elsewhere = contract.fresh_vault()
    sealed = contract.vault.seal("alice", "Ada")
    kept = contract.vault.seal("bob", "Bob")
    assert elsewhere.open("alice", sealed) == "Ada"  # cached there

    contract.vault.erase("alice")
    elsewhere.forget("alice")

    assert contract.vault.open("alice", sealed) == ERASED
    assert elsewhere.open("alice", sealed) == ERASED
    assert contract.fresh_vault().open("alice", sealed) == ERASED
    assert contract.vault.open("bob", kept) == "Bob"


def test_sealing_after_an_erasure_makes_a_new_key_and_the_old_values_stay_erased(
    contract: Contract,
) -> None:
    before = contract.vault.seal("alice", "old booking")
    stale = contract.fresh_vault()
    assert stale.open("alice", before) == "old booking"
    contract.vault.erase("alice")

    after = stale.seal("alice", "new booking")  # another process, erased a moment ago

    assert after.split(":")[1] != before.split(":")[1]
    assert contract.vault.open("alice", after) == "new booking"
    assert contract.fresh_vault().open("alice", before) == ERASED
    assert contract.fresh_vault().open("alice", after) == "new booking"


def test_erasing_twice_or_a_subject_without_keys_changes_nothing(contract: Contract) -> None:
    sealed = contract.vault.seal("alice", "Ada")
    contract.vault.erase("alice")
    contract.vault.erase("alice")
    contract.vault.erase("nobody")

    assert contract.vault.open("alice", sealed) == ERASED


def test_the_erasure_row_erases_with_the_events_of_its_transaction(contract: Contract) -> None:
    sealed = contract.vault.seal("alice", "Ada")
    booking = a_booking(uuid.uuid4(), customer="alice", sealed=sealed)

    with recording(actor="dpo"):
        contract.store.bookings.record(booking, rows=[contract.vault.erasure_row("alice")])

    assert contract.fresh_vault().open("alice", sealed) == ERASED


def test_the_erasure_row_rolls_back_with_its_transaction(contract: Contract) -> None:
    sealed = contract.vault.seal("alice", "Ada")
    booking = a_booking(uuid.uuid4(), customer="alice", sealed=sealed)
    with recording(actor="alice"):
        contract.store.bookings.record(booking)
    clash = a_booking(uuid.uuid4(), customer="alice", sealed=sealed, booking_id=booking.id)

    with pytest.raises(IntegrityError), recording(actor="dpo"):
        contract.store.bookings.record(clash, rows=[contract.vault.erasure_row("alice")])

    assert contract.fresh_vault().open("alice", sealed) == "Ada"


@pytest.mark.parametrize("erased_since", [True, False], ids=["erased-since", "live"])
def test_a_transaction_is_stored_only_if_the_keys_it_was_sealed_under_are_still_live(
    contract: Contract, erased_since: bool
) -> None:
    sealed = contract.vault.seal("alice", "Ada")
    key_id = contract.vault.key_id_of(sealed)
    assert key_id is not None
    if erased_since:
        contract.fresh_vault().erase("alice")  # another process's erasure commits in between
    booking = a_booking(uuid.uuid4(), customer="alice", sealed=sealed)
    refused: AbstractContextManager[object] = (
        pytest.raises(SealedUnderErasedKeyError) if erased_since else nullcontext()
    )

    with refused, recording(actor="alice"):
        contract.store.bookings.record(booking, guards=[LiveKeysGuard((key_id,))])

    assert (contract.store.bookings.find_booking(booking.id) is None) is erased_since
    assert contract.vault.is_erased("alice", sealed) is erased_since


def test_a_legacy_value_opens_with_its_subjects_old_key_until_erased(
    contract: Contract,
) -> None:
    key = contract.plant_legacy_key("carol")
    legacy = legacy_seal(key, "carol", '[{"name": "Grace Hopper"}]')

    assert is_sealed(legacy)
    assert contract.vault.open("carol", legacy) == '[{"name": "Grace Hopper"}]'
    new = contract.vault.seal("carol", "new")  # new values get a data key of their own
    assert new.startswith("pii2:")
    contract.plant_legacy_key("dave")
    with pytest.raises(SealedDataError):
        contract.vault.open("dave", legacy)

    with recording(actor="dpo"):
        contract.store.bookings.record(
            a_booking(uuid.uuid4(), customer="carol"),
            rows=[contract.vault.erasure_row("carol")],
        )

    assert contract.fresh_vault().open("carol", legacy) == ERASED
    assert contract.fresh_vault().open("carol", new) == ERASED


def test_a_legacy_value_of_a_subject_without_a_key_reads_erased(contract: Contract) -> None:
    legacy = legacy_seal(AESGCM.generate_key(bit_length=256), "erin", "x")

    assert contract.vault.open("erin", legacy) == ERASED


def test_a_new_subjects_key_is_stored_with_the_first_values_sealed_under_it(
    contract: Contract,
) -> None:
    sealer = contract.vault.sealer("frank")
    assert sealer.new_key is not None
    sealed = sealer.seal("Frank")
    assert contract.vault.keys.live("frank") is None  # nothing stored yet

    with recording(actor="frank"):
        contract.store.bookings.record(
            a_booking(uuid.uuid4(), customer="frank", sealed=sealed), rows=[sealer.new_key]
        )
    contract.vault.stored(sealer)

    assert contract.fresh_vault().open("frank", sealed) == "Frank"
    again = contract.vault.sealer("frank")
    assert (again.key_id, again.new_key) == (sealer.key_id, None)
    assert contract.fresh_vault().sealer("frank").key_id == sealer.key_id


def test_a_new_key_whose_transaction_failed_leaves_nothing_behind(contract: Contract) -> None:
    booking = a_booking(uuid.uuid4(), customer="grace")
    with recording(actor="grace"):
        contract.store.bookings.record(booking)
    sealer = contract.vault.sealer("grace")
    assert sealer.new_key is not None
    clash = a_booking(uuid.uuid4(), customer="grace", booking_id=booking.id)

    with pytest.raises(IntegrityError), recording(actor="grace"):
        contract.store.bookings.record(clash, rows=[sealer.new_key])

    assert contract.vault.keys.live("grace") is None
    retry = contract.vault.sealer("grace")
    assert retry.new_key is not None
    assert retry.key_id != sealer.key_id


def test_of_two_new_keys_for_one_subject_the_second_is_refused(contract: Contract) -> None:
    first = contract.vault.sealer("heidi")
    second = contract.fresh_vault().sealer("heidi")  # another process, at the same moment
    assert first.new_key is not None
    assert second.new_key is not None
    with recording(actor="heidi"):
        contract.store.bookings.record(
            a_booking(uuid.uuid4(), customer="heidi"), rows=[first.new_key]
        )

    late = a_booking(uuid.uuid4(), customer="heidi", sealed=second.seal("Heidi"))
    with pytest.raises(IntegrityError), recording(actor="heidi"):
        contract.store.bookings.record(late, rows=[second.new_key])

    assert contract.store.bookings.find_booking(late.id) is None
    assert contract.fresh_vault().sealer("heidi").key_id == first.key_id
