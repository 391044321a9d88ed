"""A broker that comes back empty: the workers notice and catch up from the event store."""

from __future__ import annotations

import time

import msgspec
import pytest

from flightbook.config.settings import Settings
from tests.support.pipeline import (
    Pipeline,
    Process,
    book_many,
    fast,
    heads,
    low_watermarks,
    saga_done,
    schedule,
    wait_for_read_models,
    wait_until,
)
from tests.support.processes import PrivateBroker

pytestmark = pytest.mark.e2e


def _relayed(settings: Settings) -> bool:
    import psycopg

    assert settings.postgres_url is not None
    with psycopg.connect(settings.postgres_url) as conn:
        rows = conn.execute("SELECT context, position FROM relay.checkpoints").fetchall()
    done = {str(context): int(position) for context, position in rows}
    return all(done.get(c, 0) >= h for c, h in heads(settings).items())


@pytest.mark.timeout(240)
def test_events_the_broker_lost_before_the_workers_read_them_reach_the_read_models(
    pipeline: Pipeline,
    private_broker: PrivateBroker,
) -> None:
    """The workers stop; bookings are made and published; the broker dies and comes back
    empty (topics, messages and the groups' offsets gone). Restarted, the workers see it,
    catch up from the event store, and go on with what Kafka brings next."""
    settings, write_side, vault, mongo, cache, started, logs = pipeline
    config = fast(msgspec.structs.replace(settings, kafka_bootstrap=private_broker.url))
    relay, saga, bookings, flights = (
        Process(name, config, logs) for name in ("relay", "saga", "bookings", "flights")
    )
    started += [relay, saga, bookings, flights]
    flight = schedule(write_side, seats=500)
    for process in (relay, saga, bookings, flights):
        process.start()
    first = book_many(write_side, vault, [flight], 40)
    wait_until(lambda: saga_done(settings, len(first)), 60, "the first bookings settled")
    wait_for_read_models(settings, mongo, cache, timeout=60)
    assert bookings.stop() == 0
    assert flights.stop() == 0

    second = book_many(write_side, vault, [flight], 60, start=40)
    wait_until(lambda: saga_done(settings, len(first) + len(second)), 60, "more bookings settled")
    wait_until(lambda: _relayed(settings), 30, "the relay published everything")
    unread = {c: h - low_watermarks(mongo)[c] for c, h in heads(settings).items()}
    private_broker.kill()
    private_broker.start()  # empty, same port
    restarted = time.monotonic()
    bookings.start()
    flights.start()

    differences = wait_for_read_models(settings, mongo, cache, timeout=60)
    took = time.monotonic() - restarted
    third = book_many(write_side, vault, [flight], 10, start=100)  # Kafka works again
    wait_until(lambda: saga_done(settings, 110), 60, "the last bookings settled")
    after = wait_for_read_models(settings, mongo, cache, timeout=60)

    assert all(n > 0 for n in unread.values()), unread
    assert differences == [], "\n".join(str(d) for d in differences[:20])
    assert after == [], "\n".join(str(d) for d in after[:20])
    assert len(third) == 10
    assert took < 45
    log = (logs / "bookings.log").read_text()
    assert '"projection.catch_up_started"' in log
    assert '"projection.broker_reset"' in log or log.count('"reason": "start"') >= 2
    assert bookings.running()
    assert flights.running()
