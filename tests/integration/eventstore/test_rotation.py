"""Rotating the key-encryption key on PostgreSQL: with sealing going on, after a stop,
legacy raw keys wrapped, old KEKs retired only when nothing uses them, the log untouched."""

from __future__ import annotations

import base64
import json
import os
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from psycopg_pool import ConnectionPool

from flightbook.config.settings import Settings
from flightbook.eventstore.keks import FileKeyEncryptionKeys
from flightbook.eventstore.metadata import recording
from flightbook.eventstore.pii import PersonalDataVault, PostgresDataKeys
from flightbook.eventstore.rotation import KekRotationError, retire_old_keks, rotate_kek
from tests.support.builders import a_booking
from tests.support.cli import run_cli, use_settings
from tests.support.writeside import WriteSide

pytestmark = pytest.mark.integration

EVENT_TABLES = ("booking.bookings_events", "inventory.inventory_events", "payment.payments_events")


@pytest.fixture
def pool(settings: Settings) -> Iterator[ConnectionPool]:
    assert settings.postgres_url is not None
    with ConnectionPool(settings.postgres_url, min_size=1, max_size=8) as opened:
        yield opened


@pytest.fixture
def kek_file(tmp_path: Path) -> Path:
    path = tmp_path / "kek.json"
    FileKeyEncryptionKeys.create(path)
    return path


def a_process(pool: ConnectionPool, kek_file: Path) -> PersonalDataVault:
    """The vault a process has: its own read of the KEK file, nothing cached."""
    return PersonalDataVault.in_postgres(pool, FileKeyEncryptionKeys(kek_file))


Sealed = dict[str, tuple[str, str]]
"""subject -> (sealed value, its plaintext)"""


def seal_many(vault: PersonalDataVault, count: int, prefix: str = "c") -> Sealed:
    plain = {f"{prefix}{n}": f"passenger {n}" for n in range(count)}
    return {subject: (vault.seal(subject, text), text) for subject, text in plain.items()}


def assert_all_open(vault: PersonalDataVault, sealed: Sealed) -> None:
    opened = {subject: vault.open(subject, value) for subject, (value, _) in sealed.items()}
    assert opened == {subject: text for subject, (_, text) in sealed.items()}


def test_a_rotation_rewraps_every_key_under_a_new_kek_and_every_value_still_opens(
    pool: ConnectionPool, kek_file: Path
) -> None:
    sealed = seal_many(a_process(pool, kek_file), 7)
    keks = FileKeyEncryptionKeys(kek_file)
    old = keks.current_id
    lines: list[str] = []

    result = rotate_kek(PostgresDataKeys(pool), keks, batch_size=3, say=lines.append)

    assert result.new
    assert result.kek_id != old
    assert (result.rewrapped, result.remaining) == (7, 0)
    with pool.connection() as conn:
        used = conn.execute("SELECT DISTINCT kek_id FROM pii.data_keys").fetchall()
    assert used == [(result.kek_id,)]
    assert set(keks.ids) == {old, result.kek_id}  # the old KEK stays until --retire-old
    assert_all_open(a_process(pool, kek_file), sealed)
    assert any("rewrapped 7 of 7" in line for line in lines)


def test_a_rotation_with_sealing_going_on_loses_nothing(
    pool: ConnectionPool, kek_file: Path
) -> None:
    before = seal_many(a_process(pool, kek_file), 40)
    sealed: Sealed = {}
    stop = threading.Event()
    errors: list[BaseException] = []

    def keep_sealing(worker: int) -> None:
        vault = a_process(pool, kek_file)  # each thread a process of its own
        n = 0
        try:
            while not stop.is_set() or n < 5:
                subject = f"w{worker}-{n}"
                sealed[subject] = (vault.seal(subject, f"passenger {n}"), f"passenger {n}")
                n += 1
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=keep_sealing, args=(w,)) for w in range(3)]
    for thread in threads:
        thread.start()
    try:
        keys, keks = PostgresDataKeys(pool), FileKeyEncryptionKeys(kek_file)
        result = rotate_kek(keys, keks, batch_size=5)
    finally:
        stop.set()
        for thread in threads:
            thread.join(60)

    assert errors == []
    assert result.rewrapped >= 40
    if keys.counts(result.kek_id).under_other_kek:  # wrapped under the old KEK at that moment
        assert not rotate_kek(keys, keks).new  # run again: it resumes
    retire_old_keks(keys, keks)
    assert keks.ids == (result.kek_id,)
    assert_all_open(a_process(pool, kek_file), {**before, **sealed})


def test_a_stopped_rotation_resumes_and_old_keks_retire_only_after_it(
    pool: ConnectionPool, kek_file: Path
) -> None:
    sealed = seal_many(a_process(pool, kek_file), 10)
    keys, keks = PostgresDataKeys(pool), FileKeyEncryptionKeys(kek_file)
    old = keks.current_id

    stopped = rotate_kek(keys, keks, batch_size=3, stop_after_batches=2)

    assert (stopped.new, stopped.rewrapped, stopped.remaining) == (True, 6, 4)
    assert_all_open(a_process(pool, kek_file), sealed)  # half under each KEK: both open
    with pytest.raises(KekRotationError, match="4 key"):
        retire_old_keks(keys, keks)
    assert old in keks.ids

    resumed = rotate_kek(keys, keks, batch_size=3)

    assert (resumed.new, resumed.kek_id, resumed.rewrapped, resumed.remaining) == (
        False,
        stopped.kek_id,
        4,
        0,
    )
    assert retire_old_keks(keys, keks) == [old]
    assert_all_open(a_process(pool, kek_file), sealed)


def test_a_second_rotation_at_the_same_time_is_refused(
    pool: ConnectionPool, kek_file: Path
) -> None:
    from flightbook.eventstore.pii import RotationRunningError

    keys = PostgresDataKeys(pool)
    with keys.exclusive(), pytest.raises(RotationRunningError):
        rotate_kek(PostgresDataKeys(pool), FileKeyEncryptionKeys(kek_file))


def test_a_rotation_wraps_the_legacy_raw_keys_and_their_values_still_open(
    pool: ConnectionPool, kek_file: Path
) -> None:
    legacy: Sealed = {}
    with pool.connection() as conn:
        for n in range(3):
            key = AESGCM.generate_key(bit_length=256)
            conn.execute(
                "INSERT INTO pii.subject_keys (subject_id, key) VALUES (%s, %s)", (f"l{n}", key)
            )
            nonce = os.urandom(12)
            box = AESGCM(key).encrypt(nonce, f"passenger {n}".encode(), f"l{n}".encode())
            legacy[f"l{n}"] = ("pii1:" + base64.b64encode(nonce + box).decode(), f"passenger {n}")
    keys, keks = PostgresDataKeys(pool), FileKeyEncryptionKeys(kek_file)

    result = rotate_kek(keys, keks)

    assert result.rewrapped == 3
    with pool.connection() as conn:
        rows = conn.execute("SELECT key, kek_id FROM pii.subject_keys").fetchall()
    assert rows == [(None, result.kek_id)] * 3
    assert_all_open(a_process(pool, kek_file), legacy)


def test_a_rotation_never_touches_the_event_log(
    pool: ConnectionPool, kek_file: Path, write_side: WriteSide
) -> None:
    vault = a_process(pool, kek_file)
    with recording(actor="alice"):
        for n in range(3):
            write_side.bookings.record(
                a_booking(uuid.uuid4(), customer=f"c{n}", sealed=vault.seal(f"c{n}", "Ada"))
            )
    log_before = _log(pool)

    rotate_kek(PostgresDataKeys(pool), FileKeyEncryptionKeys(kek_file))

    assert _log(pool) == log_before


def _log(pool: ConnectionPool) -> list[tuple[object, ...]]:
    with pool.connection() as conn:
        return [
            tuple(row)
            for table in EVENT_TABLES
            for row in conn.execute(
                f"SELECT * FROM {table} ORDER BY notification_id"  # noqa: S608 - constants
            ).fetchall()
        ]


# -- the command line -------------------------------------------------------------------------


@pytest.fixture
def cli_env(settings: Settings, kek_file: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The CLI's environment: the test's settings with the test's own KEK file."""
    return use_settings(msgspec.structs.replace(settings, kek_file=str(kek_file)), monkeypatch)


def test_the_cli_rotates_shows_progress_and_retires_the_old_kek_afterwards(
    pool: ConnectionPool, kek_file: Path, cli_env: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    sealed = seal_many(a_process(pool, kek_file), 5)
    old = FileKeyEncryptionKeys(kek_file).current_id

    code, out, err = run_cli(capsys, "privacy", "rotate-kek", "--batch-size", "2")

    assert code == 0
    assert out.startswith("rewrapped 5 key(s) under key-encryption key ")
    assert "rewrapped 4 of 5 key(s)" in err
    secrets = json.loads(kek_file.read_text())["keys"].values()
    assert not any(secret in out + err for secret in secrets)
    code, out, err = run_cli(capsys, "privacy", "rotate-kek", "--retire-old")
    assert code == 0, err
    assert old not in FileKeyEncryptionKeys(kek_file).ids
    assert_all_open(a_process(pool, kek_file), sealed)


def test_the_cli_refuses_to_retire_while_keys_use_the_old_kek(
    pool: ConnectionPool, kek_file: Path, cli_env: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    seal_many(a_process(pool, kek_file), 3)
    keks = FileKeyEncryptionKeys(kek_file)
    old = keks.current_id
    rotate_kek(PostgresDataKeys(pool), keks, batch_size=1, stop_after_batches=1)

    code, out, err = run_cli(capsys, "privacy", "rotate-kek", "--retire-old")

    assert code == 1
    assert out == ""
    assert err.count("\n") == 1
    assert "2 key(s) still use an older key-encryption key" in err
    assert old in FileKeyEncryptionKeys(kek_file).ids


def test_the_cli_without_a_kek_file_off_the_local_stack_fails_in_one_line(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    use_settings(settings, monkeypatch)
    monkeypatch.delenv("FLIGHTBOOK_KEK_FILE", raising=False)
    monkeypatch.setenv("FLIGHTBOOK_HOST", "0.0.0.0")  # noqa: S104 - off the local stack

    code, _, err = run_cli(capsys, "privacy", "rotate-kek")

    assert code != 0
    assert err.count("\n") == 1
    assert "FLIGHTBOOK_KEK_FILE is not set" in err
