"""The wire contract: payloads round-trip, every domain event is classified, the schema is kept."""

from __future__ import annotations

import datetime as dt
import inspect
import uuid
from typing import Any

import msgspec
import msgspec.inspect as mi
import pytest
from eventsourcing.domain import Aggregate, CanMutateAggregate
from eventsourcing.persistence import (
    DatetimeAsISO,
    DecimalAsStr,
    JSONTranscoder,
    Notification,
    UUIDAsHex,
)
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from flightbook.contracts import payloads
from flightbook.contracts.envelope import (
    CONTRACT_VERSION,
    KNOWN_TYPES,
    Envelope,
    decoder,
    encoder,
    payload_type_name,
    schema_json,
)
from flightbook.contracts.payloads import PAYLOAD_TYPES, AnyPayload, Payload
from flightbook.domain.booking import Booking, CancellationReason, RejectionReason
from flightbook.domain.inventory import FlightInventory
from flightbook.domain.payment import Payment
from flightbook.domain.subject import DataSubject, ErasureReason
from flightbook.domain.values import Cabin, Fare, Money
from flightbook.eventstore.contexts import CONTEXT_NAMES, Context
from flightbook.eventstore.mapper import MetadataMapper
from flightbook.eventstore.metadata import recording
from flightbook.relay.translate import to_envelope, to_payload
from tests.support.builders import a_booking
from tests.support.processes import ROOT

pytestmark = pytest.mark.unit

SCHEMA_FILE = ROOT / "docs" / "contracts.schema.json"
AGGREGATES: tuple[type[Aggregate], ...] = (Booking, DataSubject, FlightInventory, Payment)
CONTEXT_OF: dict[type[Aggregate], Context] = {
    Booking: "booking",
    DataSubject: "booking",
    FlightInventory: "inventory",
    Payment: "payment",
}

PRIVATE_EVENTS: frozenset[type[object]] = frozenset({DataSubject.Opened})
"""Recorded domain events that are deliberately not published: a data subject's opening
(its erasure is what consumers act on). The payment token of ``Booking.Requested`` is left
out field by field instead."""

INT64 = (-(2**63), 2**63 - 1)


# -- a hypothesis strategy for any msgspec type, read from msgspec.inspect ------------------


def strategy_for(info: mi.Type) -> st.SearchStrategy[Any]:
    """Values of a msgspec type, honouring its constraints (new kinds fail loudly here)."""
    match info:
        case mi.Metadata(type=inner):
            return strategy_for(inner)
        case mi.StrType(pattern=str(pattern)):
            return st.from_regex(pattern, fullmatch=True)
        case mi.StrType(min_length=low, max_length=high):
            return st.text(min_size=low or 0, max_size=high)
        case mi.IntType(ge=ge, gt=gt, le=le, lt=lt):
            low = ge if ge is not None else (gt + 1 if gt is not None else INT64[0])
            high = le if le is not None else (lt - 1 if lt is not None else INT64[1])
            return st.integers(min_value=low, max_value=high)
        case mi.BoolType():
            return st.booleans()
        case mi.UUIDType():
            return st.uuids()
        case mi.DateTimeType(tz=True):
            return st.datetimes(timezones=st.just(dt.UTC))
        case mi.LiteralType(values=values):
            return st.sampled_from(values)
        case mi.ListType(item_type=item):
            return st.lists(strategy_for(item), max_size=3)
        case mi.UnionType(types=types):
            return st.one_of([strategy_for(t) for t in types])
        case mi.StructType(cls=cls, fields=fields):
            return st.builds(cls, **{f.name: strategy_for(f.type) for f in fields})
    raise NotImplementedError(f"no strategy for {info!r}: extend strategy_for")


def envelopes(payload_type: type[Payload]) -> st.SearchStrategy[Envelope]:
    """Envelopes carrying one payload type, every other field drawn from its constraints."""
    info = mi.type_info(Envelope)
    assert isinstance(info, mi.StructType)
    fields = {f.name: strategy_for(f.type) for f in info.fields}
    fields["payload"] = strategy_for(mi.type_info(payload_type))
    fields["type"] = st.just(payload_type_name(payload_type))
    fields["version"] = st.just(CONTRACT_VERSION)
    return st.builds(Envelope, **fields)


@pytest.mark.parametrize("payload_type", PAYLOAD_TYPES, ids=payload_type_name)
@hypothesis_settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_every_payload_type_round_trips_through_the_published_encoder_and_decoder(
    payload_type: type[Payload], data: st.DataObject
) -> None:
    envelope = data.draw(envelopes(payload_type))

    decoded = decoder.decode(encoder.encode(envelope))

    assert decoded == envelope
    assert type(decoded.payload) is payload_type


def test_the_union_the_decoder_knows_is_exactly_the_payload_types() -> None:
    info = mi.type_info(Envelope)
    assert isinstance(info, mi.StructType)
    payload = next(f.type for f in info.fields if f.name == "payload")
    assert isinstance(payload, mi.UnionType)

    union = {t.cls for t in payload.types if isinstance(t, mi.StructType)}

    assert union == set(PAYLOAD_TYPES)
    assert len(KNOWN_TYPES) == len(PAYLOAD_TYPES)
    assert all(name.split(".")[0] in CONTEXT_NAMES for name in KNOWN_TYPES)


# -- every domain event is public (mapped) or listed as private -----------------------------


def nested_event_classes(aggregate: type[Aggregate]) -> set[type[object]]:
    """The events an aggregate records: its nested Event subclasses, minus the generic bases."""
    bases = {aggregate.Event, aggregate.Created}
    return {
        value
        for value in vars(aggregate).values()
        if inspect.isclass(value) and issubclass(value, Aggregate.Event) and value not in bases
    }


def every_event() -> list[CanMutateAggregate[uuid.UUID]]:
    """One of each event of the three aggregates, made by their own commands."""
    now = dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC)
    later = now + dt.timedelta(minutes=10)
    flight = FlightInventory.schedule(
        flight_number="FB101",
        origin="LHR",
        destination="JFK",
        departure=now + dt.timedelta(days=20),
        arrival=now + dt.timedelta(days=20, hours=8),
        fares=[
            Fare(
                code="Y", cabin=Cabin.ECONOMY, price=Money(45000, "EUR"), seats=9, refundable=False
            )
        ],
    )
    sold, released, expired = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    flight.hold_seats(sold, "Y", 2, later)
    flight.confirm_hold(sold)
    flight.hold_seats(released, "Y", 1, later)
    flight.release_hold(released, "PAYMENT_DECLINED")
    flight.hold_seats(expired, "Y", 1, later)
    flight.expire_hold(expired, later + dt.timedelta(seconds=1))
    flight.return_sold_seats(sold, "CANCELLED")
    flight.change_fare("Y", price=Money(50000, "EUR"), overbooking=2)
    flight.cancel("weather")

    def booking() -> Booking:
        return a_booking(
            flight.id, customer="alice", sealed="pii1:c2VhbGVk", passengers=2, refundable=True
        )

    confirmed, rejected = booking(), booking()
    confirmed.mark_seats_held(later)
    confirmed.mark_payment_authorized(uuid.uuid4())
    confirmed.confirm()
    confirmed.cancel(CancellationReason.CUSTOMER, by="alice")
    rejected.reject(RejectionReason.NO_SEATS)
    rejected.erase_personal_data(ErasureReason.CUSTOMER_REQUEST)
    subject = DataSubject.open("alice")
    subject.erase(ErasureReason.CUSTOMER_REQUEST, bookings=1)

    captured = Payment.authorized(
        payment_id=uuid.uuid4(),
        booking_id=confirmed.id,
        amount=90000,
        currency="EUR",
        gateway_ref="gw-1",
    )
    captured.capture("gw-1-capture")
    captured.refund(90000, "gw-1-refund")
    voided = Payment.authorized(
        payment_id=uuid.uuid4(), booking_id=rejected.id, amount=1, currency="EUR", gateway_ref="g2"
    )
    voided.void()
    declined = Payment.declined(
        payment_id=uuid.uuid4(), booking_id=rejected.id, amount=1, currency="EUR", reason="card"
    )
    aggregates = (flight, confirmed, rejected, subject, captured, voided, declined)
    return [e for a in aggregates for e in a.collect_events()]


def test_every_recorded_domain_event_is_published_or_listed_as_private() -> None:
    """Adding an event to an aggregate fails here until it gets a payload or a place in
    PRIVATE_EVENTS; each public event has its own payload type, and each payload type is used."""
    declared = {cls for aggregate in AGGREGATES for cls in nested_event_classes(aggregate)}
    events = every_event()

    recorded = {type(e) for e in events}
    payloads = {type(e): to_payload(e) for e in events}

    assert recorded == declared  # the tour below made one of each
    for event_class, payload in payloads.items():
        if event_class in PRIVATE_EVENTS:
            assert payload is None, event_class
        else:
            assert payload is not None, f"{event_class.__qualname__} has no payload type"
    public = {type(p) for p in payloads.values() if p is not None}
    assert public == set(PAYLOAD_TYPES)
    assert len(public) == len(declared - PRIVATE_EVENTS)


def test_stored_events_decode_into_envelopes_with_their_position_and_metadata() -> None:
    """Through the MetadataMapper as the relay does it: the decoded classes still dispatch."""
    transcoder = JSONTranscoder()
    for transcoding in (UUIDAsHex(), DatetimeAsISO(), DecimalAsStr()):
        transcoder.register(transcoding)
    mapper = MetadataMapper(transcoder=transcoder)
    events = every_event()
    with recording(actor="ops", correlation_id="req-1", causation_id="cmd-1"):
        stored = [mapper.to_stored_event(e) for e in events]

    envelopes_: list[Envelope | None] = []
    for position, item in enumerate(stored, start=1):
        notification = Notification(
            id=position,
            originator_id=item.originator_id,
            originator_version=item.originator_version,
            topic=item.topic,
            state=item.state,
        )
        domain_event, meta = mapper.decode(notification)
        context = CONTEXT_OF[next(a for a in AGGREGATES if isinstance(domain_event, a.Event))]
        envelopes_.append(to_envelope(context, notification, domain_event, meta))

    assert [e is None for e in envelopes_] == [type(e) in PRIVATE_EVENTS for e in events]
    for original, envelope in zip(events, envelopes_, strict=True):
        if envelope is None:
            continue
        assert envelope.aggregate_id == original.originator_id
        assert envelope.aggregate_version == original.originator_version
        assert envelope.occurred_at == original.timestamp
        assert envelope.occurred_at.utcoffset() == dt.timedelta(0)
        assert (envelope.actor, envelope.correlation_id, envelope.causation_id) == (
            "ops",
            "req-1",
            "cmd-1",
        )
        assert envelope.event_id
        assert envelope.type == payload_type_name(type(envelope.payload))
        assert envelope.version == CONTRACT_VERSION
        assert decoder.decode(encoder.encode(envelope)) == envelope
    assert [e.position for e in envelopes_ if e is not None] == [
        position
        for position, event in enumerate(events, start=1)
        if type(event) not in PRIVATE_EVENTS
    ]


def test_a_booking_request_publishes_the_sealed_passengers_and_never_the_payment_token() -> None:
    requested = next(e for e in every_event() if isinstance(e, Booking.Requested))

    payload = to_payload(requested)
    wire = encoder.encode(payload)

    assert isinstance(payload, payloads.BookingRequested)
    assert payload.passengers == "pii1:c2VhbGVk"
    assert payload.passenger_count == 2
    assert payload.price == payloads.Money(amount=90000, currency="EUR")
    assert b"tok_ok" not in wire
    assert b"payment_token" not in wire


def test_an_erasure_publishes_which_booking_and_which_customer_and_no_personal_data() -> None:
    events = every_event()
    erased = next(e for e in events if isinstance(e, Booking.PassengersErased))
    subject = next(e for e in events if isinstance(e, DataSubject.Erased))

    booking_payload = to_payload(erased)
    subject_payload = to_payload(subject)

    assert booking_payload == payloads.PassengersErased(
        booking_id=erased.originator_id, reason="customer_request"
    )
    assert subject_payload == payloads.DataSubjectErased(
        customer_id="alice", reason="customer_request", bookings=1
    )
    assert msgspec.json.decode(encoder.encode(booking_payload)) == {
        "type": "booking.passengers_erased",
        "booking_id": str(erased.originator_id),
        "reason": "customer_request",
    }
    assert msgspec.json.decode(encoder.encode(subject_payload)) == {
        "type": "booking.data_subject_erased",
        "customer_id": "alice",
        "reason": "customer_request",
        "bookings": 1,
    }


def test_an_event_the_contract_does_not_know_stays_private() -> None:
    class Unknown(Aggregate.Event):
        pass

    unknown = Unknown(
        originator_id=uuid.uuid4(), originator_version=1, timestamp=dt.datetime.now(dt.UTC)
    )

    assert to_payload(unknown) is None
    assert to_payload(object()) is None


def an_envelope(payload: AnyPayload, context: Context, *, correlation_id: str = "") -> Envelope:
    """``payload`` in an envelope of the current contract version, as the relay publishes it."""
    return Envelope(
        event_id="e-1",
        type=payload_type_name(type(payload)),
        version=CONTRACT_VERSION,
        context=context,
        aggregate_id=uuid.uuid4(),
        aggregate_version=2,
        position=7,
        occurred_at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
        correlation_id=correlation_id,
        causation_id=correlation_id,
        actor="saga",
        payload=payload,
    )


def test_a_consumer_ignores_fields_added_by_a_newer_producer() -> None:
    """Schema evolution rule: new fields come with defaults, and older decoders skip them."""
    envelope = an_envelope(payloads.PaymentVoided(), "payment", correlation_id="c")
    newer = msgspec.json.decode(encoder.encode(envelope))
    newer["trace_id"] = "abc"
    newer["payload"]["voided_by"] = "ops"

    assert decoder.decode(msgspec.json.encode(newer)) == envelope


def test_a_naive_timestamp_is_refused() -> None:
    raw = msgspec.json.decode(encoder.encode(an_envelope(payloads.BookingConfirmed(), "booking")))
    raw["occurred_at"] = "2026-01-01T00:00:00"

    with pytest.raises(msgspec.ValidationError, match="occurred_at"):
        decoder.decode(msgspec.json.encode(raw))


def test_the_schema_file_in_docs_is_the_current_schema() -> None:
    assert SCHEMA_FILE.read_text() == schema_json(), (
        "docs/contracts.schema.json is out of date; regenerate it with "
        "`.venv/bin/python -m flightbook.contracts > docs/contracts.schema.json`"
    )


def test_the_contract_page_documents_every_payload_type_and_its_fields() -> None:
    """docs/contracts.md has a row per payload type naming each of its fields."""
    page = (ROOT / "docs" / "contracts.md").read_text()
    rows = {
        line.split("|")[1].strip().strip("`"): line
        for line in page.splitlines()
        if line.startswith("| `") and line.count("|") >= 4
    }
    missing = []
    for payload_type in PAYLOAD_TYPES:
        row = rows.get(payload_type_name(payload_type))
        if row is None:
            missing.append(payload_type_name(payload_type))
            continue
        missing += [
            f"{payload_type_name(payload_type)}.{field.name}"
            for field in msgspec.structs.fields(payload_type)
            if f"`{field.name}`" not in row
        ]

    assert missing == [], "docs/contracts.md does not document these payload types or fields"
