from __future__ import annotations

from typing import TYPE_CHECKING, Any
from uuid import UUID, uuid4

import pytest
from eventsourcing.persistence import DatetimeAsISO, JSONTranscoder, Mapper, UUIDAsHex

from flightbook.domain.errors import IllegalTransitionError, InvalidValueError, PaymentStateError
from flightbook.domain.payment import (
    ALLOWED_PAYMENT_TRANSITIONS,
    Payment,
    PaymentStatus,
    payment_id_for,
)
from flightbook.domain.values import Money

if TYPE_CHECKING:
    from collections.abc import Callable

pytestmark = pytest.mark.unit


def authorized(amount: int = 90000) -> Payment:
    booking_id = uuid4()
    payment = Payment.authorized(
        payment_id=payment_id_for(booking_id),
        booking_id=booking_id,
        amount=amount,
        currency="EUR",
        gateway_ref="auth_1",
    )
    payment.collect_events()
    return payment


def declined() -> Payment:
    booking_id = uuid4()
    payment = Payment.declined(
        payment_id=payment_id_for(booking_id),
        booking_id=booking_id,
        amount=90000,
        currency="EUR",
        reason="insufficient_funds",
    )
    payment.collect_events()
    return payment


def payment_in(status: PaymentStatus) -> Payment:
    if status is PaymentStatus.DECLINED:
        return declined()
    payment = authorized()
    if status in (PaymentStatus.CAPTURED, PaymentStatus.REFUNDED):
        payment.capture("cap_1")
    if status is PaymentStatus.REFUNDED:
        payment.refund(90000, "ref_1")
    if status is PaymentStatus.VOIDED:
        payment.void()
    payment.collect_events()
    return payment


def command(payment: Payment, target: PaymentStatus) -> Callable[[], None]:
    commands: dict[PaymentStatus, Callable[[], None]] = {
        PaymentStatus.CAPTURED: lambda: payment.capture("cap_2"),
        PaymentStatus.VOIDED: payment.void,
        PaymentStatus.REFUNDED: lambda: payment.refund(100, "ref_2"),
    }
    return commands[target]


# -- ids -----------------------------------------------------------------------------------


def test_a_booking_always_gets_the_same_payment_id() -> None:
    booking_id = UUID("6f1c1c7e-7d57-4bd0-9d3b-3f0d6d1d2a10")

    first, second = payment_id_for(booking_id), payment_id_for(booking_id)

    assert first == second
    assert first != payment_id_for(uuid4())
    assert first.version == 5


# -- creation ------------------------------------------------------------------------------


def test_an_authorized_payment_starts_with_an_authorized_event_under_the_given_id() -> None:
    booking_id = uuid4()
    payment_id = payment_id_for(booking_id)

    payment = Payment.authorized(
        payment_id=payment_id,
        booking_id=booking_id,
        amount=90000,
        currency="EUR",
        gateway_ref="auth_1",
    )

    (authorized_event,) = payment.collect_events()
    assert isinstance(authorized_event, Payment.Authorized)
    assert payment.id == payment_id
    assert payment.status is PaymentStatus.AUTHORIZED
    assert payment.money == Money(90000, "EUR")
    assert (payment.booking_id, payment.gateway_ref) == (booking_id, "auth_1")


def test_a_declined_payment_starts_with_a_declined_event() -> None:
    booking_id = uuid4()

    payment = Payment.declined(
        payment_id=payment_id_for(booking_id),
        booking_id=booking_id,
        amount=500,
        currency="GBP",
        reason="card_expired",
    )

    (declined_event,) = payment.collect_events()
    assert isinstance(declined_event, Payment.Declined)
    assert payment.status is PaymentStatus.DECLINED
    assert payment.decline_reason == "card_expired"
    assert payment.gateway_ref is None


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"payment_id": "x"}, "payment_id"),
        ({"booking_id": "x"}, "booking_id"),
        ({"amount": -1}, "amount.amount"),
        ({"amount": 1.5}, "amount.amount"),
        ({"currency": "eur"}, "amount.currency"),
        ({"gateway_ref": ""}, "gateway_ref"),
    ],
)
def test_an_invalid_authorization_is_refused_naming_the_field(
    changes: dict[str, object], field: str
) -> None:
    fields: dict[str, Any] = {
        "payment_id": uuid4(),
        "booking_id": uuid4(),
        "amount": 100,
        "currency": "EUR",
        "gateway_ref": "auth_1",
    }
    fields.update(changes)

    with pytest.raises(InvalidValueError) as caught:
        Payment.authorized(**fields)

    assert caught.value.field == field


def test_a_decline_needs_a_reason() -> None:
    with pytest.raises(InvalidValueError) as caught:
        Payment.declined(
            payment_id=uuid4(), booking_id=uuid4(), amount=1, currency="EUR", reason=" "
        )

    assert caught.value.field == "reason"


# -- transitions ---------------------------------------------------------------------------


def test_capturing_an_authorized_payment_records_the_gateway_reference() -> None:
    payment = authorized()

    payment.capture("cap_1")

    (captured,) = payment.collect_events()
    assert isinstance(captured, Payment.Captured)
    assert captured.gateway_ref == "cap_1"
    assert (payment.status, payment.capture_ref) == (PaymentStatus.CAPTURED, "cap_1")


def test_voiding_an_authorized_payment_records_a_voided_event() -> None:
    payment = authorized()

    payment.void()

    (voided,) = payment.collect_events()
    assert isinstance(voided, Payment.Voided)
    assert payment.status is PaymentStatus.VOIDED


@pytest.mark.parametrize("amount", [1, 45000, 90000])
def test_a_captured_payment_can_be_refunded_up_to_the_captured_amount(amount: int) -> None:
    payment = payment_in(PaymentStatus.CAPTURED)

    payment.refund(amount, "ref_1")

    (refunded,) = payment.collect_events()
    assert isinstance(refunded, Payment.Refunded)
    assert (refunded.amount, refunded.gateway_ref) == (amount, "ref_1")
    assert (payment.status, payment.refunded_amount) == (PaymentStatus.REFUNDED, amount)


@pytest.mark.parametrize("amount", [0, -5, 90001, True])
def test_a_refund_outside_the_captured_amount_is_refused(amount: int) -> None:
    payment = payment_in(PaymentStatus.CAPTURED)

    with pytest.raises(InvalidValueError) as caught:
        payment.refund(amount, "ref_1")

    assert caught.value.field == "amount"
    assert payment.collect_events() == []
    assert payment.status is PaymentStatus.CAPTURED


def test_a_gateway_reference_is_required_to_capture_or_refund() -> None:
    payment = payment_in(PaymentStatus.CAPTURED)

    with pytest.raises(InvalidValueError) as caught:
        payment.refund(1, "")

    assert caught.value.field == "gateway_ref"
    assert payment.collect_events() == []


ALL_PAIRS = [
    (s, t)
    for s in PaymentStatus
    for t in (PaymentStatus.CAPTURED, PaymentStatus.VOIDED, PaymentStatus.REFUNDED)
]


@pytest.mark.parametrize(("status", "target"), ALL_PAIRS)
def test_every_payment_transition_follows_the_status_graph(
    status: PaymentStatus, target: PaymentStatus
) -> None:
    """Allowed: one event. Into the current status: no-op. Anything else: refused."""
    payment = payment_in(status)
    act = command(payment, target)

    if target in ALLOWED_PAYMENT_TRANSITIONS[status]:
        act()
        assert payment.status is target
        assert len(payment.collect_events()) == 1
    elif target is status:
        act()
        assert payment.status is status
        assert payment.collect_events() == []
    else:
        with pytest.raises(PaymentStateError) as caught:
            act()
        assert isinstance(caught.value, IllegalTransitionError)
        assert (caught.value.from_state, caught.value.to_state) == (status, target)
        assert caught.value.code == "payment_state"
        assert payment.collect_events() == []


# -- replay ------------------------------------------------------------------------------


@pytest.mark.parametrize("status", list(PaymentStatus))
def test_stored_events_replay_into_the_same_payment(status: PaymentStatus) -> None:
    transcoder = JSONTranscoder()
    transcoder.register(UUIDAsHex())
    transcoder.register(DatetimeAsISO())
    mapper: Mapper[UUID] = Mapper(transcoder=transcoder)
    booking_id = uuid4()
    if status is PaymentStatus.DECLINED:
        payment = Payment.declined(
            payment_id=payment_id_for(booking_id),
            booking_id=booking_id,
            amount=1,
            currency="EUR",
            reason="no",
        )
    else:
        payment = Payment.authorized(
            payment_id=payment_id_for(booking_id),
            booking_id=booking_id,
            amount=100,
            currency="EUR",
            gateway_ref="a",
        )
        if status in (PaymentStatus.CAPTURED, PaymentStatus.REFUNDED):
            payment.capture("c")
        if status is PaymentStatus.REFUNDED:
            payment.refund(40, "r")
        if status is PaymentStatus.VOIDED:
            payment.void()
    events = payment.collect_events()

    replayed: Payment | None = None
    for stored in map(mapper.to_stored_event, events):
        replayed = mapper.to_domain_event(stored).mutate(replayed)  # type: ignore[attr-defined]

    assert replayed == payment
    assert replayed is not None
    assert replayed.status is status
