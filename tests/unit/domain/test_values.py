from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from flightbook.domain.errors import CurrencyMismatchError, DomainError, InvalidValueError
from flightbook.domain.values import (
    CURRENCY_PATTERN,
    EMAIL_PATTERN,
    IATA_PATTERN,
    NAME_PATTERN,
    TEXT_PATTERN,
    Cabin,
    Fare,
    Money,
    Passenger,
    check_schedule,
    fare_code,
    flight_number,
    iata_code,
    utc_datetime,
)

pytestmark = pytest.mark.unit


# -- Money --------------------------------------------------------------------------------


def test_money_is_built_from_integer_minor_units_and_an_iso_currency() -> None:
    money = Money.create(45000, "EUR")

    assert money == Money(45000, "EUR")
    assert money.to_dict() == {"amount": 45000, "currency": "EUR"}


@pytest.mark.parametrize(
    ("amount", "currency", "field"),
    [
        (-1, "EUR", "price.amount"),
        (1.5, "EUR", "price.amount"),
        (True, "EUR", "price.amount"),
        ("100", "EUR", "price.amount"),
        (100, "eur", "price.currency"),
        (100, "EURO", "price.currency"),
        (100, "", "price.currency"),
        (100, None, "price.currency"),
    ],
)
def test_invalid_money_is_refused_naming_the_field(
    amount: object, currency: object, field: str
) -> None:
    with pytest.raises(InvalidValueError) as caught:
        Money.create(amount, currency)

    assert caught.value.field == field
    assert caught.value.code == "invalid_value"


def test_money_errors_use_the_given_field_prefix() -> None:
    with pytest.raises(InvalidValueError) as caught:
        Money.create(-5, "EUR", field="fares[1].price")

    assert caught.value.field == "fares[1].price.amount"


def test_money_adds_and_multiplies_within_one_currency() -> None:
    price = Money(1250, "EUR")

    total = price.multiply(3) + Money(10, "EUR")

    assert total == Money(3760, "EUR")
    assert price.add(Money.zero("EUR")) == price


def test_money_compares_within_one_currency() -> None:
    small, big = Money(1, "EUR"), Money(2, "EUR")

    assert small < big
    assert small <= big
    assert big > small
    assert big >= small
    assert (small > big) is False


@pytest.mark.parametrize(
    "combine",
    [
        lambda a, b: a + b,
        lambda a, b: a < b,
        lambda a, b: a <= b,
        lambda a, b: a > b,
        lambda a, b: a >= b,
    ],
)
def test_money_in_different_currencies_does_not_mix(combine: object) -> None:
    assert callable(combine)

    with pytest.raises(CurrencyMismatchError) as caught:
        combine(Money(1, "EUR"), Money(1, "USD"))

    assert caught.value.code == "currency_mismatch"


@pytest.mark.parametrize("factor", [-1, True, 1.5])
def test_money_multiplier_must_be_a_non_negative_integer(factor: object) -> None:
    with pytest.raises(InvalidValueError) as caught:
        Money(1, "EUR").multiply(factor)  # type: ignore[arg-type]

    assert caught.value.field == "factor"


def test_money_round_trips_through_a_dict() -> None:
    money = Money(99, "GBP")

    assert Money.from_dict(money.to_dict()) == money


# -- codes -------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["LHR", "JFK", "CDG"])
def test_iata_code_accepts_three_uppercase_letters(value: str) -> None:
    assert iata_code(value, "origin") == value


@pytest.mark.parametrize("value", ["lhr", "LH", "LHRX", "L1R", "", 123, None])
def test_iata_code_refuses_anything_else_naming_the_field(value: object) -> None:
    with pytest.raises(InvalidValueError) as caught:
        iata_code(value, "destination")

    assert caught.value.field == "destination"


@pytest.mark.parametrize("value", ["Y", "J", "Y2", "ECONFLEX", "B1234567"])
def test_fare_code_accepts_a_letter_then_up_to_seven_letters_or_digits(value: str) -> None:
    assert fare_code(value) == value


@pytest.mark.parametrize("value", ["", "y", "1Y", "ECONFLEX1", "Y-2", "Y ", None])
def test_fare_code_refuses_other_codes(value: object) -> None:
    with pytest.raises(InvalidValueError) as caught:
        fare_code(value)

    assert caught.value.field == "fare"


@pytest.mark.parametrize("value", ["FB101", "BA117", "U21", "9W1234", "BA117A", "AA1"])
def test_flight_number_accepts_designator_digits_and_optional_suffix(value: str) -> None:
    assert flight_number(value) == value


@pytest.mark.parametrize("value", ["FB", "F", "FB12345", "fb101", "FB101AB", "FBX101", ""])
def test_flight_number_refuses_other_shapes(value: str) -> None:
    with pytest.raises(InvalidValueError) as caught:
        flight_number(value)

    assert caught.value.field == "flight_number"


# -- times -------------------------------------------------------------------------------


def test_aware_datetimes_are_converted_to_utc() -> None:
    paris = timezone(timedelta(hours=1))

    moment = utc_datetime(datetime(2026, 12, 24, 11, 0, tzinfo=paris), "departure")

    assert moment == datetime(2026, 12, 24, 10, 0, tzinfo=UTC)
    assert moment.tzinfo is UTC


@pytest.mark.parametrize("value", [datetime(2026, 12, 24, 10, 0), "2026-12-24T10:00:00Z", None])  # noqa: DTZ001
def test_naive_or_non_datetimes_are_refused(value: object) -> None:
    with pytest.raises(InvalidValueError) as caught:
        utc_datetime(value, "departure")

    assert caught.value.field == "departure"


def test_a_schedule_needs_arrival_strictly_after_departure() -> None:
    departure = datetime(2026, 12, 24, 10, 0, tzinfo=UTC)

    with pytest.raises(InvalidValueError) as caught:
        check_schedule(departure, departure)

    assert caught.value.field == "arrival"
    assert check_schedule(departure, departure + timedelta(minutes=1))[1] > departure


def test_a_schedule_names_the_naive_time() -> None:
    aware = datetime(2026, 12, 24, 10, 0, tzinfo=UTC)

    with pytest.raises(InvalidValueError) as caught:
        check_schedule(aware.replace(tzinfo=None), aware)

    assert caught.value.field == "departure"


# -- fares -------------------------------------------------------------------------------


def test_a_fare_round_trips_through_flat_primitives() -> None:
    fare = Fare.create(
        code="J",
        cabin="business",
        price=Money(250000, "EUR"),
        seats=12,
        refundable=True,
        overbooking=2,
    )

    data = fare.to_dict()

    assert data == {
        "code": "J",
        "cabin": "business",
        "price_amount": 250000,
        "currency": "EUR",
        "seats": 12,
        "refundable": True,
        "overbooking": 2,
    }
    assert Fare.from_dict(data) == fare
    assert fare.cabin is Cabin.BUSINESS
    assert fare.capacity == 14


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"code": "y"}, "fares[0].code"),
        ({"cabin": "steerage"}, "fares[0].cabin"),
        ({"price": 100}, "fares[0].price"),
        ({"seats": 0}, "fares[0].seats"),
        ({"seats": True}, "fares[0].seats"),
        ({"refundable": "yes"}, "fares[0].refundable"),
        ({"overbooking": -1}, "fares[0].overbooking"),
    ],
)
def test_invalid_fares_are_refused_naming_the_field(changes: dict[str, object], field: str) -> None:
    fields: dict[str, object] = {
        "code": "Y",
        "cabin": "economy",
        "price": Money(100, "EUR"),
        "seats": 10,
        "refundable": False,
    }
    fields.update(changes)

    with pytest.raises(InvalidValueError) as caught:
        Fare.create(**fields, field="fares[0]")  # type: ignore[arg-type]

    assert caught.value.field == field


def test_a_fare_read_from_a_dict_names_the_price_field() -> None:
    data: dict[str, object] = {
        "code": "Y",
        "cabin": "economy",
        "price_amount": -1,
        "currency": "EUR",
        "seats": 1,
        "refundable": False,
    }

    with pytest.raises(InvalidValueError) as caught:
        Fare.from_dict(data, field="fares[3]")

    assert caught.value.field == "fares[3].price.amount"


# -- passengers --------------------------------------------------------------------------


def test_a_passenger_is_trimmed_and_kept() -> None:
    passenger = Passenger.at(0, name="  Ada Lovelace ", email=" ada@example.com ")

    assert passenger == Passenger(name="Ada Lovelace", email="ada@example.com")
    assert Passenger.from_dict(passenger.to_dict()) == passenger


@pytest.mark.parametrize(
    ("name", "email", "field"),
    [
        ("", "ada@example.com", "passengers[2].name"),
        ("   ", "ada@example.com", "passengers[2].name"),
        ("A" * 101, "ada@example.com", "passengers[2].name"),
        (None, "ada@example.com", "passengers[2].name"),
        ("Ada", "ada.example.com", "passengers[2].email"),
        ("Ada", "@example.com", "passengers[2].email"),
        ("Ada", "ada@example", "passengers[2].email"),
        ("Ada", "ada@@example.com", "passengers[2].email"),
        ("Ada", "ada@exa mple.com", "passengers[2].email"),
        ("Ada", "ada@example..com", "passengers[2].email"),
        ("Ada", "a" * 243 + "@example.com", "passengers[2].email"),
        ("Ada", 7, "passengers[2].email"),
    ],
)
def test_invalid_passengers_are_refused_naming_the_indexed_field(
    name: object, email: object, field: str
) -> None:
    with pytest.raises(InvalidValueError) as caught:
        Passenger.at(2, name=name, email=email)

    assert caught.value.field == field
    assert isinstance(caught.value, DomainError)


def test_names_of_exactly_one_hundred_characters_are_accepted() -> None:
    passenger = Passenger.create(name="A" * 100, email="a@b.co")

    assert len(passenger.name) == 100


@pytest.mark.parametrize(
    "name",
    [
        "Ada\x00Lovelace",
        "\x1b[31mAda\x1b[0m",
        "Ada\x9b",
        "Ada\n",
        "Ada\u202eecalevoL",
        "\u200b\u200c\u200d",
        "\ufeff",
        "\u00a0\u3000",
    ],
)
def test_a_name_with_a_control_character_or_nothing_visible_is_refused(name: str) -> None:
    with pytest.raises(InvalidValueError) as caught:
        Passenger.at(0, name=name, email="ada@example.com")

    assert caught.value.field == "passengers[0].name"


@pytest.mark.parametrize(
    "email", ["ada\x00@example.com", "ada@example.com\x1b[0m", "\u200bada@example.com"]
)
def test_an_email_with_a_control_or_invisible_character_is_refused(email: str) -> None:
    with pytest.raises(InvalidValueError) as caught:
        Passenger.at(0, name="Ada", email=email)

    assert caught.value.field == "passengers[0].email"


def test_names_and_emails_are_normalised_to_nfc() -> None:
    passenger = Passenger.create(name="Zoe\u0308 No\u0308el", email="zoe\u0308@example.com")

    assert passenger.name == "Zo\u00eb N\u00f6el"
    assert passenger.email == "zo\u00eb@example.com"


def test_the_name_and_email_patterns_are_anchored_and_read_alike_in_json_schema() -> None:
    for pattern in (NAME_PATTERN, EMAIL_PATTERN, TEXT_PATTERN, IATA_PATTERN, CURRENCY_PATTERN):
        assert pattern.startswith("^")
        assert pattern.endswith("$")
        # constructs whose meaning differs between Python and ECMA-262 regular expressions
        assert not any(token in pattern for token in ("\\s", "\\w", "\\d", "\\b", "(?i"))
