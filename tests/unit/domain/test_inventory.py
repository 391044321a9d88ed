from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

import pytest
from eventsourcing.persistence import DatetimeAsISO, JSONTranscoder, Mapper, UUIDAsHex

from flightbook.domain import errors
from flightbook.domain.inventory import FlightInventory, FlightStatus, Hold
from flightbook.domain.values import Cabin, Fare, Money

pytestmark = pytest.mark.unit

DEPARTURE = datetime(2026, 12, 24, 10, 0, tzinfo=UTC)
ARRIVAL = DEPARTURE + timedelta(hours=8)
NOW = DEPARTURE - timedelta(days=30)
DEADLINE = NOW + timedelta(minutes=15)


def economy(seats: int = 2, overbooking: int = 0) -> Fare:
    return Fare(
        code="Y",
        cabin=Cabin.ECONOMY,
        price=Money(45000, "EUR"),
        seats=seats,
        refundable=False,
        overbooking=overbooking,
    )


def business() -> Fare:
    return Fare(
        code="J", cabin=Cabin.BUSINESS, price=Money(250000, "EUR"), seats=1, refundable=True
    )


def schedule(*fares: Fare) -> FlightInventory:
    """FB101 from LHR to JFK with ``fares`` (economy and business if none), just scheduled."""
    return FlightInventory.schedule(
        flight_number="FB101",
        origin="LHR",
        destination="JFK",
        departure=DEPARTURE,
        arrival=ARRIVAL,
        fares=list(fares) or [economy(), business()],
    )


def scheduled(*fares: Fare) -> FlightInventory:
    """A scheduled flight whose creation event was already collected."""
    inventory = schedule(*fares)
    inventory.collect_events()
    return inventory


def held(inventory: FlightInventory, seats: int = 1, fare: str = "Y") -> UUID:
    booking_id = uuid4()
    inventory.hold_seats(booking_id, fare, seats, DEADLINE)
    inventory.collect_events()
    return booking_id


# -- scheduling ---------------------------------------------------------------------------


def test_scheduling_a_flight_records_its_route_times_and_fares_as_primitives() -> None:
    fares = [economy(seats=150, overbooking=5), business()]

    inventory = schedule(*fares)

    (scheduled_event,) = inventory.collect_events()
    assert isinstance(scheduled_event, FlightInventory.Scheduled)
    assert scheduled_event.fares == [fare.to_dict() for fare in fares]
    assert inventory.status is FlightStatus.SCHEDULED
    assert (inventory.origin, inventory.destination) == ("LHR", "JFK")
    assert inventory.fare_codes == ["Y", "J"]
    assert inventory.fare("Y") == fares[0]
    assert inventory.seats_left("Y") == 155
    assert inventory.next_hold_deadline() is None


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"flight_number": "F"}, "flight_number"),
        ({"origin": "lhr"}, "origin"),
        ({"destination": "LHR"}, "destination"),
        ({"departure": DEPARTURE.replace(tzinfo=None)}, "departure"),
        ({"arrival": DEPARTURE}, "arrival"),
        ({"fares": []}, "fares"),
        ({"fares": [economy(), economy(seats=9)]}, "fares[1].code"),
        ({"fares": [economy(), "J"]}, "fares[1]"),
    ],
)
def test_an_invalid_schedule_is_refused_naming_the_field(
    changes: dict[str, object], field: str
) -> None:
    request: dict[str, object] = {
        "flight_number": "FB101",
        "origin": "LHR",
        "destination": "JFK",
        "departure": DEPARTURE,
        "arrival": ARRIVAL,
        "fares": [economy()],
    }
    request.update(changes)

    with pytest.raises(errors.InvalidValueError) as caught:
        FlightInventory.schedule(**request)  # type: ignore[arg-type]

    assert caught.value.field == field


# -- holding seats ------------------------------------------------------------------------


def test_holding_seats_records_who_holds_how_many_until_when() -> None:
    inventory = scheduled()
    booking_id = uuid4()

    inventory.hold_seats(booking_id, "Y", 2, DEADLINE, now=NOW)

    (seats_held,) = inventory.collect_events()
    assert isinstance(seats_held, FlightInventory.SeatsHeld)
    assert (seats_held.booking_id, seats_held.fare_code, seats_held.seats) == (booking_id, "Y", 2)
    assert seats_held.expires_at == DEADLINE
    assert inventory.held("Y") == 2
    assert inventory.seats_left("Y") == 0
    assert inventory.hold_of(booking_id) == Hold(2, DEADLINE)
    assert inventory.bookings_on_flight() == {booking_id}


def test_holding_more_seats_than_left_is_refused_and_records_nothing() -> None:
    """The refused hold leaves no pending event, so replay can never see it."""
    inventory = scheduled()
    held(inventory, seats=1)

    with pytest.raises(errors.SeatsUnavailableError) as caught:
        inventory.hold_seats(uuid4(), "Y", 2, DEADLINE)

    assert caught.value.code == "seats_unavailable"
    assert caught.value.field == "fare"
    assert (caught.value.requested, caught.value.available) == (2, 1)
    assert inventory.collect_events() == []
    assert inventory.seats_left("Y") == 1


def test_overbooking_allows_holds_beyond_the_seats() -> None:
    inventory = scheduled(economy(seats=2, overbooking=1))

    inventory.hold_seats(uuid4(), "Y", 3, DEADLINE)

    assert inventory.held("Y") == 3
    assert inventory.seats_left("Y") == 0


def test_holding_an_unknown_fare_is_refused_and_records_nothing() -> None:
    inventory = scheduled()

    with pytest.raises(errors.UnknownFareError) as caught:
        inventory.hold_seats(uuid4(), "F", 1, DEADLINE)

    assert (caught.value.code, caught.value.field) == ("unknown_fare", "fare")
    assert inventory.collect_events() == []


@pytest.mark.parametrize(
    ("booking_id", "seats", "expires_at", "field"),
    [
        (uuid4(), 0, DEADLINE, "seats"),
        (uuid4(), -1, DEADLINE, "seats"),
        (uuid4(), True, DEADLINE, "seats"),
        (uuid4(), 1, DEADLINE.replace(tzinfo=None), "expires_at"),
        ("not-a-uuid", 1, DEADLINE, "booking_id"),
    ],
)
def test_holding_with_invalid_values_is_refused_and_records_nothing(
    booking_id: object, seats: object, expires_at: object, field: str
) -> None:
    inventory = scheduled()

    with pytest.raises(errors.InvalidValueError) as caught:
        inventory.hold_seats(booking_id, "Y", seats, expires_at)  # type: ignore[arg-type]

    assert caught.value.field == field
    assert inventory.collect_events() == []


def test_holding_the_same_seats_again_for_the_same_booking_records_nothing() -> None:
    inventory = scheduled()
    booking_id = held(inventory, seats=2)

    inventory.hold_seats(booking_id, "Y", 2, DEADLINE + timedelta(minutes=1))

    assert inventory.collect_events() == []
    assert inventory.held("Y") == 2


def test_holding_the_same_seats_after_they_were_sold_records_nothing() -> None:
    inventory = scheduled()
    booking_id = held(inventory, seats=2)
    inventory.confirm_hold(booking_id)
    inventory.collect_events()

    inventory.hold_seats(booking_id, "Y", 2, DEADLINE)

    assert inventory.collect_events() == []
    assert (inventory.held("Y"), inventory.sold("Y")) == (0, 2)


@pytest.mark.parametrize(("fare", "seats"), [("Y", 2), ("J", 1)])
def test_holding_other_seats_for_a_booking_that_has_seats_is_refused(fare: str, seats: int) -> None:
    inventory = scheduled()
    booking_id = held(inventory, seats=1)

    with pytest.raises(errors.HoldConflictError) as caught:
        inventory.hold_seats(booking_id, fare, seats, DEADLINE)

    assert caught.value.code == "hold_conflict"
    assert inventory.collect_events() == []


def test_holding_seats_on_a_cancelled_flight_is_refused() -> None:
    inventory = scheduled()
    inventory.cancel("weather")
    inventory.collect_events()

    with pytest.raises(errors.FlightNotBookableError) as caught:
        inventory.hold_seats(uuid4(), "Y", 1, DEADLINE)

    assert caught.value.code == "flight_not_bookable"
    assert inventory.collect_events() == []


def test_holding_seats_once_the_flight_has_departed_is_refused() -> None:
    inventory = scheduled()

    with pytest.raises(errors.FlightNotBookableError):
        inventory.hold_seats(uuid4(), "Y", 1, DEADLINE, now=DEPARTURE)

    assert inventory.collect_events() == []


# -- confirming, releasing, expiring, returning -------------------------------------------


def test_confirming_a_hold_turns_held_seats_into_sold_seats() -> None:
    inventory = scheduled()
    booking_id = held(inventory, seats=2)

    inventory.confirm_hold(booking_id)

    (confirmed,) = inventory.collect_events()
    assert isinstance(confirmed, FlightInventory.HoldConfirmed)
    assert confirmed.seats == 2
    assert (inventory.held("Y"), inventory.sold("Y"), inventory.seats_left("Y")) == (0, 2, 0)
    assert inventory.bookings_on_flight() == {booking_id}
    assert inventory.next_hold_deadline() is None


def test_confirming_an_already_confirmed_hold_records_nothing() -> None:
    inventory = scheduled()
    booking_id = held(inventory)
    inventory.confirm_hold(booking_id)
    inventory.collect_events()

    inventory.confirm_hold(booking_id)

    assert inventory.collect_events() == []


def test_confirming_without_a_hold_is_an_illegal_transition() -> None:
    inventory = scheduled()

    with pytest.raises(errors.IllegalTransitionError) as caught:
        inventory.confirm_hold(uuid4())

    assert (caught.value.from_state, caught.value.to_state) == ("NONE", "SOLD")
    assert inventory.collect_events() == []


def test_confirming_a_hold_on_a_cancelled_flight_is_refused() -> None:
    inventory = scheduled()
    booking_id = held(inventory)
    inventory.cancel("strike")
    inventory.collect_events()

    with pytest.raises(errors.FlightNotBookableError):
        inventory.confirm_hold(booking_id)

    assert inventory.collect_events() == []
    assert inventory.held("Y") == 1


def test_releasing_a_hold_gives_the_seats_back() -> None:
    inventory = scheduled()
    booking_id = held(inventory, seats=2)

    inventory.release_hold(booking_id, "payment declined")

    (released,) = inventory.collect_events()
    assert isinstance(released, FlightInventory.HoldReleased)
    assert (released.seats, released.reason) == (2, "payment declined")
    assert inventory.seats_left("Y") == 2
    assert inventory.bookings_on_flight() == set()


def test_releasing_a_hold_that_does_not_exist_records_nothing() -> None:
    inventory = scheduled()

    inventory.release_hold(uuid4(), "retry")

    assert inventory.collect_events() == []


def test_releasing_without_a_reason_is_refused() -> None:
    inventory = scheduled()
    booking_id = held(inventory)

    with pytest.raises(errors.InvalidValueError) as caught:
        inventory.release_hold(booking_id, "  ")

    assert caught.value.field == "reason"
    assert inventory.collect_events() == []


def test_a_hold_expires_once_its_deadline_has_passed() -> None:
    inventory = scheduled()
    booking_id = held(inventory, seats=2)

    inventory.expire_hold(booking_id, DEADLINE)

    (expired,) = inventory.collect_events()
    assert isinstance(expired, FlightInventory.HoldExpired)
    assert (expired.seats, expired.expired_at) == (2, DEADLINE)
    assert inventory.seats_left("Y") == 2


def test_a_hold_cannot_expire_before_its_deadline() -> None:
    inventory = scheduled()
    booking_id = held(inventory)

    with pytest.raises(errors.HoldNotExpiredError) as caught:
        inventory.expire_hold(booking_id, DEADLINE - timedelta(seconds=1))

    assert caught.value.code == "hold_not_expired"
    assert inventory.collect_events() == []
    assert inventory.held("Y") == 1


def test_expiring_a_hold_that_does_not_exist_records_nothing() -> None:
    inventory = scheduled()
    booking_id = held(inventory)
    inventory.confirm_hold(booking_id)
    inventory.collect_events()

    inventory.expire_hold(booking_id, DEADLINE + timedelta(hours=1))

    assert inventory.collect_events() == []
    assert inventory.sold("Y") == 1


def test_expired_holds_and_the_next_deadline_are_queried_without_events() -> None:
    inventory = scheduled(economy(seats=9))
    early, late = uuid4(), uuid4()
    inventory.hold_seats(late, "Y", 1, DEADLINE + timedelta(minutes=5))
    inventory.hold_seats(early, "Y", 1, DEADLINE)
    inventory.collect_events()

    due_now = inventory.holds_expired_at(DEADLINE)
    due_later = inventory.holds_expired_at(DEADLINE + timedelta(hours=1))

    assert due_now == [early]
    assert due_later == [early, late]
    assert inventory.next_hold_deadline() == DEADLINE
    assert inventory.collect_events() == []


def test_sold_seats_of_a_cancelled_booking_go_back_on_sale() -> None:
    inventory = scheduled()
    booking_id = held(inventory, seats=2)
    inventory.confirm_hold(booking_id)
    inventory.collect_events()

    inventory.return_sold_seats(booking_id, "booking cancelled")

    (returned,) = inventory.collect_events()
    assert isinstance(returned, FlightInventory.SoldSeatsReturned)
    assert (returned.fare_code, returned.seats) == ("Y", 2)
    assert (inventory.sold("Y"), inventory.seats_left("Y")) == (0, 2)


def test_returning_seats_that_were_never_sold_records_nothing() -> None:
    inventory = scheduled()
    booking_id = held(inventory)

    inventory.return_sold_seats(booking_id, "booking cancelled")

    assert inventory.collect_events() == []
    assert inventory.held("Y") == 1


# -- changing fares ------------------------------------------------------------------------


def test_changing_a_fare_records_its_full_new_terms() -> None:
    inventory = scheduled()

    inventory.change_fare("Y", price=Money(39900, "EUR"), seats=10)

    (changed,) = inventory.collect_events()
    assert isinstance(changed, FlightInventory.FareChanged)
    assert (changed.price_amount, changed.currency) == (39900, "EUR")
    assert (changed.seats, changed.overbooking) == (10, 0)
    assert inventory.fare("Y").price == Money(39900, "EUR")
    assert inventory.seats_left("Y") == 10


def test_a_fare_change_that_changes_nothing_records_nothing() -> None:
    inventory = scheduled()

    inventory.change_fare("Y", seats=2, overbooking=0)
    inventory.change_fare("Y")

    assert inventory.collect_events() == []


def test_capacity_cannot_drop_below_seats_held_and_sold() -> None:
    inventory = scheduled(economy(seats=3))
    held(inventory, seats=1)
    inventory.confirm_hold(held(inventory, seats=1))
    inventory.collect_events()

    with pytest.raises(errors.CapacityBelowCommitmentsError) as caught:
        inventory.change_fare("Y", seats=1)

    assert (caught.value.code, caught.value.field) == ("capacity_below_commitments", "seats")
    assert (caught.value.capacity, caught.value.committed) == (1, 2)
    assert inventory.collect_events() == []
    assert inventory.fare("Y").seats == 3


def test_overbooking_counts_towards_capacity_when_shrinking_seats() -> None:
    inventory = scheduled(economy(seats=3))
    held(inventory, seats=2)

    inventory.change_fare("Y", seats=1, overbooking=1)

    assert inventory.seats_left("Y") == 0


@pytest.mark.parametrize(
    ("changes", "field"),
    [({"seats": 0}, "seats"), ({"overbooking": -1}, "overbooking"), ({"price": 5}, "price")],
)
def test_invalid_fare_changes_are_refused_naming_the_field(
    changes: dict[str, object], field: str
) -> None:
    inventory = scheduled()

    with pytest.raises(errors.InvalidValueError) as caught:
        inventory.change_fare("Y", **changes)  # type: ignore[arg-type]

    assert caught.value.field == field
    assert inventory.collect_events() == []


def test_changing_an_unknown_fare_is_refused() -> None:
    inventory = scheduled()

    with pytest.raises(errors.UnknownFareError):
        inventory.change_fare("F", seats=3)

    assert inventory.collect_events() == []


def test_changing_a_fare_of_a_cancelled_flight_is_refused() -> None:
    inventory = scheduled()
    inventory.cancel("weather")
    inventory.collect_events()

    with pytest.raises(errors.FlightNotBookableError):
        inventory.change_fare("Y", seats=3)

    assert inventory.collect_events() == []


# -- cancelling ---------------------------------------------------------------------------


def test_cancelling_a_flight_records_why_and_keeps_its_bookings_visible() -> None:
    inventory = scheduled()
    booking_id = held(inventory)

    inventory.cancel("weather")

    (cancelled,) = inventory.collect_events()
    assert isinstance(cancelled, FlightInventory.FlightCancelled)
    assert cancelled.reason == "weather"
    assert inventory.status is FlightStatus.CANCELLED
    assert inventory.bookings_on_flight() == {booking_id}


def test_cancelling_a_cancelled_flight_records_nothing() -> None:
    inventory = scheduled()
    inventory.cancel("weather")
    inventory.collect_events()

    inventory.cancel("again")

    assert inventory.collect_events() == []
    assert inventory.cancellation_reason == "weather"


# -- queries and replay -------------------------------------------------------------------


@pytest.mark.parametrize("query", ["fare", "seats_left", "held", "sold"])
def test_queries_about_an_unknown_fare_raise_unknown_fare(query: str) -> None:
    inventory = scheduled()

    with pytest.raises(errors.UnknownFareError):
        getattr(inventory, query)("Z")


def test_stored_events_replay_into_the_same_inventory() -> None:
    """Every event survives eventsourcing's JSON transcoder and rebuilds the state."""
    transcoder = JSONTranscoder()
    transcoder.register(UUIDAsHex())
    transcoder.register(DatetimeAsISO())
    mapper: Mapper[UUID] = Mapper(transcoder=transcoder)
    inventory = schedule(economy(seats=5), business())
    a, b, c, d = uuid4(), uuid4(), uuid4(), uuid4()
    inventory.hold_seats(a, "Y", 2, DEADLINE)
    inventory.hold_seats(b, "J", 1, DEADLINE)
    inventory.hold_seats(c, "Y", 1, DEADLINE)
    inventory.hold_seats(d, "Y", 1, DEADLINE)
    inventory.confirm_hold(a)
    inventory.release_hold(b, "declined")
    inventory.expire_hold(c, DEADLINE)
    inventory.return_sold_seats(a, "cancelled")
    inventory.change_fare("Y", price=Money(100, "USD"), overbooking=2)
    inventory.cancel("weather")
    events = inventory.collect_events()

    replayed: FlightInventory | None = None
    for stored in map(mapper.to_stored_event, events):
        replayed = mapper.to_domain_event(stored).mutate(replayed)  # type: ignore[attr-defined]

    assert replayed == inventory
    assert replayed is not None
    assert replayed.hold_of(d) == Hold(1, DEADLINE)
