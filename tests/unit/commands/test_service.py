"""The command use cases on the in-memory store: what each answers, refuses and stores.

A refused command must store nothing at all: every refusal is checked against the event
counts of the three logs (and, for bookings, the idempotency keys) taken before it.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any, cast

import msgspec
import pytest

from flightbook.commands.idempotency import FirstRequest, IdempotencyKeys, MemoryIdempotencyKeys
from flightbook.commands.requests import (
    DEFAULT_CANCELLATION_REASON,
    BookingRequest,
    FareRequest,
    FlightRequest,
    MoneyRequest,
    PassengerRequest,
)
from flightbook.commands.service import (
    BookingResult,
    CommandService,
    FlightCancellationResult,
    IdempotencyKeyReusedError,
    NotFoundError,
    UnknownFlightError,
    booking_id_for,
)
from flightbook.domain.booking import BookingStatus, RejectionReason
from flightbook.domain.errors import (
    FlightNotBookableError,
    IllegalTransitionError,
    InvalidValueError,
    UnknownFareError,
)
from flightbook.domain.inventory import FlightStatus
from flightbook.domain.values import Cabin
from flightbook.eventstore.applications import EventStore
from flightbook.eventstore.pii import ERASED, PersonalDataVault, is_sealed
from flightbook.http.tokens import Principal
from tests.support.memory import (
    MEMORY,
    PRICE,
    START,
    Clock,
    command_service,
    event_counts,
    memory_of,
    memory_store,
    save,
    stored,
)

pytestmark = pytest.mark.unit

DEPARTURE = START + dt.timedelta(days=30)
NOTHING = {"booking": 0, "inventory": 0, "payment": 0}
ADA = PassengerRequest(name="Ada Lovelace", email="ada@example.com")
CHARLES = PassengerRequest(name="Charles Babbage", email="charles@example.com")


def who(subject: str, *roles: str) -> Principal:
    return Principal(subject=subject, roles=frozenset(roles))


ALICE = who("alice", "customer")
BOB = who("bob", "customer")
AGENT = who("agent-7", "agent")


def fare_request(
    code: str = "Y",
    *,
    amount: int = PRICE,
    currency: str = "EUR",
    seats: int = 10,
    refundable: bool = False,
    overbooking: int = 0,
    cabin: Cabin = Cabin.ECONOMY,
) -> FareRequest:
    return FareRequest(
        code=code,
        cabin=cabin,
        price=MoneyRequest(amount=amount, currency=currency),
        seats=seats,
        refundable=refundable,
        overbooking=overbooking,
    )


def flight_request(**changes: Any) -> FlightRequest:
    fields: dict[str, Any] = {
        "flight_number": "FB101",
        "origin": "LHR",
        "destination": "JFK",
        "departure": DEPARTURE,
        "arrival": DEPARTURE + dt.timedelta(hours=8),
        "fares": [fare_request()],
    }
    fields.update(changes)
    return FlightRequest(**fields)


def booking_request(
    flight_id: uuid.UUID,
    *,
    fare: str = "Y",
    passengers: tuple[PassengerRequest, ...] = (ADA,),
    token: str = "tok_ok",  # noqa: S107 - a test card token
) -> BookingRequest:
    return BookingRequest(
        flight_id=flight_id, fare=fare, passengers=list(passengers), payment_token=token
    )


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store() -> EventStore:
    return memory_store()


@pytest.fixture
def service(store: EventStore, clock: Clock) -> CommandService:
    return command_service(store, clock)


@pytest.fixture
def flight_id(service: CommandService) -> uuid.UUID:
    return service.schedule_flight(flight_request(), "ops-1").flight_id


def book(
    service: CommandService,
    flight_id: uuid.UUID,
    key: str = "key-1",
    *,
    customer: str = "alice",
    **changes: Any,
) -> BookingResult:
    return service.request_booking(booking_request(flight_id, **changes), customer, key, customer)


def keys_used(store: EventStore) -> int:
    return len(memory_of(store).table("booking.idempotency_keys"))


# -- scheduling a flight -------------------------------------------------------------------------


def test_ops_schedules_a_flight_and_learns_the_position_of_its_event(
    service: CommandService, store: EventStore
) -> None:
    request = flight_request(fares=[fare_request("Y"), fare_request("J", amount=250_000, seats=2)])

    result = service.schedule_flight(request, "ops-1", correlation_id="req-1")

    assert result.positions == {"inventory": 1}
    flight = store.inventory.flight(result.flight_id)
    assert (flight.flight_number, flight.origin, flight.destination) == ("FB101", "LHR", "JFK")
    assert flight.departure == DEPARTURE
    assert flight.fare_codes == ["Y", "J"]
    assert (flight.fare("J").price.amount, flight.seats_left("J")) == (250_000, 2)
    ((_event, meta),) = stored(store.inventory)
    assert (meta.actor, meta.correlation_id) == ("ops-1", "req-1")


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"flight_number": "F"}, "flight_number"),
        ({"origin": "lhr"}, "origin"),
        ({"destination": "LHR"}, "destination"),
        ({"arrival": DEPARTURE - dt.timedelta(minutes=1)}, "arrival"),
        ({"departure": DEPARTURE.replace(tzinfo=None)}, "departure"),
        ({"fares": []}, "fares"),
        ({"fares": [fare_request("y")]}, "fares[0].code"),
        ({"fares": [fare_request("Y"), fare_request("Y")]}, "fares[1].code"),
        ({"fares": [fare_request(amount=-1)]}, "fares[0].price.amount"),
        ({"fares": [fare_request(currency="eur")]}, "fares[0].price.currency"),
        ({"fares": [fare_request(seats=0)]}, "fares[0].seats"),
        ({"fares": [fare_request(overbooking=-1)]}, "fares[0].overbooking"),
        ({"fares": [fare_request(cabin=cast("Cabin", "coach"))]}, "fares[0].cabin"),
    ],
)
def test_a_flight_the_rules_refuse_is_not_scheduled_and_the_error_names_the_field(
    service: CommandService, store: EventStore, changes: dict[str, Any], field: str
) -> None:
    with pytest.raises(InvalidValueError) as refused:
        service.schedule_flight(flight_request(**changes), "ops-1")

    assert refused.value.field == field
    assert event_counts(store) == NOTHING


@pytest.mark.parametrize("before_now", [dt.timedelta(0), dt.timedelta(hours=1)])
def test_a_flight_departing_now_or_in_the_past_is_refused(
    service: CommandService, store: EventStore, clock: Clock, before_now: dt.timedelta
) -> None:
    departure = clock() - before_now

    with pytest.raises(InvalidValueError) as refused:
        service.schedule_flight(
            flight_request(departure=departure, arrival=departure + dt.timedelta(hours=8)), "ops"
        )

    assert refused.value.field == "departure"
    assert event_counts(store) == NOTHING


# -- requesting a booking ----------------------------------------------------------------------


def test_a_booking_is_requested_under_an_id_made_of_the_customer_and_the_key(
    service: CommandService, store: EventStore
) -> None:
    flight_id = service.schedule_flight(
        flight_request(fares=[fare_request(refundable=True)]), "ops"
    ).flight_id

    result = book(service, flight_id, "key-1", passengers=(ADA, CHARLES), token="tok_flaky")

    booking_id = booking_id_for("alice", "key-1")
    assert result == BookingResult(booking_id, BookingStatus.REQUESTED, {"booking": 1})
    booking = store.bookings.booking(booking_id)
    assert (booking.customer_id, booking.flight_id, booking.fare) == ("alice", flight_id, "Y")
    assert (booking.passenger_count, booking.price_amount) == (2, 2 * PRICE)
    assert booking.currency == "EUR"
    assert booking.refundable is True
    assert service.vault.open("alice", booking.payment_token) == "tok_flaky"  # sealed
    assert keys_used(store) == 1


def test_a_repeat_with_the_same_key_and_body_gets_the_first_answer_and_stores_nothing(
    service: CommandService, store: EventStore, flight_id: uuid.UUID
) -> None:
    """Even after the saga moved the booking on: the first answer, the first event's position."""
    first = book(service, flight_id, "key-1")
    booking = store.bookings.booking(first.booking_id)
    booking.mark_seats_held(START + dt.timedelta(minutes=10))
    save(store.bookings, booking, actor="saga")
    before = event_counts(store)

    again = book(service, flight_id, "key-1")

    assert again == first._replace(repeated=True)
    assert again.positions == {"booking": 1} != {"booking": store.bookings.position_of(booking.id)}
    assert event_counts(store) == before
    assert keys_used(store) == 1


def test_a_repeat_after_the_flight_was_cancelled_still_gets_the_first_answer(
    service: CommandService, store: EventStore, flight_id: uuid.UUID
) -> None:
    """The flight refuses new bookings now, but this one was accepted before."""
    first = book(service, flight_id, "key-1")
    service.cancel_flight(flight_id, "ops")

    again = book(service, flight_id, "key-1")

    assert again == first._replace(repeated=True)
    with pytest.raises(FlightNotBookableError):
        book(service, flight_id, "key-2")


@pytest.mark.parametrize(
    "changes",
    [{"token": "tok_declined"}, {"passengers": (ADA, CHARLES)}, {"fare": "J"}],
    ids=["token", "passengers", "fare"],
)
def test_the_same_key_with_another_body_is_refused_and_stores_nothing(
    service: CommandService, store: EventStore, flight_id: uuid.UUID, changes: dict[str, Any]
) -> None:
    book(service, flight_id, "key-1")
    before = event_counts(store)

    with pytest.raises(IdempotencyKeyReusedError) as refused:
        book(service, flight_id, "key-1", **changes)

    assert refused.value.field == "Idempotency-Key"
    assert event_counts(store) == before


@pytest.mark.parametrize(
    ("first", "first_key", "second", "second_key"),
    [("alice", "key-1", "bob", "key-1"), ("erin:x", "1", "erin", "x:1")],
    ids=["the-same-key", "subject-and-key-joining-to-the-same-text"],
)
def test_another_customer_gets_another_booking(
    service: CommandService,
    store: EventStore,
    flight_id: uuid.UUID,
    first: str,
    first_key: str,
    second: str,
    second_key: str,
) -> None:
    """With the same key, or (review finding 3) with a subject and key that join to the same
    text as the first's: ``erin:x`` + ``1`` and ``erin`` + ``x:1`` both read ``erin:x:1``."""
    earlier = book(service, flight_id, first_key, customer=first)

    later = book(service, flight_id, second_key, customer=second)

    assert later.booking_id != earlier.booking_id
    assert not later.repeated
    assert store.bookings.booking(earlier.booking_id).customer_id == first
    assert store.bookings.booking(later.booking_id).customer_id == second
    assert booking_id_for(first, first_key) != booking_id_for(second, second_key)


class CountedKeys:
    """The idempotency keys, counting how often the service looks one up."""

    def __init__(self, keys: IdempotencyKeys) -> None:
        self._keys = keys
        self.asked = 0

    def first_request(self, customer_id: str, idempotency_key: str) -> FirstRequest | None:
        self.asked += 1
        return self._keys.first_request(customer_id, idempotency_key)


def test_a_new_key_is_not_looked_up_and_a_repeat_is_refused_by_the_store_then_answered(
    store: EventStore, clock: Clock, flight_id: uuid.UUID, service: CommandService
) -> None:
    """No look-up before the insert: the key's row refuses the duplicate, then it is read
    (a duplicate sent at the same moment as the first request meets the same refusal)."""
    keys = CountedKeys(MemoryIdempotencyKeys(memory_of(store)))
    counted = CommandService(
        store=store,
        keys=keys,
        vault=service.vault,  # one KEK: a vault of its own could not unwrap the first's key
        settings=MEMORY,
        clock=clock,
    )
    first = book(counted, flight_id, "key-1")
    assert keys.asked == 0
    before = event_counts(store)

    again = book(counted, flight_id, "key-1")

    assert again == first._replace(repeated=True)
    assert keys.asked == 1
    assert event_counts(store) == before


def test_a_booking_of_an_unknown_flight_is_refused_before_anything_is_stored(
    service: CommandService, store: EventStore, flight_id: uuid.UUID
) -> None:
    with pytest.raises(UnknownFlightError) as refused:
        book(service, uuid.uuid4(), "key-1")

    assert (refused.value.field, refused.value.code) == ("flight_id", "unknown_flight")
    assert event_counts(store)["booking"] == 0
    assert keys_used(store) == 0
    assert not book(service, flight_id, "key-1").repeated  # the key is still free


def test_a_booking_of_an_unknown_fare_is_refused_before_anything_is_stored(
    service: CommandService, store: EventStore, flight_id: uuid.UUID
) -> None:
    with pytest.raises(UnknownFareError) as refused:
        book(service, flight_id, fare="J")

    assert refused.value.field == "fare"
    assert event_counts(store)["booking"] == keys_used(store) == 0


def test_a_booking_of_a_cancelled_flight_is_refused_before_anything_is_stored(
    service: CommandService, store: EventStore, flight_id: uuid.UUID
) -> None:
    service.cancel_flight(flight_id, "ops")

    with pytest.raises(FlightNotBookableError) as refused:
        book(service, flight_id)

    assert refused.value.field == "flight_id"
    assert event_counts(store)["booking"] == keys_used(store) == 0


def test_a_booking_of_a_departed_flight_is_refused_before_anything_is_stored(
    service: CommandService, store: EventStore, flight_id: uuid.UUID, clock: Clock
) -> None:
    clock.now = DEPARTURE

    with pytest.raises(FlightNotBookableError):
        book(service, flight_id)

    assert event_counts(store)["booking"] == keys_used(store) == 0


@pytest.mark.parametrize(
    ("passengers", "field"),
    [
        ((ADA, PassengerRequest(name="Bob", email="bob@localhost")), "passengers[1].email"),
        ((PassengerRequest(name="  ", email="x@example.com"),), "passengers[0].name"),
    ],
)
def test_a_passenger_the_rules_refuse_is_named_and_nothing_is_stored(
    service: CommandService,
    store: EventStore,
    flight_id: uuid.UUID,
    passengers: tuple[PassengerRequest, ...],
    field: str,
) -> None:
    with pytest.raises(InvalidValueError) as refused:
        book(service, flight_id, passengers=passengers)

    assert refused.value.field == field
    assert event_counts(store)["booking"] == keys_used(store) == 0


def test_passengers_are_stored_sealed_for_their_customer_never_in_plain_text(
    service: CommandService, store: EventStore, flight_id: uuid.UUID
) -> None:
    padded = PassengerRequest(name=" Ada Lovelace ", email="ada@example.com ")

    result = book(service, flight_id, passengers=(padded, CHARLES))

    booking = store.bookings.booking(result.booking_id)
    assert booking.passengers.startswith("pii2:")
    raw = b"".join(n.state for n in store.bookings.recorder.select_notifications(1, 100))
    for secret in (b"Ada Lovelace", b"ada@example.com", b"Charles", b"charles@example.com"):
        assert secret not in raw
    opened = msgspec.json.decode(service.vault.open("alice", booking.passengers))
    assert opened == [
        {"name": "Ada Lovelace", "email": "ada@example.com"},
        {"name": "Charles Babbage", "email": "charles@example.com"},
    ]


def test_the_payment_token_is_stored_sealed_and_opens_for_the_saga(
    service: CommandService, store: EventStore, flight_id: uuid.UUID
) -> None:
    result = book(service, flight_id, token="tok_ok_4242-distinctive")

    booking = store.bookings.booking(result.booking_id)
    assert is_sealed(booking.payment_token)
    raw = b"".join(n.state for n in store.bookings.recorder.select_notifications(1, 100))
    assert b"4242-distinctive" not in raw
    assert service.vault.open("alice", booking.payment_token) == "tok_ok_4242-distinctive"


def test_a_customer_whose_keys_were_erased_books_again_under_a_new_key(
    service: CommandService, store: EventStore, flight_id: uuid.UUID
) -> None:
    old = store.bookings.booking(book(service, flight_id, "key-1").booking_id)
    service.vault.erase("alice")

    again = book(service, flight_id, "key-2")

    new = store.bookings.booking(again.booking_id)
    assert service.vault.open("alice", new.passengers) != ERASED
    assert service.vault.open("alice", old.passengers) == ERASED


def test_a_booking_sealed_just_before_its_customer_was_erased_is_sealed_again_under_a_new_key(
    service: CommandService,
    store: EventStore,
    flight_id: uuid.UUID,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An erasure that commits between the sealing and the booking's transaction erased the
    key the booking was sealed under: the booking is sealed again, not stored unreadable."""
    book(service, flight_id, "key-1")  # alice has a live key now
    record = store.bookings.record
    erased_first: list[bool] = []

    def erase_then_record(*args: Any, **kwargs: Any) -> Any:
        if not erased_first:
            erased_first.append(True)
            service.vault.erase("alice")  # commits after the seal, before this transaction
        return record(*args, **kwargs)

    monkeypatch.setattr(store.bookings, "record", erase_then_record)

    result = book(service, flight_id, "key-2", token="tok_ok_after-erasure")

    booking = store.bookings.booking(result.booking_id)
    assert erased_first == [True]
    assert service.vault.open("alice", booking.passengers) != ERASED
    assert service.vault.open("alice", booking.payment_token) == "tok_ok_after-erasure"


def test_a_new_customer_whose_key_another_process_made_meanwhile_is_sealed_again_under_it(
    service: CommandService,
    store: EventStore,
    clock: Clock,
    flight_id: uuid.UUID,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two first bookings of one customer at once, in two processes: each seals under a new
    key of its own; the one that commits second is refused by the store and sealed again
    under the key that won, so the customer keeps one live key."""
    elsewhere = command_service(
        store, clock, vault=PersonalDataVault(service.vault.keys, service.vault.keks)
    )
    record = store.bookings.record
    raced: list[BookingResult] = []
    started: list[bool] = []

    def other_first_then_record(*args: Any, **kwargs: Any) -> Any:
        if not started:
            started.append(True)
            raced.append(book(elsewhere, flight_id, "key-elsewhere"))  # commits its new key
        return record(*args, **kwargs)

    monkeypatch.setattr(store.bookings, "record", other_first_then_record)

    result = book(service, flight_id, "key-1", token="tok_ok_raced")

    mine = store.bookings.booking(result.booking_id)
    theirs = store.bookings.booking(raced[0].booking_id)
    assert service.vault.key_id_of(mine.passengers) == service.vault.key_id_of(theirs.passengers)
    assert service.vault.open("alice", mine.payment_token) == "tok_ok_raced"
    assert len(memory_of(store).table("pii.data_keys")) == 1


# -- cancelling a booking ----------------------------------------------------------------------


def test_the_owner_cancels_a_booking(
    service: CommandService, store: EventStore, flight_id: uuid.UUID
) -> None:
    booking_id = book(service, flight_id).booking_id

    result = service.cancel_booking(booking_id, ALICE, correlation_id="req-9")

    assert result == BookingResult(booking_id, BookingStatus.CANCELLED, {"booking": 2})
    booking = store.bookings.booking(booking_id)
    assert (booking.reason, booking.cancelled_by, booking.refund_amount) == ("CUSTOMER", "alice", 0)
    _event, meta = stored(store.bookings)[-1]
    assert (meta.actor, meta.correlation_id) == ("alice", "req-9")


def test_an_agent_cancels_a_customers_booking(
    service: CommandService, store: EventStore, flight_id: uuid.UUID
) -> None:
    booking_id = book(service, flight_id).booking_id

    result = service.cancel_booking(booking_id, AGENT)

    assert result.status is BookingStatus.CANCELLED
    booking = store.bookings.booking(booking_id)
    assert (booking.reason, booking.cancelled_by) == ("AGENT", "agent-7")


def test_another_customer_is_told_the_booking_does_not_exist_exactly_as_for_an_unknown_id(
    service: CommandService, store: EventStore, flight_id: uuid.UUID
) -> None:
    booking_id = book(service, flight_id).booking_id
    unknown_id = uuid.uuid4()
    before = event_counts(store)

    with pytest.raises(NotFoundError) as someone_elses:
        service.cancel_booking(booking_id, BOB)
    with pytest.raises(NotFoundError) as unknown:
        service.cancel_booking(unknown_id, BOB)

    assert (someone_elses.value.resource, someone_elses.value.identifier) == ("booking", booking_id)
    assert str(someone_elses.value) == str(unknown.value).replace(str(unknown_id), str(booking_id))
    assert store.bookings.booking(booking_id).status is BookingStatus.REQUESTED
    assert event_counts(store) == before


def test_cancelling_a_cancelled_booking_is_a_repeat_that_stores_nothing(
    service: CommandService, store: EventStore, flight_id: uuid.UUID
) -> None:
    booking_id = book(service, flight_id).booking_id
    first = service.cancel_booking(booking_id, ALICE)
    before = event_counts(store)

    again = service.cancel_booking(booking_id, AGENT)

    assert again == first._replace(repeated=True)
    assert event_counts(store) == before
    assert store.bookings.booking(booking_id).cancelled_by == "alice"


def test_a_rejected_booking_cannot_be_cancelled(
    service: CommandService, store: EventStore, flight_id: uuid.UUID
) -> None:
    booking_id = book(service, flight_id).booking_id
    booking = store.bookings.booking(booking_id)
    booking.reject(RejectionReason.PAYMENT_DECLINED)
    save(store.bookings, booking, actor="saga")
    before = event_counts(store)

    with pytest.raises(IllegalTransitionError):
        service.cancel_booking(booking_id, ALICE)

    assert store.bookings.booking(booking_id).status is BookingStatus.REJECTED
    assert event_counts(store) == before


# -- cancelling a flight -----------------------------------------------------------------------


def test_ops_cancels_a_flight(
    service: CommandService, store: EventStore, flight_id: uuid.UUID
) -> None:
    result = service.cancel_flight(flight_id, "ops-1", reason="volcanic ash")

    assert result == FlightCancellationResult(flight_id, FlightStatus.CANCELLED, {"inventory": 2})
    flight = store.inventory.flight(flight_id)
    assert (flight.status, flight.cancellation_reason) == (FlightStatus.CANCELLED, "volcanic ash")


def test_a_flight_is_cancelled_for_the_default_reason_when_none_is_given(
    service: CommandService, store: EventStore, flight_id: uuid.UUID
) -> None:
    service.cancel_flight(flight_id, "ops-1")

    assert store.inventory.flight(flight_id).cancellation_reason == DEFAULT_CANCELLATION_REASON


def test_cancelling_a_cancelled_flight_is_a_repeat_that_stores_nothing(
    service: CommandService, store: EventStore, flight_id: uuid.UUID
) -> None:
    first = service.cancel_flight(flight_id, "ops-1")
    before = event_counts(store)

    again = service.cancel_flight(flight_id, "ops-2", reason="another reason")

    assert again == first._replace(repeated=True)
    assert event_counts(store) == before
    assert store.inventory.flight(flight_id).cancellation_reason == DEFAULT_CANCELLATION_REASON


def test_cancelling_an_unknown_flight_is_not_found(
    service: CommandService, store: EventStore
) -> None:
    with pytest.raises(NotFoundError):
        service.cancel_flight(uuid.uuid4(), "ops-1")

    assert event_counts(store) == NOTHING
