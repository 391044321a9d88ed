"""``WebSocket /ws/bookings`` on MongoDB and Redis, fed as the bookings worker feeds it."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from flightbook.config.settings import Settings
from flightbook.http.sessions import session_key
from flightbook.http.tokens import mint_token
from tests.support import documents
from tests.support.api import Headers
from tests.support.readside import ServerReadSide, write_booking
from tests.support.sockets import closed_with, messages_until, socket

pytestmark = pytest.mark.integration

PATH = documents.CONFIRMED_PATH


def _has(booking_id: str, seq: int) -> Any:
    """``done`` once a message of ``booking_id`` numbered ``seq`` arrived."""
    return lambda got: any(m["booking_id"] == booking_id and m["seq"] == seq for m in got)


def test_a_bookings_statuses_arrive_in_order_each_once(
    live_url: str, auth: Headers, servers: ServerReadSide
) -> None:
    doc = documents.booking_through(1)
    write_booking(servers, doc)

    with socket(live_url, headers=auth("alice", "customer")) as ws:
        got = messages_until(ws, _has(doc["_id"], 1))  # what it reached before the connect
        write_booking(servers, documents.booking_through(2, doc["_id"]))
        got += messages_until(ws, _has(doc["_id"], 2))
        write_booking(servers, documents.booking_through(4, doc["_id"]))  # two in one write
        got += messages_until(ws, _has(doc["_id"], 4))

    assert [m["seq"] for m in got] == [1, 2, 3, 4]
    assert [m["status"] for m in got] == list(PATH)
    assert [m["final"] for m in got] == [False, False, False, True]
    assert [m["version"] for m in got] == [1, 2, 4, 4]
    assert {m["type"] for m in got} == {"status"}
    assert {m["booking_id"] for m in got} == {doc["_id"]}
    assert got[0]["at"] == "2026-11-01T09:30:00.123000Z"


def test_every_booking_of_the_customer_arrives_and_a_finished_one_is_not_sent_again(
    live_url: str, auth: Headers, servers: ServerReadSide
) -> None:
    finished = documents.booking_through(4)
    first = documents.booking_through(1)
    write_booking(servers, finished)
    write_booking(servers, first)

    with socket(live_url, headers=auth("alice", "customer")) as ws:
        got = messages_until(ws, _has(first["_id"], 1))
        second = documents.booking_through(1)  # booked while connected
        write_booking(servers, second)
        write_booking(servers, documents.booking_through(2, first["_id"]))
        got += messages_until(ws, lambda m: _has(second["_id"], 1)(m) and _has(first["_id"], 2)(m))

    assert sorted((m["booking_id"], m["seq"]) for m in got) == sorted(
        [(first["_id"], 1), (first["_id"], 2), (second["_id"], 1)]
    )
    assert finished["_id"] not in {m["booking_id"] for m in got}


def test_a_socket_resumed_with_since_loses_and_repeats_nothing(
    live_url: str, auth: Headers, servers: ServerReadSide
) -> None:
    doc = documents.booking_through(2)
    write_booking(servers, doc)
    headers = auth("alice", "customer")
    with socket(live_url, headers=headers) as ws:
        before = messages_until(ws, _has(doc["_id"], 2))
    # dropped; meanwhile the booking goes on to its end (final: not among the unfinished)
    write_booking(servers, documents.booking_through(4, doc["_id"]))

    with socket(live_url, headers=headers, since={doc["_id"]: 2}) as ws:
        after = messages_until(ws, _has(doc["_id"], 4))
        marker = documents.booking_through(1)  # the next message must be this one's
        write_booking(servers, marker)
        after += messages_until(ws, _has(marker["_id"], 1))

    assert [m["seq"] for m in before] == [1, 2]
    assert [(m["booking_id"], m["seq"], m["status"]) for m in after] == [
        (doc["_id"], 3, "PAYMENT_AUTHORIZED"),
        (doc["_id"], 4, "CONFIRMED"),
        (marker["_id"], 1, "REQUESTED"),
    ]


def test_another_customer_gets_nothing_of_mine_even_when_naming_it(
    live_url: str, auth: Headers, servers: ServerReadSide
) -> None:
    mine = documents.booking_through(1)
    his = documents.booking_through(1, customer_id="bob")
    write_booking(servers, mine)
    write_booking(servers, his)

    with socket(live_url, headers=auth("bob", "customer"), since={mine["_id"]: 0}) as ws:
        got = messages_until(ws, _has(his["_id"], 1))  # the socket has read what was there
        write_booking(servers, documents.booking_through(2, mine["_id"]))
        write_booking(servers, documents.booking_through(2, his["_id"], customer_id="bob"))
        got += messages_until(ws, _has(his["_id"], 2))  # had mine reached him, it came first

    assert [(m["booking_id"], m["seq"]) for m in got] == [(his["_id"], 1), (his["_id"], 2)]


def test_a_token_in_the_subprotocol_is_accepted_and_never_echoed(
    live_url: str, auth: Headers, servers: ServerReadSide
) -> None:
    doc = documents.booking_through(1)
    write_booking(servers, doc)
    token = auth("alice", "customer")["Authorization"].removeprefix("Bearer ")

    with socket(live_url, subprotocols=["flightbook.v1", f"bearer.{token}"]) as ws:
        got = messages_until(ws, _has(doc["_id"], 1))
        assert ws.subprotocol == "flightbook.v1"

    assert [m["status"] for m in got] == ["REQUESTED"]


@pytest.mark.parametrize(
    ("credentials", "code"),
    [
        ({}, 4401),
        ({"headers": {"Authorization": "Bearer not-a-token"}}, 4401),
        ({"subprotocols": ["flightbook.v1", "bearer.not-a-token"]}, 4401),
    ],
)
def test_a_connect_without_a_valid_token_is_closed_4401(
    credentials: dict[str, Any], code: int, live_url: str, servers: ServerReadSide
) -> None:
    doc = documents.booking_through(1)
    write_booking(servers, doc)

    with socket(live_url, **credentials) as ws:
        closed = closed_with(ws)

    assert closed == (code, "a valid bearer token is required")


def test_a_token_with_no_known_role_is_closed_4403(live_url: str, auth: Headers) -> None:
    with socket(live_url, headers=auth("mallory", "admin")) as ws:
        code, reason = closed_with(ws)

    assert (code, reason) == (4403, "the token has none of the roles this API knows")


@pytest.mark.parametrize("since", ["not-a-uuid:1", "5b6c2f9e-8d3a-4e1b-9c7f-2a4d6e8b0c13:7", "x"])
def test_a_since_that_is_not_a_booking_and_a_count_is_closed_4400(
    since: str, live_url: str, auth: Headers
) -> None:
    with socket(live_url, headers=auth("alice", "customer"), query=f"since={since}") as ws:
        code, reason = closed_with(ws)

    assert code == 4400
    assert reason.startswith("since:")


def test_a_plain_get_is_426_and_the_socket_is_in_the_openapi_document(
    live_url: str, auth: Headers
) -> None:
    with httpx.Client(base_url=live_url) as client:
        plain = client.get("/ws/bookings", headers=auth("alice", "customer"))
        document = client.get("/schema/openapi.json").json()

    assert plain.status_code == 426
    assert plain.headers["upgrade"] == "websocket"
    assert plain.headers["content-type"] == "application/problem+json"
    operation = document["paths"]["/ws/bookings"]["get"]
    assert "101" in operation["responses"]
    assert "since=<booking_id>:<seq>" in operation["description"]
    assert operation["security"] == [{"bearer": []}]


def test_a_socket_whose_session_is_revoked_is_closed_4401(
    live_url: str, settings: Settings, servers: ServerReadSide
) -> None:
    key = session_key(settings.redis_prefix, "s-socket")
    servers.redis.set(key, "live")
    token = mint_token(settings, subject="alice", roles=["customer"], session_id="s-socket")
    doc = documents.booking_through(1)
    write_booking(servers, doc)

    with socket(live_url, headers={"Authorization": f"Bearer {token}"}) as ws:
        got = messages_until(ws, _has(doc["_id"], 1))  # admitted while the session lives
        servers.redis.delete(key)  # logout
        closed = closed_with(ws)

    assert [m["seq"] for m in got] == [1]
    assert closed == (4401, "the session was revoked")
