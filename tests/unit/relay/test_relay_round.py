"""relay_round and plan_round: several logs, one flush, checkpoints only after it (no sockets)."""

from __future__ import annotations

import pytest

from flightbook.relay.relay import (
    HeldCheckpoints,
    LogSource,
    MemoryCheckpoints,
    RelayDeliveryError,
    plan_round,
    relay_round,
)
from tests.unit.relay.test_held_checkpoints import CountedCheckpoints
from tests.unit.relay.test_relay_batch import FakeProducer, Log, a_log_of

pytestmark = pytest.mark.unit

EVERY = ("booking", "inventory", "payment")


def _source(context: str, log: Log) -> LogSource:
    return LogSource(context, log.recorder, log.translate, f"t.{context}.events")


# -- plan_round -----------------------------------------------------------------------------


def test_a_round_reads_only_the_logs_that_notified() -> None:
    assert plan_round(notified=["payment"], full=(), every=EVERY, quiet=False) == {"payment"}


def test_a_log_whose_page_was_full_is_read_again_beside_those_that_notified() -> None:
    planned = plan_round(notified=["booking"], full=["inventory"], every=EVERY, quiet=False)

    assert planned == {"booking", "inventory"}


def test_nothing_notified_and_no_page_full_means_no_round() -> None:
    assert plan_round(notified=(), full=(), every=EVERY, quiet=False) == frozenset()


def test_after_a_quiet_wait_every_log_is_read_in_case_a_notification_was_lost() -> None:
    assert plan_round(notified=(), full=(), every=EVERY, quiet=True) == set(EVERY)


def test_a_channel_the_relay_does_not_know_reads_nothing() -> None:
    assert plan_round(notified=["", "other"], full=(), every=EVERY, quiet=False) == frozenset()


# -- relay_round ----------------------------------------------------------------------------


def test_the_pages_of_every_log_are_flushed_once_and_checkpointed_together_after_it() -> None:
    bookings, payments = a_log_of(3), a_log_of(2)
    producer = FakeProducer()
    stored = CountedCheckpoints({})
    held = HeldCheckpoints(stored)
    producer.before_flush = lambda: written_at_flush.append(list(stored.writes))
    written_at_flush: list[list[dict[str, int]]] = []

    results = relay_round(
        sources=[_source("booking", bookings), _source("payment", payments)],
        checkpoints=held,
        producer=producer,
    )
    held.flush()

    assert producer.flushes == 1
    assert [(r.context, r.count, r.published) for r in results] == [
        ("booking", 3, 3),
        ("payment", 2, 2),
    ]
    assert [m.topic for m in producer.sent] == ["t.booking.events"] * 3 + ["t.payment.events"] * 2
    assert written_at_flush == [[]]  # nothing written before the broker acknowledged
    assert stored.writes == [{"booking": 3, "payment": 2}]  # then one statement for both


def test_one_failed_message_leaves_every_log_of_the_round_where_it_was() -> None:
    bookings, payments = a_log_of(3), a_log_of(2)
    checkpoints = MemoryCheckpoints({})
    sources = [_source("booking", bookings), _source("payment", payments)]

    with pytest.raises(RelayDeliveryError, match="1 of 5 booking\\+payment messages failed"):
        relay_round(sources=sources, checkpoints=checkpoints, producer=FakeProducer(failing={4}))
    assert checkpoints.positions() == {}

    again = FakeProducer()
    relay_round(sources=sources, checkpoints=checkpoints, producer=again)
    assert len(again.sent) == 5  # the whole round again
    assert checkpoints.positions() == {"booking": 3, "payment": 2}


def test_an_empty_log_in_the_round_costs_no_flush_and_moves_no_checkpoint() -> None:
    producer = FakeProducer()
    checkpoints = MemoryCheckpoints({})

    results = relay_round(
        sources=[_source("booking", Log())], checkpoints=checkpoints, producer=producer
    )

    assert [r.count for r in results] == [0]
    assert producer.flushes == 0
    assert checkpoints.positions() == {}
