"""Accounts and sessions end to end: register, log in, book, refresh, log out (ADR 0019)."""

from __future__ import annotations

import uuid

import jwt
import pytest

from flightbook.config.settings import Settings
from flightbook.http.tokens import mint_token
from tests.support.api import Api, booking_body, flight_body

pytestmark = pytest.mark.integration

PASSWORD = "a long walk to the harbour at dawn"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def register(identity_api: Api, email: str | None = None) -> tuple[str, str]:
    email = email or f"{uuid.uuid4().hex[:8]}@example.com"
    answer = identity_api.post(
        "/auth/register", json={"email": email, "password": PASSWORD, "name": "Ada Lovelace"}
    )
    assert answer.status_code == 201, answer.text
    return email, answer.json()["account_id"]


def login(identity_api: Api, email: str, **extra: str) -> dict[str, object]:
    answer = identity_api.post("/auth/login", json={"email": email, "password": PASSWORD, **extra})
    assert answer.status_code == 200, answer.text
    assert answer.headers["cache-control"] == "no-store"
    body: dict[str, object] = answer.json()
    return body


def a_flight(command_api: Api, settings: Settings) -> str:
    ops = bearer(mint_token(settings, subject="ops-1", roles=["ops"]))
    answer = command_api.post("/flights", json=flight_body(), headers=ops)
    assert answer.status_code == 201, answer.text
    return str(answer.json()["flight_id"])


def test_register_login_book_refresh_logout_then_both_old_tokens_are_refused(
    identity_api: Api, command_api: Api, query_api: Api, id_settings: Settings
) -> None:
    email, account_id = register(identity_api)
    first = login(identity_api, email)
    assert first["token_type"] == "Bearer"
    assert first["expires_in"] == id_settings.identity_access_ttl_seconds
    claims = jwt.decode(str(first["access_token"]), options={"verify_signature": False})
    assert claims["sub"] == account_id
    assert claims["roles"] == ["customer"]

    flight_id = a_flight(command_api, id_settings)
    booked = command_api.post(
        "/bookings",
        json=booking_body(flight_id),
        headers={**bearer(str(first["access_token"])), "Idempotency-Key": "trip-1"},
    )
    assert booked.status_code == 202, booked.text

    second = identity_api.post("/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert second.status_code == 200, second.text
    pair = second.json()
    assert pair["refresh_token"] != first["refresh_token"]
    me = identity_api.get("/me", headers=bearer(pair["access_token"]))
    assert me.status_code == 200, me.text
    assert me.json()["email"] == email
    assert me.json()["account_id"] == account_id

    out = identity_api.post("/auth/logout", headers=bearer(pair["access_token"]))
    assert out.status_code == 204, out.text

    for token in (first["access_token"], pair["access_token"]):
        assert query_api.get("/bookings", headers=bearer(str(token))).status_code == 401
        again = command_api.post(
            "/bookings",
            json=booking_body(flight_id),
            headers={**bearer(str(token)), "Idempotency-Key": "trip-2"},
        )
        assert again.status_code == 401, again.text
        assert identity_api.get("/me", headers=bearer(str(token))).status_code == 401
    for refresh in (first["refresh_token"], pair["refresh_token"]):
        spent = identity_api.post("/auth/refresh", json={"refresh_token": refresh})
        assert spent.status_code == 401, spent.text
        assert spent.json()["type"].endswith("/invalid_grant")


def test_a_spent_refresh_token_presented_again_revokes_the_whole_session(
    identity_api: Api, query_api: Api
) -> None:
    email, _ = register(identity_api)
    first = login(identity_api, email)
    second = identity_api.post("/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert second.status_code == 200, second.text
    live = second.json()
    assert query_api.get("/bookings", headers=bearer(live["access_token"])).status_code == 200

    replayed = identity_api.post("/auth/refresh", json={"refresh_token": first["refresh_token"]})

    assert replayed.status_code == 401, replayed.text
    # the thief's copy or the owner's: the session is gone either way
    assert query_api.get("/bookings", headers=bearer(live["access_token"])).status_code == 401
    after = identity_api.post("/auth/refresh", json={"refresh_token": live["refresh_token"]})
    assert after.status_code == 401, after.text
    # a new login opens a new session
    fresh = login(identity_api, email)
    assert query_api.get("/bookings", headers=bearer(str(fresh["access_token"]))).status_code == 200


def test_a_wrong_password_and_an_unknown_email_get_the_same_answer(identity_api: Api) -> None:
    email, _ = register(identity_api)

    wrong = identity_api.post("/auth/login", json={"email": email, "password": PASSWORD + "x"})
    unknown = identity_api.post(
        "/auth/login", json={"email": "nobody@example.com", "password": PASSWORD}
    )

    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json()
    assert wrong.json()["type"].endswith("/invalid_credentials")


@pytest.mark.parametrize(
    "password",
    ["password1234", "qwertyuiop123", "flightbook2026!", "short pass"],
    ids=["common", "common-2", "service-name", "too-short"],
)
def test_a_weak_password_is_refused_and_no_account_is_made(
    identity_api: Api, password: str
) -> None:
    email = f"{uuid.uuid4().hex[:8]}@example.com"

    answer = identity_api.post(
        "/auth/register", json={"email": email, "password": password, "name": "Ada Lovelace"}
    )

    assert answer.status_code == 422, answer.text
    assert answer.json()["type"].endswith("/weak_password")
    assert answer.json()["field"] == "password"
    assert password not in answer.text
    refused = identity_api.post("/auth/login", json={"email": email, "password": password})
    assert refused.status_code == 401


def test_the_same_email_cannot_register_twice_in_any_case(identity_api: Api) -> None:
    email, _ = register(identity_api)

    again = identity_api.post(
        "/auth/register",
        json={"email": email.upper(), "password": PASSWORD, "name": "Someone Else"},
    )

    assert again.status_code == 409, again.text
    assert again.json()["type"].endswith("/email_taken")


def test_a_sessionless_development_token_cannot_log_out(
    identity_api: Api, id_settings: Settings
) -> None:
    token = mint_token(id_settings, subject="dev", roles=["customer"])

    answer = identity_api.post("/auth/logout", headers=bearer(token))

    assert answer.status_code == 403, answer.text
    assert answer.json()["type"].endswith("/no_session")
