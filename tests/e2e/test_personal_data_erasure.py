"""Erasing a customer reaches every store of the running system (issue 17's acceptance test).

Every process runs for real. A customer with a distinctive name, email and payment token
books, cancels and books again; once both bookings are final a data-protection officer
(role ``privacy``) erases the customer through the command API. When the read models show
``[erased]``, PostgreSQL (every table of every schema, each column's bytes), MongoDB (every
collection, raw BSON), Redis (every key and value), every Kafka topic of the test, an audit
export, a data-subject export and the logs of every process are searched for those strings
in their common encodings: none occurs. ``audit verify`` and ``audit integrity`` pass, and
the customer can book again and sees only the new booking's passengers.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pymongo
import pytest
import redis

from flightbook.config.settings import Settings
from tests.support.api import fare_body, flight_body
from tests.support.pipeline import fast, wait_for_read_models
from tests.support.scan import (
    Finding,
    Needles,
    scan_files,
    scan_kafka,
    scan_mongo,
    scan_postgres,
    scan_redis,
)
from tests.support.system import (
    FINAL,
    Caller,
    RunningSystem,
    eventually,
    flightbook,
    running_system,
)

pytestmark = pytest.mark.e2e

ERASED = "[erased]"
REFERENCE = uuid.uuid4().hex[:12]
PASSENGERS = [
    {"name": "Zenobia Quillfeather", "email": f"zenobia.quillfeather.{REFERENCE}@erasure.example"},
    {"name": "Þórhildur Ægisdóttir-Ñandú", "email": "thorhildur.aegisdottir@erasure.example"},
]
TOKEN = f"tok_ok_erasure{REFERENCE}"
"""The simulated provider authorizes ``tok_ok_<reference>`` like ``tok_ok``."""


def needles() -> Needles:
    """The customer's strings, whole and in their distinctive parts."""
    strings = {"the payment token": TOKEN, "the payment token's reference": f"erasure{REFERENCE}"}
    for n, passenger in enumerate(PASSENGERS):
        strings[f"passenger {n}'s name"] = passenger["name"]
        for part in passenger["name"].replace("-", " ").split():
            strings[f"passenger {n}'s name part {part[:2]}..."] = part
        strings[f"passenger {n}'s email"] = passenger["email"]
        strings[f"passenger {n}'s email's local part"] = passenger["email"].partition("@")[0]
    return Needles(strings)


@pytest.fixture
def system(settings: Settings, tmp_path: Path) -> Iterator[RunningSystem]:
    with running_system(fast(settings, query_wait_seconds=20.0, log_level="debug"), tmp_path) as up:
        yield up


def status_of(reader: Caller, booking_id: str) -> str | None:
    answer = reader.get(f"/bookings/{booking_id}")
    return str(answer.json()["status"]) if answer.status_code == 200 else None


def passengers_of(reader: Caller, booking_id: str) -> list[dict[str, str]] | None:
    answer = reader.get(f"/bookings/{booking_id}")
    return list(answer.json()["passengers"]) if answer.status_code == 200 else None


def all_erased(passengers: list[dict[str, str]] | None) -> bool:
    return passengers is not None and all(
        value == ERASED for passenger in passengers for value in passenger.values()
    )


def shows_erased(reader: Caller, booking_id: str) -> None:
    eventually(
        lambda: passengers_of(reader, booking_id),
        all_erased,
        what=f"booking {booking_id} shows {ERASED} to {reader.subject}",
    )


def scan_the_stores(
    system: RunningSystem,
    mongo: pymongo.database.Database[dict[str, object]],
    cache: redis.Redis,
    exports: list[Path],
) -> tuple[list[Finding], dict[str, int]]:
    settings = system.settings
    assert settings.postgres_url is not None
    assert settings.kafka_bootstrap is not None
    search = needles()
    in_postgres, tables = scan_postgres(settings.postgres_url, search)
    in_mongo, collections = scan_mongo(mongo, search)
    in_redis, keys = scan_redis(cache, search)
    in_kafka, messages = scan_kafka(settings.kafka_bootstrap, settings.topic_prefix, search)
    in_exports = scan_files(exports, search, store="export")
    read = {
        "postgresql tables": len(tables),
        "mongodb collections": len(collections),
        "redis keys": keys,
        "kafka messages": messages,
    }
    return [*in_postgres, *in_mongo, *in_redis, *in_kafka, *in_exports], read


def test_an_erased_customer_is_found_in_no_store_no_log_no_export_and_can_book_again(
    system: RunningSystem,
    mongo: pymongo.database.Database[dict[str, object]],
    cache: redis.Redis,
    tmp_path: Path,
) -> None:
    settings = system.settings
    customer_id = f"cust-{REFERENCE}"
    ops = system.command_caller("olga", "ops")
    customer = system.command_caller(customer_id, "customer")
    reads = system.query_caller(customer_id, "customer")
    agent = system.query_caller("agnes", "agent")
    officer = system.command_caller("dpo-pia", "privacy")
    scheduled = ops.post(
        "/flights", flight_body(flight_number="FB170", fares=[fare_body(seats=20, refundable=True)])
    )
    assert scheduled.status_code == 201, scheduled.text
    flight_id = scheduled.json()["flight_id"]

    # books, cancels and books again; each booking final before the erasure
    first = system.book(customer, flight_id, PASSENGERS, TOKEN)
    eventually(lambda: status_of(reads, first), lambda s: s == "CONFIRMED", what="first confirmed")
    cancelled = customer.post(f"/bookings/{first}/cancel")
    assert cancelled.status_code == 202, cancelled.text
    eventually(lambda: status_of(reads, first), lambda s: s == "CANCELLED", what="cancelled")
    second = system.book(customer, flight_id, PASSENGERS, TOKEN)
    eventually(lambda: status_of(reads, second), lambda s: s in FINAL, what="second final")
    assert status_of(reads, second) == "CONFIRMED"
    assert passengers_of(reads, second) == PASSENGERS
    before, _ = scan_the_stores(system, mongo, cache, [])
    assert {f.store for f in before} >= {"mongodb"}, "the scan does not see the read models"

    refused = system.command_caller(customer_id, "customer").post(
        f"/customers/{customer_id}/erasure", {"reason": "customer_request"}
    )
    erased = officer.post(f"/customers/{customer_id}/erasure", {"reason": "customer_request"})
    again = officer.post(f"/customers/{customer_id}/erasure", {"reason": "customer_request"})

    assert refused.status_code == 403, refused.text
    assert erased.status_code == 200, erased.text
    assert erased.json() == {
        "customer_id": customer_id,
        "bookings_erased": 2,
        "already_erased": False,
    }
    assert again.status_code == 200, again.text
    assert again.json()["already_erased"] is True
    for booking_id in (first, second):
        for reader in (reads, agent):
            shows_erased(reader, booking_id)
    differences = wait_for_read_models(settings, mongo, cache, timeout=60)
    assert differences == []

    audit_export = tmp_path / "audit-export.jsonl"
    subject_export = tmp_path / "subject-export.json"
    exported = flightbook(settings, "audit", "export", "--output", str(audit_export))
    assert exported.returncode == 0, exported.stderr
    history = flightbook(settings, "audit", "history", second, "--format", "json")
    assert history.returncode == 0, history.stderr
    (tmp_path / "audit-history.jsonl").write_text(history.stdout)
    access = flightbook(settings, "privacy", "export", customer_id, "--output", str(subject_export))
    assert access.returncode == 0, access.stderr
    exports = [audit_export, subject_export, tmp_path / "audit-history.jsonl"]
    found, read = scan_the_stores(system, mongo, cache, exports)
    verified = flightbook(settings, "audit", "verify")
    integrity = flightbook(settings, "audit", "integrity", "--seal")

    assert [str(f) for f in found] == []
    assert read["postgresql tables"] >= 10, read
    assert min(read.values()) > 0, read
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert integrity.returncode == 0, integrity.stdout + integrity.stderr
    assert "BROKEN" not in integrity.stdout
    erasure = [
        json.loads(line) for line in history.stdout.splitlines() if "PassengersErased" in line
    ]
    assert [(e["actor"], e["payload"].get("reason")) for e in erasure] == [
        ("dpo-pia", "customer_request")
    ]
    assert "[erased]" in subject_export.read_text()

    third = system.book(customer, flight_id, PASSENGERS, f"tok_ok_again{REFERENCE}")
    eventually(lambda: status_of(reads, third), lambda s: s == "CONFIRMED", what="third confirmed")
    listed = reads.get("/bookings")
    assert listed.status_code == 200, listed.text
    seen = {item["booking_id"]: item["passengers"] for item in listed.json()["items"]}
    assert seen.keys() == {first, second, third}
    assert seen[third] == PASSENGERS
    assert all_erased(seen[first]), seen
    assert all_erased(seen[second]), seen

    system.stop()  # SIGTERM: each process flushes its output before it exits
    in_logs = scan_files(system.log_files(), needles(), store="logs")
    assert len(system.log_files()) == len(RunningSystem.NAMES)
    assert [str(f) for f in in_logs] == []
