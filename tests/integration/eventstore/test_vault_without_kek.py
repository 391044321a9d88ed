"""A copy of the database without the key-encryption key opens no sealed field.

The copy is a real one (``CREATE DATABASE ... TEMPLATE``, what a dump and restore gives):
with the KEK it opens everything, so nothing is missing from it but the KEK; without it
no value opens, and no bytes anywhere in the ``pii`` tables work as a key.
"""

from __future__ import annotations

import base64
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from psycopg_pool import ConnectionPool

from flightbook.config.settings import Settings
from flightbook.eventstore.keks import FileKeyEncryptionKeys, KeyEncryptionKeyError
from flightbook.eventstore.pii import PersonalDataVault, PostgresDataKeys, SealedDataError
from flightbook.eventstore.rotation import rotate_kek
from tests.support.sealed import opens_with_a_window_of

pytestmark = pytest.mark.integration


def _with_database(url: str, name: str) -> str:
    base, _, query = url.partition("?")
    return base.rsplit("/", 1)[0] + f"/{name}" + (f"?{query}" if query else "")


@pytest.fixture
def copied(settings: Settings) -> Iterator[tuple[str, str]]:
    """``(original url, url of its copy)``; the copy is made by ``make_copy``."""
    assert settings.postgres_url is not None
    name = f"copy_{uuid.uuid4().hex[:10]}"
    yield settings.postgres_url, _with_database(settings.postgres_url, name)
    with psycopg.connect(_with_database(settings.postgres_url, "postgres"), autocommit=True) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def make_copy(original: str, copy: str) -> None:
    source = original.partition("?")[0].rsplit("/", 1)[1]
    target = copy.partition("?")[0].rsplit("/", 1)[1]
    with psycopg.connect(_with_database(original, "postgres"), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{target}" TEMPLATE "{source}"')


def test_a_copy_of_the_database_without_the_kek_opens_no_sealed_field(
    copied: tuple[str, str], tmp_path: Path
) -> None:
    original, copy = copied
    kek_file = tmp_path / "kek.json"
    FileKeyEncryptionKeys.create(kek_file)
    sealed: dict[str, tuple[str, str]] = {}
    with ConnectionPool(original, min_size=1, max_size=2) as pool:
        with pool.connection() as conn:  # a customer from before the key hierarchy
            key = AESGCM.generate_key(bit_length=256)
            conn.execute(
                "INSERT INTO pii.subject_keys (subject_id, key) VALUES ('old', %s)", (key,)
            )
        nonce = os.urandom(12)
        box = AESGCM(key).encrypt(nonce, b"Grace Hopper", b"old")
        sealed["old"] = ("pii1:" + base64.b64encode(nonce + box).decode(), "Grace Hopper")
        vault = PersonalDataVault.in_postgres(pool, FileKeyEncryptionKeys(kek_file))
        for n in range(5):
            sealed[f"c{n}"] = (vault.seal(f"c{n}", f"Ada Lovelace {n}"), f"Ada Lovelace {n}")
        rotate_kek(PostgresDataKeys(pool), FileKeyEncryptionKeys(kek_file))  # wraps "old"
    make_copy(original, copy)
    other_kek = tmp_path / "other.json"
    FileKeyEncryptionKeys.create(other_kek)

    with ConnectionPool(copy, min_size=1, max_size=2) as pool:
        with_kek = PersonalDataVault.in_postgres(pool, FileKeyEncryptionKeys(kek_file))
        without = PersonalDataVault.in_postgres(pool, FileKeyEncryptionKeys(other_kek))
        opened = {s: with_kek.open(s, value) for s, (value, _) in sealed.items()}
        refused = []
        for subject, (value, _) in sealed.items():
            with pytest.raises(KeyEncryptionKeyError):
                without.open(subject, value)
            refused.append(subject)
        blobs = _pii_bytes(pool)

    assert opened == {s: text for s, (_, text) in sealed.items()}  # only the KEK is missing
    assert refused == list(sealed)
    assert blobs  # the wrapped keys are there...
    for subject, (value, _) in sealed.items():  # ...and no bytes of them work as a key
        assert not any(opens_with_a_window_of(b, subject, value) for b in blobs), subject


def _pii_bytes(pool: ConnectionPool) -> list[bytes]:
    """Every bytea value of every table of the ``pii`` schema."""
    found: list[bytes] = []
    with pool.connection() as conn:
        columns = conn.execute(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_schema = 'pii' AND data_type = 'bytea'"
        ).fetchall()
        for table, column in columns:
            rows = conn.execute(
                psycopg.sql.SQL("SELECT {} FROM {}").format(
                    psycopg.sql.Identifier(column), psycopg.sql.Identifier("pii", table)
                )
            ).fetchall()
            found += [bytes(row[0]) for row in rows if row[0] is not None]
    return found


def test_a_sealed_value_under_a_key_the_copy_lacks_is_refused(
    settings: Settings, tmp_path: Path
) -> None:
    kek_file = tmp_path / "kek.json"
    FileKeyEncryptionKeys.create(kek_file)
    assert settings.postgres_url is not None
    with ConnectionPool(settings.postgres_url, min_size=1, max_size=2) as pool:
        vault = PersonalDataVault.in_postgres(pool, FileKeyEncryptionKeys(kek_file))
        stray = f"pii2:{uuid.uuid4().hex}:" + base64.b64encode(os.urandom(40)).decode()

        with pytest.raises(SealedDataError, match="does not have"):
            vault.open("alice", stray)
