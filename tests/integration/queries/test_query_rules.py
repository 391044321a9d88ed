"""Every rule of a query parameter is in the OpenAPI document (issue 15, finding 11).

Before the fix, schemathesis sent requests the document called valid and got 400s: a
cursor (base64 of JSON, undescribed), an ``X-Flightbook-After`` token (undescribed), a
funnel period ending before it starts or longer than 366 days; and an ``X-Flightbook-After``
with a 5,000-digit position was a 500.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.support.api import Api, Headers

pytestmark = pytest.mark.integration


def parameters(document: dict[str, Any], path: str) -> dict[str, dict[str, Any]]:
    return {p["name"]: p for p in document["paths"][path]["get"]["parameters"]}


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        ("/flights?origin=LHR&destination=JFK&date=2026-12-24", "flights"),
        ("/bookings?limit=5", "bookings"),
        ("/analytics/sales?from=2026-01-01&to=2026-01-31", "sales"),
    ],
)
def test_a_cursor_that_the_document_allows_is_accepted(
    path: str, kind: str, query_api: Api, auth: Headers
) -> None:
    document = query_api.get("/schema/openapi.json").json()
    pattern = parameters(document, path.partition("?")[0])["cursor"]["schema"]["pattern"]
    cursor = {"flights": "f0_" + "0" * 32, "bookings": "b0_" + "0" * 32, "sales": "s0_AAAAAA"}
    assert re.fullmatch(pattern, cursor[kind])

    response = query_api.get(
        f"{path}&cursor={cursor[kind]}", headers=auth("ann", "analyst", "customer")
    )

    assert response.status_code == 200, response.text


def test_an_after_header_that_the_document_allows_is_accepted_and_no_other(
    query_api: Api, auth: Headers
) -> None:
    document = query_api.get("/schema/openapi.json").json()
    pattern = parameters(document, "/bookings")["X-Flightbook-After"]["schema"]["pattern"]
    assert re.fullmatch(pattern, "booking:0,inventory:0")

    allowed = query_api.get(
        "/bookings", headers=auth("alice", "customer", **{"X-Flightbook-After": "inventory:0"})
    )
    huge = query_api.get(
        "/bookings",
        headers=auth("alice", "customer", **{"X-Flightbook-After": "booking:" + "9" * 5000}),
    )

    assert allowed.status_code == 200, allowed.text
    assert huge.status_code == 400, huge.text
    assert huge.json()["field"] == "X-Flightbook-After"


@pytest.mark.parametrize(
    "period", ["from=2026-02-01&to=2026-01-01", "from=2000-01-01&to=2030-12-31"]
)
def test_a_reversed_or_long_funnel_period_is_answered_not_refused(
    period: str, query_api: Api, auth: Headers
) -> None:
    response = query_api.get(f"/analytics/funnel?{period}", headers=auth("ann", "analyst"))

    assert response.status_code == 200, response.text
    assert response.json()["items"] == []


def test_a_search_from_an_airport_to_itself_finds_no_flight(query_api: Api, auth: Headers) -> None:
    response = query_api.get(
        "/flights?origin=LHR&destination=LHR&date=2026-12-24", headers=auth("alice", "customer")
    )

    assert response.status_code == 200, response.text
    assert response.json()["items"] == []
