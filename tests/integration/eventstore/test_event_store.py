"""The event store on real PostgreSQL: old versions upcast, metadata kept, personal data sealed."""

from __future__ import annotations

import json
import uuid

import psycopg
import pytest
from psycopg_pool import ConnectionPool

from flightbook.config.settings import Settings
from flightbook.domain.booking import Booking
from flightbook.eventstore.pii import ERASED, build_vault
from tests.support.writeside import WriteSide

pytestmark = pytest.mark.integration


def test_a_stored_v1_booking_request_is_upcast_when_read_back(
    settings: Settings, write_side: WriteSide
) -> None:
    """v1 of Booking.Requested had no ``channel``; the row stays as stored, reads as v2."""
    assert settings.postgres_url is not None
    booking_id = uuid.uuid4()
    v1_state = {
        "timestamp": {"_type_": "datetime_iso", "_data_": "2026-01-02T03:04:05+00:00"},
        "originator_topic": "flightbook.domain.booking:Booking",
        "customer_id": "alice",
        "flight_id": {"_type_": "uuid_hex", "_data_": uuid.uuid4().hex},
        "fare": "Y",
        "passengers": "sealed",
        "passenger_count": 1,
        "price_amount": 45000,
        "currency": "EUR",
        "refundable": False,
        "payment_token": "tok_ok",
    }
    with psycopg.connect(settings.postgres_url) as conn:
        conn.execute(
            "INSERT INTO booking.bookings_events (originator_id, originator_version, topic, state)"
            " VALUES (%s, 1, %s, %s)",
            (
                booking_id,
                "flightbook.domain.booking:Booking.Requested",
                json.dumps(v1_state).encode(),
            ),
        )

    booking: Booking = write_side.bookings.repository.get(booking_id)

    assert booking.channel == "api"
    assert booking.customer_id == "alice"
    with psycopg.connect(settings.postgres_url) as conn:
        row = conn.execute(
            "SELECT state FROM booking.bookings_events WHERE originator_id = %s", (booking_id,)
        ).fetchone()
    assert row is not None
    assert "channel" not in json.loads(bytes(row[0]))  # never rewritten


def test_every_stored_event_carries_its_metadata(write_side: WriteSide) -> None:
    flight_id = write_side.schedule_flight()
    booking_id = write_side.request_booking(flight_id, customer="bob", correlation_id="req-7")

    notification = write_side.bookings.recorder.select_notifications(start=None, limit=10)[-1]
    event, meta = write_side.bookings.metadata_mapper.decode(notification)

    assert notification.originator_id == booking_id
    assert isinstance(event, Booking.Requested)
    assert (meta.actor, meta.correlation_id, meta.causation_id) == ("bob", "req-7", "req-7")
    assert meta.schema_version == 2
    uuid.UUID(meta.event_id)


def test_personal_data_is_sealed_per_subject_and_erasable(settings: Settings) -> None:
    assert settings.postgres_url is not None
    with ConnectionPool(settings.postgres_url, min_size=1, max_size=2) as pool:
        vault = build_vault(settings, pool)
        sealed = vault.seal("alice", '[{"name": "Ada Lovelace"}]')

        opened = vault.open("alice", sealed)
        vault.erase("alice")
        after = build_vault(settings, pool).open("alice", sealed)

    assert "Ada" not in sealed
    assert opened == '[{"name": "Ada Lovelace"}]'
    assert after == ERASED
