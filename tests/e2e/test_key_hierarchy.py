"""The key hierarchy seen from outside: a database copy without the KEK, a KEK rotation live.

- A copy of the database (``pg_dump`` restored elsewhere, as a backup would be) holds no
  sealed field that opens without the key-encryption key: not with another KEK file, not
  through the command line, and neither the data keys nor the KEK are in it in any form.
  With the KEK the same copy opens every field, so it is the KEK that is missing.
- Rotating the KEK (``flightbook privacy rotate-kek``) while the running system takes
  bookings loses nothing: every accepted booking reaches its final state, every sealed
  field (passengers and payment tokens, old and new) opens with the new KEK alone once
  the old one is retired, and the read models agree with the log.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import msgspec
import psycopg
import pymongo
import pytest
import redis
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from psycopg_pool import ConnectionPool

from flightbook.audit.log import EventLog
from flightbook.config.settings import Settings
from flightbook.eventstore.keks import FileKeyEncryptionKeys, KeyEncryptionKeyError
from flightbook.eventstore.metadata import recording
from flightbook.eventstore.pii import ERASED, PersonalDataVault, SealedDataError, is_sealed
from flightbook.http.tokens import mint_token
from flightbook.stack.servers import KIND_BY_NAME, Postgres
from tests.support.api import fare_body, flight_body
from tests.support.builders import a_booking
from tests.support.pipeline import fast, final_bookings, wait_for_read_models, wait_until
from tests.support.scan import Needles, scan_files, scan_postgres
from tests.support.system import FINAL, RunningSystem, eventually, flightbook, running_system
from tests.support.threads import Background
from tests.support.writeside import WriteSide

pytestmark = pytest.mark.e2e


@pytest.fixture
def kek_settings(settings: Settings, tmp_path: Path) -> Settings:
    """The test's settings with a KEK file of its own (a rotation must not touch others')."""
    path = tmp_path / "secrets" / "kek.json"
    FileKeyEncryptionKeys.create(path)
    return msgspec.structs.replace(settings, kek_file=str(path))


@pytest.fixture
def system(kek_settings: Settings, tmp_path: Path) -> Iterator[RunningSystem]:
    with running_system(fast(kek_settings, query_wait_seconds=20.0), tmp_path) as up:
        yield up


def sealed_fields(url: str) -> list[tuple[str, str, str, str]]:
    """``(booking id, field, customer, sealed text)`` of every sealed field of the booking log."""
    found = []
    with EventLog(url) as log:
        for notification in log.stream("booking", start=1, stop=log.head("booking")):
            record = log.record("booking", notification)
            customer = record.payload.get("customer_id")
            for field, value in record.payload.items():
                if is_sealed(value):
                    assert isinstance(customer, str), record
                    found.append((str(record.aggregate_id), field, customer, str(value)))
    return found


def open_all(
    url: str, path: Path, fields: list[tuple[str, str, str, str]]
) -> list[str | BaseException]:
    """Each field opened by a vault on ``url`` with the KEK file at ``path`` (or its error)."""
    opened: list[str | BaseException] = []
    with ConnectionPool(url, min_size=1, max_size=2) as pool:
        vault = PersonalDataVault.in_postgres(pool, FileKeyEncryptionKeys(path))
        for _, _, customer, sealed in fields:
            try:
                opened.append(vault.open(customer, sealed))
            except (KeyEncryptionKeyError, SealedDataError) as exc:
                opened.append(exc)
    return opened


# -- a copy of the database without the KEK -----------------------------------------------------

LEGACY_CUSTOMER = "cust-before-17"
LEGACY_PASSENGERS = [{"name": "Wilhelmina Oakenshott", "email": "w.oakenshott@legacy.example"}]


def seal_as_before_17(settings: Settings, write_side: WriteSide, flight_id: uuid.UUID) -> bytes:
    """A customer of the old scheme: a raw key in ``pii.subject_keys``, a ``pii1:`` booking."""
    assert settings.postgres_url is not None
    key = AESGCM.generate_key(bit_length=256)
    nonce = os.urandom(12)
    plain = json.dumps(LEGACY_PASSENGERS).encode()
    box = AESGCM(key).encrypt(nonce, plain, LEGACY_CUSTOMER.encode())
    sealed = "pii1:" + base64.b64encode(nonce + box).decode()
    with psycopg.connect(settings.postgres_url) as conn:
        conn.execute(
            "INSERT INTO pii.subject_keys (subject_id, key) VALUES (%s, %s)",
            (LEGACY_CUSTOMER, key),
        )
    with recording(actor=LEGACY_CUSTOMER):
        write_side.bookings.record(
            a_booking(flight_id, customer=LEGACY_CUSTOMER, sealed=sealed, token="tok_ok")
        )
    return key


def dump_and_restore(url: str, copy: str, dump: Path) -> str:
    """``pg_dump`` of the database at ``url`` restored as database ``copy``; the copy's URL."""
    postgres = KIND_BY_NAME["postgres"]
    assert isinstance(postgres, Postgres)
    programs = postgres._bin("pg_dump").parent  # the stack's own binaries, of its version
    subprocess.run(
        [str(programs / "pg_dump"), "--format=custom", f"--file={dump}", url], check=True
    )
    base, _, _ = url.rpartition("/")
    with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{copy}"')
    copy_url = f"{base}/{copy}"
    subprocess.run(
        [str(programs / "pg_restore"), "--no-owner", f"--dbname={copy_url}", str(dump)],
        check=True,
    )
    return copy_url


@pytest.fixture
def copy_name(settings: Settings) -> Iterator[str]:
    assert settings.postgres_url is not None
    name = f"copy_{uuid.uuid4().hex[:10]}"
    yield name
    base, _, _ = settings.postgres_url.rpartition("/")
    with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_a_copy_of_the_database_without_the_kek_opens_no_sealed_field(
    kek_settings: Settings, write_side: WriteSide, tmp_path: Path, copy_name: str
) -> None:
    """Bookings sealed through the command API, plus one customer of the old scheme (raw key
    in the database, wrapped by ``rotate-kek``); then the database is dumped and restored."""
    settings = kek_settings
    assert settings.postgres_url is not None
    logs = tmp_path / "logs"
    logs.mkdir()
    api = RunningSystem(fast(settings), logs)
    command_api = api.processes["command-api"]
    command_api.start()
    try:
        command_api.wait_ready()
        ops = api.command_caller("olga", "ops")
        flight = ops.post("/flights", flight_body(fares=[fare_body(seats=50)]))
        assert flight.status_code == 201, flight.text
        flight_id = flight.json()["flight_id"]
        sent: dict[str, tuple[list[dict[str, str]], str]] = {}
        for n in range(6):
            customer = api.command_caller(f"cust-copy-{n % 3}", "customer")
            passengers = [{"name": f"Evander Copperfield {n}", "email": f"evander{n}@copy.example"}]
            token = f"tok_ok_copytest{n}{uuid.uuid4().hex[:8]}"
            sent[api.book(customer, flight_id, passengers, token)] = (passengers, token)
    finally:
        api.stop()
    legacy_key = seal_as_before_17(settings, write_side, uuid.UUID(flight_id))
    rotated = flightbook(settings, "privacy", "rotate-kek")
    assert rotated.returncode == 0, rotated.stderr
    kek_path = Path(str(settings.kek_file))
    keks = FileKeyEncryptionKeys(kek_path)
    kek_file = json.loads(kek_path.read_text())
    with psycopg.connect(settings.postgres_url) as conn:
        data_keys = [
            keks.unwrap(str(kek_id), str(key_id), bytes(wrapped))
            for key_id, kek_id, wrapped in conn.execute(
                "SELECT key_id, kek_id, wrapped FROM pii.data_keys WHERE wrapped IS NOT NULL"
            )
        ]
    write_side.store.close()

    copy_url = dump_and_restore(settings.postgres_url, copy_name, tmp_path / "backup.dump")
    fields = sealed_fields(copy_url)
    with_kek = open_all(copy_url, kek_path, fields)
    stranger = tmp_path / "elsewhere" / "kek.json"
    FileKeyEncryptionKeys.create(stranger)  # someone with the copy makes a KEK file of their own
    same_id = tmp_path / "forged" / "kek.json"
    same_id.parent.mkdir()
    same_id.write_text(
        json.dumps(
            {
                "current": kek_file["current"],
                "keys": {
                    kek_id: base64.b64encode(os.urandom(32)).decode() for kek_id in kek_file["keys"]
                },
            }
        )
    )
    without_kek = open_all(copy_url, stranger, fields) + open_all(copy_url, same_id, fields)
    on_the_copy = msgspec.structs.replace(settings, postgres_url=copy_url, kek_file=str(stranger))
    exported = flightbook(
        on_the_copy, "privacy", "export", "cust-copy-0", "--output", str(tmp_path / "export.json")
    )
    auditor = mint_token(settings, subject="ada-auditor", roles=["auditor"])
    history = flightbook(
        on_the_copy,
        "audit",
        "history",
        next(iter(sent)),
        "--show-personal-data",
        "--token",
        auditor,
        "--format",
        "json",
    )

    expected: dict[tuple[str, str], object] = {}
    for booking_id, (passengers, token) in sent.items():
        expected[(booking_id, "passengers")] = passengers
        expected[(booking_id, "payment_token")] = token
    plaintexts = {json.dumps(p) for p, _ in sent.values()} | {t for _, t in sent.values()}
    plaintexts.add(json.dumps(LEGACY_PASSENGERS))
    assert all(isinstance(o, str) for o in with_kek), with_kek
    opened = {
        (booking_id, field): json.loads(str(o)) if field == "passengers" else o
        for (booking_id, field, _, _), o in zip(fields, with_kek, strict=True)
    }
    legacy = [
        k
        for k, (_, _, customer, _) in zip(opened, fields, strict=True)
        if customer == LEGACY_CUSTOMER
    ]
    assert [opened.pop(k) for k in legacy] == [LEGACY_PASSENGERS]  # its token was stored plain
    assert opened == expected
    assert [o for o in without_kek if isinstance(o, str) and o != ERASED] == []
    assert all(isinstance(o, KeyEncryptionKeyError) for o in without_kek), without_kek
    for refused in (exported, history):  # one line naming the missing KEK, no data
        assert refused.returncode == 1, refused.stdout + refused.stderr
        assert "FLIGHTBOOK_KEK_FILE" in refused.stderr.splitlines()[-1]
    outputs = exported.stdout + exported.stderr + history.stdout + history.stderr
    if (tmp_path / "export.json").exists():
        outputs += (tmp_path / "export.json").read_text()
    assert not [p for p in plaintexts if p in outputs]
    assert not any(p["name"] in outputs for ps, _ in sent.values() for p in ps)
    secrets_in_copy = Needles(
        {
            **{f"data key {n}": key for n, key in enumerate(data_keys)},
            "the legacy raw key": legacy_key,
            **{
                f"KEK {kek_id}": base64.b64decode(value)
                for kek_id, value in kek_file["keys"].items()
            },
            **{f"KEK {kek_id} (base64)": value for kek_id, value in kek_file["keys"].items()},
            **{f"passenger of {b}": p[0]["name"] for b, (p, _) in sent.items()},
            **{f"token of {b}": t for b, (_, t) in sent.items()},
        }
    )
    in_tables, _ = scan_postgres(copy_url, secrets_in_copy)
    in_dump = scan_files([tmp_path / "backup.dump"], secrets_in_copy, store="pg_dump")
    assert len(data_keys) == 3 + 0  # the three customers; the legacy key stays in subject_keys
    assert [str(f) for f in in_tables + in_dump] == []


# -- rotating the KEK while the system books ----------------------------------------------------


class Booker(Background):
    """Customers booking through the command API in a thread until told to stop."""

    def __init__(self, system: RunningSystem, flight_id: str, customers: int) -> None:
        self.system = system
        self.flight_id = flight_id
        self.customers = [
            system.command_caller(f"cust-rot-{n}", "customer") for n in range(customers)
        ]
        self.sent: dict[str, tuple[str, list[dict[str, str]], str]] = {}
        self.errors: list[str] = []
        self.capped = 0
        super().__init__("booker")

    def stop(self) -> None:
        self.halt(60)

    def work(self) -> None:
        n = 0
        while not self.stopping:
            customer = self.customers[n % len(self.customers)]
            passengers = [{"name": f"Rotating Passenger {n}", "email": f"rot{n}@kek.example"}]
            token = f"tok_ok_rotation{n}x{uuid.uuid4().hex[:6]}"
            answer = customer.post(
                "/bookings",
                {
                    "flight_id": self.flight_id,
                    "fare": "Y",
                    "passengers": passengers,
                    "payment_token": token,
                },
                **{"Idempotency-Key": str(uuid.uuid4())},
            )
            if answer.status_code == 202:
                self.sent[answer.json()["booking_id"]] = (customer.subject, passengers, token)
            elif answer.status_code == 409 and answer.json().get("cap") == "bookings_in_progress":
                self.capped += 1  # the customer has 5 bookings in progress: a normal answer
            else:
                self.errors.append(f"{answer.status_code} {answer.text}")
            n += 1


def other_customers(settings: Settings, kek_path: Path, count: int) -> dict[str, str]:
    """``count`` more customers' data keys, so that the rotation takes many batches while the
    bookings go on; a value sealed for one in ten of them (subject -> sealed)."""
    assert settings.postgres_url is not None
    keks = FileKeyEncryptionKeys(kek_path)
    rows = []
    for n in range(count):
        key_id = uuid.uuid4()
        kek_id, wrapped = keks.wrap(str(key_id), AESGCM.generate_key(bit_length=256))
        rows.append((key_id, f"cust-other-{n}", wrapped, kek_id))
    with psycopg.connect(settings.postgres_url) as conn, conn.cursor() as cursor:
        cursor.executemany(
            "INSERT INTO pii.data_keys (key_id, subject_id, wrapped, kek_id) "
            "VALUES (%s, %s, %s, %s)",
            rows,
        )
    with ConnectionPool(settings.postgres_url, min_size=1, max_size=2) as pool:
        vault = PersonalDataVault.in_postgres(pool, keks)
        return {
            f"cust-other-{n}": vault.seal(f"cust-other-{n}", f"datum {n}")
            for n in range(0, count, 10)
        }


def test_rotating_the_kek_while_the_system_books_loses_nothing_and_every_field_still_opens(
    system: RunningSystem,
    mongo: pymongo.database.Database[dict[str, object]],
    cache: redis.Redis,
) -> None:
    settings = system.settings
    assert settings.postgres_url is not None
    kek_path = Path(str(settings.kek_file))
    old_kek = json.loads(kek_path.read_text())["current"]
    ops = system.command_caller("olga", "ops")
    flight = ops.post("/flights", flight_body(fares=[fare_body(seats=2000)]))
    assert flight.status_code == 201, flight.text
    others = other_customers(settings, kek_path, 3000)
    booker = Booker(system, flight.json()["flight_id"], customers=20).start()
    wait_until(lambda: len(booker.sent) >= 15, 60, "bookings before the rotation", pause=0.1)

    before_rotation = len(booker.sent)
    rotated = flightbook(settings, "privacy", "rotate-kek", "--batch-size", "50")
    after_rotation = len(booker.sent)
    wait_until(lambda: len(booker.sent) >= after_rotation + 15, 60, "bookings after it", 0.1)
    booker.stop()
    retired = flightbook(settings, "privacy", "rotate-kek", "--retire-old")
    reads = {c.subject: system.query_caller(c.subject, "customer") for c in booker.customers}
    eventually(
        lambda: final_bookings(settings),
        lambda final: set(booker.sent) <= set(final),
        within=90,
        what="every accepted booking final",
    )
    differences = wait_for_read_models(settings, mongo, cache, timeout=60)
    fields = sealed_fields(settings.postgres_url)
    opened = open_all(settings.postgres_url, kek_path, fields)
    kek_file = json.loads(kek_path.read_text())
    with psycopg.connect(settings.postgres_url) as conn:
        under = conn.execute(
            "SELECT kek_id, count(*) FROM pii.data_keys WHERE wrapped IS NOT NULL GROUP BY 1"
        ).fetchall()
    with ConnectionPool(settings.postgres_url, min_size=1, max_size=2) as pool:
        vault = PersonalDataVault.in_postgres(pool, FileKeyEncryptionKeys(kek_path))
        others_opened = {subject: vault.open(subject, sealed) for subject, sealed in others.items()}

    assert rotated.returncode == 0, rotated.stderr
    assert retired.returncode == 0, retired.stderr
    assert booker.errors == []
    assert set(final_bookings(settings).values()) == {"Confirmed"}
    assert differences == []
    assert old_kek not in kek_file["keys"]
    assert list(kek_file["keys"]) == [kek_file["current"]]
    assert after_rotation > before_rotation, "no booking was made while the rotation ran"
    assert dict(under) == {kek_file["current"]: len(booker.customers) + 3000}
    assert others_opened == {subject: f"datum {subject.rsplit('-', 1)[1]}" for subject in others}
    expected: dict[tuple[str, str], object] = {}
    for booking_id, (_, passengers, token) in booker.sent.items():
        expected[(booking_id, "passengers")] = passengers
        expected[(booking_id, "payment_token")] = token
    got = {
        (booking_id, field): json.loads(o) if field == "passengers" else o
        for (booking_id, field, _, _), o in zip(fields, opened, strict=True)
        if isinstance(o, str)
    }
    assert [o for o in opened if not isinstance(o, str)] == []
    assert got == expected
    some = list(booker.sent.items())[:: max(1, len(booker.sent) // 10)]
    for booking_id, (customer, passengers, _) in some:
        shown = reads[customer].get(f"/bookings/{booking_id}").json()
        assert shown["status"] in FINAL
        assert shown["passengers"] == passengers
    in_logs = scan_files(
        system.log_files(), Needles({"a KEK": kek_file["keys"][kek_file["current"]]}), store="logs"
    )
    assert in_logs == []
