"""``GET /bookings/{id}/events`` on MongoDB and Redis, fed as the bookings worker feeds it."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator

import httpx
import pytest

from flightbook.http.positions import encode_positions
from tests.support import documents, sse
from tests.support.api import Api, Headers
from tests.support.readside import ServerReadSide, write_booking
from tests.support.system import eventually

pytestmark = pytest.mark.integration

PATH = documents.CONFIRMED_PATH


@pytest.fixture
def live(live_url: str) -> Iterator[httpx.Client]:
    """A client of the real query API, served (:func:`live_url`)."""
    with httpx.Client(base_url=live_url, timeout=30) as client:
        yield client


def test_statuses_arrive_in_order_each_once_and_the_stream_closes_when_final(
    live: httpx.Client, auth: Headers, servers: ServerReadSide
) -> None:
    doc = documents.booking_through(1)
    write_booking(servers, doc)
    got: list[dict[str, str]] = []

    with live.stream(
        "GET", f"/bookings/{doc['_id']}/events", headers=auth("alice", "customer")
    ) as stream:
        assert stream.status_code == 200
        assert stream.headers["content-type"].startswith("text/event-stream")
        events = sse.events(stream.iter_lines())
        got.append(next(events))
        write_booking(servers, documents.booking_through(2, doc["_id"]))
        got.append(next(events))
        write_booking(
            servers, documents.booking_through(4, doc["_id"])
        )  # two statuses in one write
        got += list(events)  # ends: the server closed the stream after CONFIRMED

    assert [e.get("id") for e in got] == ["1", "2", "3", "4"], got
    assert {e["event"] for e in got} == {"status"}
    data = [json.loads(e["data"]) for e in got]
    assert [d["status"] for d in data] == list(PATH)
    assert [d["final"] for d in data] == [False, False, False, True]
    assert all(d["booking_id"] == doc["_id"] for d in data)


def test_a_stream_resumed_with_last_event_id_repeats_nothing_and_loses_nothing(
    live: httpx.Client, auth: Headers, servers: ServerReadSide
) -> None:
    doc = documents.booking_through(4)
    write_booking(servers, doc)
    headers = auth("alice", "customer", **{"Last-Event-ID": "2"})

    with live.stream("GET", f"/bookings/{doc['_id']}/events", headers=headers) as stream:
        got = list(sse.events(stream.iter_lines()))

    assert [e["id"] for e in got] == ["3", "4"]
    assert [json.loads(e["data"])["status"] for e in got] == ["PAYMENT_AUTHORIZED", "CONFIRMED"]


def test_a_stream_opened_right_after_the_command_waits_for_the_booking_by_its_announcement(
    live: httpx.Client, auth: Headers, servers: ServerReadSide
) -> None:
    doc = documents.booking_through(1)
    patterns = servers.redis.pubsub_numpat()
    after = encode_positions({"booking": 10**9})  # not applied: the booking is still coming
    headers = auth("alice", "customer", **{"X-Flightbook-After": after})
    got: list[dict[str, str]] = []

    def read() -> None:
        with live.stream("GET", f"/bookings/{doc['_id']}/events", headers=headers) as stream:
            got.append({"status_code": str(stream.status_code)})
            got.extend(sse.events(stream.iter_lines()))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    eventually(  # the process's announcements subscription, made by the stream's first watch
        lambda: servers.redis.pubsub_numpat() > patterns,
        bool,
        within=10,
        what="the stream listening for the booking",
    )
    write_booking(servers, doc)  # the worker writes it and announces it
    write_booking(servers, documents.booking_through(4, doc["_id"]))
    reader.join(30)

    assert got[0] == {"status_code": "200"}
    assert [json.loads(e["data"])["status"] for e in got[1:]] == list(PATH)


def test_a_stream_after_positions_applied_without_the_booking_is_404(
    query_api: Api, auth: Headers, servers: ServerReadSide
) -> None:
    servers.put_document("projection_checkpoints", {"_id": "bookings:booking", "low_watermark": 9})
    after = encode_positions({"booking": 7})
    headers = auth("alice", "customer", **{"X-Flightbook-After": after})

    answer = query_api.get(f"/bookings/{documents.new_id()}/events", headers=headers)

    assert answer.status_code == 404
    assert answer.json()["title"]


def test_another_customer_gets_the_same_404_as_for_the_booking_itself(
    query_api: Api, auth: Headers, servers: ServerReadSide
) -> None:
    doc = documents.booking_through(1)
    write_booking(servers, doc)
    headers = auth("bob", "customer", **{"X-Request-ID": "probe-1"})

    stream = query_api.get(f"/bookings/{doc['_id']}/events", headers=headers)
    booking = query_api.get(f"/bookings/{doc['_id']}", headers=headers)

    assert stream.status_code == booking.status_code == 404
    assert stream.content == booking.content


def test_a_last_event_id_that_is_not_a_count_of_statuses_is_400(
    query_api: Api, auth: Headers, servers: ServerReadSide
) -> None:
    doc = documents.booking_through(1)
    write_booking(servers, doc)
    headers = auth("alice", "customer", **{"Last-Event-ID": "abc"})

    answer = query_api.get(f"/bookings/{doc['_id']}/events", headers=headers)

    assert answer.status_code == 400
    assert answer.headers["content-type"] == "application/problem+json"
