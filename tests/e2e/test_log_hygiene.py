"""No secret or personal data in the logs, whatever error the APIs answer.

Both APIs run as real processes with a known signing secret. Every error path is driven
with known bearer tokens, passenger names, emails and payment tokens: 400s (malformed,
wrong type, unknown field, not UTF-8, nested too deep, bad header), every kind of 401,
403s, 404s, 405, 409, 413, 415, 422, and real server outages, answered 503 (the command
API's database connections dropped under it, the query API's MongoDB not there; ADR 0018).
Then their whole output is scanned.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import jwt
import msgspec
import psycopg
import pytest

from flightbook.config.settings import Settings
from flightbook.http.keys import signing_keys_from_settings
from flightbook.http.tokens import mint_token
from tests.support.api import booking_body, fare_body, flight_body
from tests.support.processes import SystemProcess, free_port
from tests.support.tokens import foreign_key, signed_token

pytestmark = pytest.mark.e2e

NAMES = ("Ottoline Quarrington", "Bartholomew Zykowski", "Zoë Åkesson-Ñúñez")
EMAILS = ("ottoline.quarrington@hygiene.example", "b.zykowski+trip@hygiene.example")
PAYMENT_TOKENS = ("tok_hygiene_7f3a9c", "tok_live_Q8m2Zt5wLk")
JWT_SHAPED = re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}")


class Tokens:
    """Every token the test sends, so the scan can look for each of them (and its parts)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.sent: list[str] = []

    def mint(self, subject: str, *roles: str, key: Any = None, **claims: Any) -> str:
        if claims or key is not None:
            token = signed_token(self.settings, key=key, sub=subject, roles=list(roles), **claims)
        else:
            token = mint_token(self.settings, subject=subject, roles=roles)
        self.sent.append(token)
        return token

    def header(self, subject: str, *roles: str, **claims: Any) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.mint(subject, *roles, **claims)}"}


def passenger(i: int) -> dict[str, str]:
    return {"name": NAMES[i % len(NAMES)], "email": EMAILS[i % len(EMAILS)]}


def booking(flight_id: str, **changes: Any) -> dict[str, Any]:
    people = [passenger(n) for n in range(3)]
    return booking_body(flight_id, passengers=people, payment_token=PAYMENT_TOKENS[0]) | changes


def flight() -> dict[str, Any]:
    return flight_body(flight_number="FB404", fares=[fare_body(seats=50, refundable=True)])


def drive_command_api(client: httpx.Client, tokens: Tokens, settings: Settings) -> list[int]:
    """Every error path of the command API; the statuses it answered."""
    ops = tokens.header("ops-hygiene", "ops")
    scheduled = client.post("/flights", json=flight(), headers=ops)
    assert scheduled.status_code == 201, scheduled.text
    flight_id = scheduled.json()["flight_id"]
    cancelled = client.post("/flights", json=flight(), headers=ops).json()["flight_id"]
    assert client.post(f"/flights/{cancelled}/cancel", json={}, headers=ops).status_code == 202

    def customer(**extra: str) -> dict[str, str]:
        return {
            **tokens.header("cust-hygiene", "customer"),
            "Idempotency-Key": str(uuid.uuid4()),
            **extra,
        }

    good = json.dumps(booking(flight_id)).encode()
    statuses: list[int] = []

    def send(
        path: str,
        *,
        headers: dict[str, str],
        content: bytes | None = None,
        body: Any = None,
        method: str = "POST",
    ) -> None:
        if body is not None:
            content = json.dumps(body).encode()
        response = client.request(
            method,
            path,
            content=content,
            headers={"Content-Type": "application/json", **headers},
        )
        statuses.append(response.status_code)

    # 401 of every kind, each with a body full of personal data
    for headers in (
        {},
        {"Authorization": ""},
        {"Authorization": f"Basic {tokens.mint('cust-hygiene', 'customer')}"},
        {"Authorization": f"Bearer {tokens.mint('cust-hygiene', 'customer')}garbage"},
        {"Authorization": "Bearer not.a.jwt"},
        tokens.header("cust-hygiene", "customer", exp=int(time.time()) - 60),
        tokens.header("cust-hygiene", "customer", aud="someone-else"),
        tokens.header("cust-hygiene", "customer", iss="evil"),
        tokens.header("cust-hygiene", "customer", key=foreign_key()),
        tokens.header("cust-hygiene", "customer", iat=None),
        tokens.header("cust-hygiene", "customer", exp=32503680000),  # the year 3000
        tokens.header("", "customer"),
        {"Authorization": "Bearer " + jwt.encode({"sub": "x"}, "", algorithm="none")},
    ):
        send("/bookings", headers={**headers, "Idempotency-Key": "k"}, content=good)
    # 403: a known role that is not allowed, and no known role at all
    send("/flights", headers=tokens.header("cust-hygiene", "customer"), body=flight())
    send(
        "/bookings",
        headers=tokens.header("cust-hygiene", "admin") | {"Idempotency-Key": "a"},
        content=good,
    )
    send(
        "/bookings", headers=tokens.header("cust-hygiene") | {"Idempotency-Key": "b"}, content=good
    )
    # 400: malformed, wrong types, unknown fields, not UTF-8, too deep, bad headers
    send("/bookings", headers=customer(), content=good[: len(good) // 2])
    send("/bookings", headers=customer(), content=good + b"}")
    send("/bookings", headers=customer(), body=booking(flight_id, passengers=NAMES))
    send("/bookings", headers=customer(), body=booking(flight_id, seats=EMAILS[0]))
    send("/bookings", headers=customer(), body=booking(flight_id, payment_token=7))
    send(
        "/bookings",
        headers=customer(),
        body=booking(
            flight_id,
            passengers=[{"name": NAMES[0], "email": EMAILS[0], "passport": "X" + EMAILS[1]}],
        ),
    )
    send(
        "/bookings",
        headers=customer(),
        body=booking(flight_id, passengers=[{"name": NAMES[1] * 40, "email": EMAILS[1]}]),
    )
    latin1 = json.dumps(booking(flight_id), ensure_ascii=False).encode("latin-1")
    send("/bookings", headers=customer(), content=latin1)
    send("/bookings", headers=customer(), content=("Zoë Åkesson".encode("latin-1") + good))
    deep = b'{"passengers": ' + b"[" * 1000 + json.dumps(passenger(0)).encode() + b"]" * 1000 + b"}"
    send("/bookings", headers=customer(), content=deep)
    send("/bookings", headers=customer(**{"X-Request-ID": NAMES[0]}), content=good)
    send("/bookings", headers=customer(**{"Idempotency-Key": ""}), content=good)
    send("/bookings", headers=customer(), content=b"")
    # 413, 415
    send(
        "/bookings",
        headers=customer(),
        body=booking(flight_id, passengers=[passenger(i) for i in range(1500)]),
    )
    send("/bookings", headers=customer(**{"Content-Type": "text/plain"}), content=good)
    send(
        "/bookings",
        headers=customer(**{"Content-Type": "application/x-www-form-urlencoded"}),
        content=b"name=" + NAMES[0].encode() + b"&email=" + EMAILS[0].encode(),
    )
    # 404, 405, 409, 422
    send(f"/bookings/{uuid.uuid4()}/cancel", headers=customer())
    send(f"/bookings/{NAMES[0]}/cancel", headers=customer())
    send("/bookings", method="DELETE", headers=customer(), content=good)
    send("/bookings", headers=customer(), body=booking(cancelled))
    send("/bookings", headers=customer(), body=booking(flight_id, fare="Q"))
    send("/bookings", headers=customer(), body=booking(str(uuid.uuid4())))
    send(
        "/bookings",
        headers=customer(),
        body=booking(
            flight_id, passengers=[{"name": NAMES[0], "email": "not-an-email " + EMAILS[0]}]
        ),
    )
    key = customer()
    send("/bookings", headers=key, content=good)
    send("/bookings", headers=key, body=booking(flight_id, payment_token=PAYMENT_TOKENS[1]))
    # 503: the database server drops every connection of the running API (as on a restart).
    # The event store's writes ride that out (the library reconnects and retries); a new
    # customer's booking needs the customer's data key first, from a dropped connection.
    _drop_connections(settings)
    send(
        "/bookings",
        headers=tokens.header("cust-hygiene-new", "customer") | {"Idempotency-Key": "new"},
        body=booking(flight_id, payment_token=PAYMENT_TOKENS[1]),
    )
    send(f"/flights/{flight_id}/cancel", headers=ops, body={"reason": NAMES[2]})
    return statuses


def _drop_connections(settings: Settings) -> None:
    assert settings.postgres_url is not None
    base, _, name = settings.postgres_url.rpartition("/")
    with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
            (name.partition("?")[0],),
        )


def drive_query_api(client: httpx.Client, tokens: Tokens) -> list[int]:
    """Every error path of the query API (its MongoDB is not there); the statuses."""
    statuses: list[int] = []

    def get(path: str, headers: dict[str, str]) -> None:
        statuses.append(client.get(path, headers=headers).status_code)

    customer = tokens.header("cust-hygiene", "customer")
    get("/bookings", {})
    get("/bookings", {"Authorization": f"Bearer {tokens.mint('cust-hygiene', 'customer')}x"})
    get("/bookings", tokens.header("cust-hygiene", "customer", exp=int(time.time()) - 5))
    get("/analytics/sales?from=2030-01-01&to=2030-01-02", customer)
    get("/flights?origin=LHR&destination=JFK&date=2030-01-01", tokens.header("eve", "admin"))
    get("/bookings", tokens.header("eve"))
    get("/bookings?limit=0", customer)
    get(f"/bookings?cursor={NAMES[0]}", customer)
    get("/flights?origin=LHR", customer | {"X-Flightbook-After": EMAILS[0]})
    get(f"/bookings/{EMAILS[0]}", customer)
    get(f"/flights/{PAYMENT_TOKENS[0]}", customer)
    get(f"/bookings/{uuid.uuid4()}", customer)  # 503: MongoDB is not there
    statuses.append(client.post("/bookings", json=booking("x"), headers=customer).status_code)
    return statuses


def test_no_error_path_logs_a_token_a_secret_or_personal_data(
    settings: Settings, processes: list[SystemProcess], tmp_path: Path
) -> None:
    """Before the fix, each 500 logged the bearer token and the body (frame locals)."""
    known = msgspec.structs.replace(settings, rate_limit_enabled=False)
    private = signing_keys_from_settings(known).current().jwk["d"]
    tokens = Tokens(known)
    command_port, query_port = free_port(), free_port()
    command_api = SystemProcess(
        "commands/api.py",
        known,
        FLIGHTBOOK_COMMAND_PORT=str(command_port),
        FLIGHTBOOK_COMMAND_OPS_PORT="0",
    )
    query_api = SystemProcess(
        "queries/api.py",
        known,
        FLIGHTBOOK_QUERY_PORT=str(query_port),
        FLIGHTBOOK_QUERY_OPS_PORT="0",
        FLIGHTBOOK_MONGO_URL=f"mongodb://127.0.0.1:{free_port()}/",
    )
    command_api.log, query_api.log = tmp_path / "command-api.log", tmp_path / "query-api.log"
    processes += [command_api.start(), query_api.start()]
    command_api.wait_http(f"http://127.0.0.1:{command_port}/health/ready")
    query_api.wait_http(f"http://127.0.0.1:{query_port}/health/live")

    with httpx.Client(base_url=f"http://127.0.0.1:{command_port}", timeout=30) as client:
        command_statuses = drive_command_api(client, tokens, known)
    with httpx.Client(base_url=f"http://127.0.0.1:{query_port}", timeout=30) as client:
        query_statuses = drive_query_api(client, tokens)
    command_api.stop()  # SIGTERM: each flushes its output before it exits
    query_api.stop()
    logs = {
        p.name: p.read_text(encoding="utf-8", errors="replace")
        for p in (command_api.log, query_api.log)
    }

    assert {400, 401, 403, 404, 405, 409, 413, 422} <= set(command_statuses), command_statuses
    assert {400, 401, 403, 404} <= set(query_statuses), query_statuses
    assert 503 in command_statuses, command_statuses
    assert 503 in query_statuses, query_statuses
    assert all("http.server_unavailable" in text for text in logs.values()), logs
    forbidden = {
        "the private signing key": [private],
        "a bearer token": [t for token in tokens.sent for t in (token, *token.split(".")[1:]) if t],
        # the names as sent, as mojibake, and any distinctive part (an exception may quote
        # the bytes: b'Zo\\xeb \\xc5kesson')
        "a passenger name": [
            *NAMES,
            *(n.encode("utf-8").decode("latin-1") for n in NAMES),
            *(part for n in NAMES for part in re.findall(r"[A-Za-z]{5,}", n)),
        ],
        "an email": [*EMAILS, *(e.partition("@")[0] for e in EMAILS)],
        "a payment token": list(PAYMENT_TOKENS),
    }
    found = [
        f"{name}: {what} ({value[:12]}...)"
        for name, text in logs.items()
        for what, values in forbidden.items()
        for value in values
        if value in text
    ]
    found += [
        f"{name}: a JWT-shaped string" for name, text in logs.items() if JWT_SHAPED.search(text)
    ]
    assert found == []
