"""A booking's statuses as pushed, on the in-memory read models: order, resume, the end."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from flightbook.http.problems import Problem
from flightbook.http.tokens import Principal
from flightbook.queries.freshness import NotCaughtUpError
from flightbook.queries.memory import MemoryReadModels
from flightbook.queries.models import StatusEvent
from flightbook.queries.push import StreamGate, _messages
from flightbook.queries.service import QueryService
from tests.support import documents
from tests.support.readside import write_booking

pytestmark = pytest.mark.unit

PATH = documents.CONFIRMED_PATH


def _write(store: MemoryReadModels, booking_id: str, statuses: int) -> None:
    write_booking(store, documents.booking_through(statuses, booking_id))


async def _collect(
    service: QueryService, booking_id: str, *, after: int = 0
) -> list[StatusEvent | None]:
    got: list[StatusEvent | None] = []
    events = service.status_events(uuid.UUID(booking_id), after=after, keepalive=0.05)
    async for event in events:
        got.append(event)
    return got


def test_every_status_comes_once_in_order_and_the_stream_ends_at_the_final_one() -> None:
    store = MemoryReadModels()
    service = QueryService(store.read_models(), wait_seconds=0.1)
    booking_id = str(uuid.uuid4())
    _write(store, booking_id, 1)

    async def scenario() -> list[StatusEvent | None]:
        events = service.status_events(uuid.UUID(booking_id), after=0, keepalive=0.05)
        got = [await anext(events)]  # what was reached before it listened
        got.append(await anext(events))  # nothing written meanwhile: a keep-alive
        _write(store, booking_id, 3)  # two statuses in one write (a batch of the worker)
        got += [await anext(events), await anext(events)]
        _write(store, booking_id, 3)  # an announcement that changes nothing
        _write(store, booking_id, 4)
        got += [event async for event in events]
        return got

    got = asyncio.run(scenario())

    assert got[1] is None
    events = [e for e in got if e is not None]
    assert [e.status for e in events] == list(PATH)
    assert [e.final for e in events] == [False, False, False, True]
    assert [e.version for e in events] == [1, 3, 3, 4]
    assert len(got) == 5  # the stream ended after CONFIRMED, nothing repeated


def test_a_resumed_stream_sends_only_what_came_after_and_a_finished_one_ends_at_once() -> None:
    store = MemoryReadModels()
    service = QueryService(store.read_models(), wait_seconds=0.1)
    booking_id = str(uuid.uuid4())
    _write(store, booking_id, 4)

    resumed = asyncio.run(_collect(service, booking_id, after=2))
    finished = asyncio.run(_collect(service, booking_id, after=4))

    assert [e.status for e in resumed if e is not None] == ["PAYMENT_AUTHORIZED", "CONFIRMED"]
    assert finished == []


def test_a_keep_alive_is_a_comment_line_and_never_an_event_a_client_would_see() -> None:
    async def idle_then_one() -> AsyncIterator[StatusEvent | None]:
        yield None
        yield StatusEvent(
            booking_id=uuid.uuid4(),
            status="REQUESTED",
            at=documents.CREATED,
            version=1,
            final=False,
        )

    async def frames() -> list[bytes]:
        gate = StreamGate(limit=1)
        return [
            message.encode() async for message in _messages(idle_then_one(), after=3, gate=gate)
        ]

    keep_alive, status = asyncio.run(frames())

    assert keep_alive == b": keep-alive\r\n\r\n"
    assert status.startswith(b"id: 4\r\nevent: status\r\ndata: {")


def test_a_process_holding_its_most_streams_refuses_one_more_until_one_ends() -> None:
    gate = StreamGate(limit=1)

    with gate.held(), pytest.raises(Problem) as refused:
        gate.check()
    gate.check()  # the stream ended: room again

    assert refused.value.status_code == 503
    assert gate.open == 0


def test_a_stream_is_counted_only_while_its_body_runs() -> None:
    gate = StreamGate(limit=1)

    async def idle() -> AsyncIterator[StatusEvent | None]:
        yield None

    async def two_frames_counted() -> list[int]:
        counts = []
        async for _message in _messages(idle(), after=0, gate=gate):
            counts.append(gate.open)
        return counts

    _messages(idle(), after=0, gate=gate)  # a stream whose client went before its first byte

    assert asyncio.run(two_frames_counted()) == [1]
    assert gate.open == 0


def _customer(subject: str = "alice") -> Principal:
    return Principal(subject=subject, roles=frozenset({"customer"}))


def test_a_booking_not_yet_projected_is_waited_for_by_its_announcement() -> None:
    store = MemoryReadModels()
    service = QueryService(store.read_models(), wait_seconds=5.0)
    booking_id = str(uuid.uuid4())

    async def scenario() -> tuple[int, str | None]:
        waiting = asyncio.create_task(
            service.arriving_status_path(uuid.UUID(booking_id), _customer(), {"booking": 7})
        )
        while not store.watching(f"v1:booking:{booking_id}"):  # it listens before it reads
            await asyncio.sleep(0)
        reads = store.reads.get("bookings_v1", 0)
        _write(store, booking_id, 1)  # the worker writes it and announces it
        found = await waiting
        return store.reads.get("bookings_v1", 0) - reads, found.steps[-1].status if found else None

    reads_after_the_write, status = asyncio.run(scenario())

    assert status == "REQUESTED"
    assert reads_after_the_write == 0  # read from the announced hash, on the announcement


def test_an_arriving_booking_of_another_customer_is_not_shown() -> None:
    store = MemoryReadModels()
    service = QueryService(store.read_models(), wait_seconds=5.0)
    booking_id = str(uuid.uuid4())
    _write(store, booking_id, 1)

    found = asyncio.run(
        service.arriving_status_path(uuid.UUID(booking_id), _customer("mallory"), {"booking": 7})
    )

    assert found is None


def test_a_booking_absent_once_its_positions_are_applied_does_not_exist() -> None:
    store = MemoryReadModels()
    service = QueryService(store.read_models(), wait_seconds=5.0)
    store.put_document("projection_checkpoints", {"_id": "bookings:booking", "low_watermark": 9})

    found = asyncio.run(service.arriving_status_path(uuid.uuid4(), _customer(), {"booking": 7}))

    assert found is None


def test_a_booking_neither_there_nor_applied_within_the_bound_is_not_caught_up() -> None:
    store = MemoryReadModels()
    service = QueryService(store.read_models(), wait_seconds=0.05)

    with pytest.raises(NotCaughtUpError) as raised:
        asyncio.run(service.arriving_status_path(uuid.uuid4(), _customer(), {"booking": 7}))

    assert raised.value.pending == [("booking", 7)]


def test_a_booking_whose_hash_is_older_than_its_statuses_is_read_from_its_document() -> None:
    store = MemoryReadModels()
    service = QueryService(store.read_models(), wait_seconds=0.1)
    doc = documents.booking_through(2)
    store.put_document("bookings_v1", doc)
    store.put_hash(f"v1:booking:{doc['_id']}", {"_v": 2, "status": "SEATS_HELD"})  # older shape

    path = asyncio.run(service.status_path(uuid.UUID(doc["_id"]), _customer()))
    foreign = asyncio.run(service.status_path(uuid.UUID(doc["_id"]), _customer("mallory")))

    assert path is not None
    assert [step.status for step in path.steps] == ["REQUESTED", "SEATS_HELD"]
    assert foreign is None
