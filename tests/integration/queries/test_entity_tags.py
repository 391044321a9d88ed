"""``GET /flights/{id}`` and ``GET /bookings/{id}`` carry an ETag; a current one gets 304."""

from __future__ import annotations

import pytest

from tests.support import documents
from tests.support.api import Api, Headers
from tests.support.readside import ServerReadSide

pytestmark = pytest.mark.integration


def test_an_unchanged_booking_answers_304_and_a_changed_one_200_with_a_new_tag(
    query_api: Api, auth: Headers, servers: ServerReadSide
) -> None:
    doc = documents.booking_doc(customer_id="alice")
    servers.put_document("bookings_v1", doc)
    headers = auth("alice", "customer")
    url = f"/bookings/{doc['_id']}"

    first = query_api.get(url, headers=headers)
    tag = first.headers["ETag"]
    again = query_api.get(url, headers={**headers, "If-None-Match": tag})
    weak = query_api.get(url, headers={**headers, "If-None-Match": f'"other", W/{tag}'})
    servers.put_document("bookings_v1", {**doc, "status": "CONFIRMED", "_v": doc["_v"] + 1})
    changed = query_api.get(url, headers={**headers, "If-None-Match": tag})

    assert first.status_code == 200, first.text
    assert tag[0] == tag[-1] == '"'  # a strong tag, quoted
    assert (again.status_code, again.content, again.headers["ETag"]) == (304, b"", tag)
    assert weak.status_code == 304
    assert changed.status_code == 200, changed.text
    assert changed.json()["status"] == "CONFIRMED"
    assert changed.headers["ETag"] != tag


def test_another_customer_holding_the_tag_still_gets_404(
    query_api: Api, auth: Headers, servers: ServerReadSide
) -> None:
    doc = documents.booking_doc(customer_id="alice")
    servers.put_document("bookings_v1", doc)
    url = f"/bookings/{doc['_id']}"
    tag = query_api.get(url, headers=auth("alice", "customer")).headers["ETag"]

    other = query_api.get(url, headers={**auth("bob", "customer"), "If-None-Match": tag})

    assert other.status_code == 404
    assert "ETag" not in other.headers


def test_a_flights_tag_follows_its_seats_left_in_redis(
    query_api: Api, auth: Headers, servers: ServerReadSide
) -> None:
    doc = documents.flight_doc(fares=[documents.fare_doc("Y", seats=150)])
    servers.put_document("flights_v1", doc)
    servers.put_hash(f"v1:seats:{doc['_id']}", {"_v": 5, "Y": 147})
    headers = auth("alice", "customer")
    url = f"/flights/{doc['_id']}"

    tag = query_api.get(url, headers=headers).headers["ETag"]
    same = query_api.get(url, headers={**headers, "If-None-Match": tag})
    servers.put_hash(f"v1:seats:{doc['_id']}", {"_v": 6, "Y": 146})
    sold = query_api.get(url, headers={**headers, "If-None-Match": tag})

    assert same.status_code == 304
    assert sold.status_code == 200, sold.text
    assert sold.json()["fares"][0]["seats_left"] == 146
    assert sold.headers["ETag"] != tag


def test_a_tag_that_is_not_current_or_any_is_answered_in_full(
    query_api: Api, auth: Headers, servers: ServerReadSide
) -> None:
    doc = documents.flight_doc()
    servers.put_document("flights_v1", doc)
    headers = auth("alice", "customer")
    url = f"/flights/{doc['_id']}"

    stale = query_api.get(url, headers={**headers, "If-None-Match": '"not-a-tag-of-ours"'})
    anything = query_api.get(url, headers={**headers, "If-None-Match": "*"})

    assert stale.status_code == 200, stale.text
    assert anything.status_code == 304
