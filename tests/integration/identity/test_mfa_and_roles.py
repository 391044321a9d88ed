"""A second factor, roles granted by operators, and login lockouts (ADR 0019)."""

from __future__ import annotations

import time
import uuid

import pyotp
import pytest

from flightbook.config.settings import Settings
from flightbook.identity.service import IdentityService
from tests.support.api import Api

pytestmark = pytest.mark.integration

PASSWORD = "seven swans a-swimming in the rain"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def an_operator(identity: IdentityService) -> tuple[str, str, str]:
    """An ops account as ``flightbook accounts create`` makes it: email, id, TOTP secret."""
    email = f"ops-{uuid.uuid4().hex[:8]}@example.com"
    made = identity.create_account(
        email, PASSWORD, "Olga Operator", roles=["ops"], actor="cli:test"
    )
    assert made.enrolment is not None
    assert len(made.recovery_codes) == 10
    return email, made.account_id, made.enrolment.secret


def log_in(identity_api: Api, email: str, **extra: str) -> tuple[int, dict[str, object]]:
    answer = identity_api.post("/auth/login", json={"email": email, "password": PASSWORD, **extra})
    return answer.status_code, answer.json()


def current_code(secret: str) -> str:
    return pyotp.TOTP(secret).at(time.time())


def test_an_operator_without_a_code_with_a_wrong_one_or_a_replayed_one_is_refused(
    identity_api: Api, identity: IdentityService
) -> None:
    email, _, secret = an_operator(identity)
    code = current_code(secret)
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"

    missing = log_in(identity_api, email)
    mistaken = log_in(identity_api, email, totp=wrong)
    good = log_in(identity_api, email, totp=code)
    replayed = log_in(identity_api, email, totp=code)

    assert missing[0] == 401
    assert str(missing[1]["type"]).endswith("/totp_required")
    assert mistaken[0] == 401
    assert str(mistaken[1]["type"]).endswith("/invalid_totp")
    assert good[0] == 200, good
    assert replayed[0] == 401
    assert str(replayed[1]["type"]).endswith("/invalid_totp")


def test_a_recovery_code_works_once(identity_api: Api, identity: IdentityService) -> None:
    email = f"ops-{uuid.uuid4().hex[:8]}@example.com"
    made = identity.create_account(email, PASSWORD, "Otto Ops", roles=["ops"], actor="cli:test")
    code = made.recovery_codes[0]

    assert log_in(identity_api, email, recovery_code=code)[0] == 200
    assert log_in(identity_api, email, recovery_code=code)[0] == 401
    assert log_in(identity_api, email, recovery_code=made.recovery_codes[1])[0] == 200


def test_a_customer_turns_totp_on_and_then_needs_it(identity_api: Api) -> None:
    email = f"{uuid.uuid4().hex[:8]}@example.com"
    registered = identity_api.post(
        "/auth/register", json={"email": email, "password": PASSWORD, "name": "Cleo Customer"}
    )
    assert registered.status_code == 201, registered.text
    status, tokens = log_in(identity_api, email)
    assert status == 200
    headers = bearer(str(tokens["access_token"]))

    started = identity_api.post("/auth/mfa/totp", headers=headers)
    assert started.status_code == 200, started.text
    secret = started.json()["secret"]
    assert started.json()["otpauth_uri"].startswith("otpauth://totp/")
    wrong = f"{(int(current_code(secret)) + 1) % 1_000_000:06d}"
    refused = identity_api.post("/auth/mfa/totp/confirm", json={"code": wrong}, headers=headers)
    confirmed = identity_api.post(
        "/auth/mfa/totp/confirm", json={"code": current_code(secret)}, headers=headers
    )

    assert refused.status_code == 422, refused.text
    assert confirmed.status_code == 200, confirmed.text
    assert len(confirmed.json()["recovery_codes"]) == 10
    assert log_in(identity_api, email)[0] == 401  # TOTP is needed from now on
    me = identity_api.get("/me", headers=headers)
    assert me.json()["mfa"] is True


def test_roles_are_granted_only_by_an_operator_and_recorded_with_the_actor(
    identity_api: Api, identity: IdentityService
) -> None:
    ops_email, ops_id, secret = an_operator(identity)
    status, ops_tokens = log_in(identity_api, ops_email, totp=current_code(secret))
    assert status == 200
    email = f"{uuid.uuid4().hex[:8]}@example.com"
    customer = identity_api.post(
        "/auth/register", json={"email": email, "password": PASSWORD, "name": "Gus Grantee"}
    ).json()["account_id"]
    _, customer_tokens = log_in(identity_api, email)
    body = {"roles": ["customer", "analyst"]}

    by_customer = identity_api.put(
        f"/accounts/{customer}/roles",
        json=body,
        headers=bearer(str(customer_tokens["access_token"])),
    )
    by_ops = identity_api.put(
        f"/accounts/{customer}/roles", json=body, headers=bearer(str(ops_tokens["access_token"]))
    )
    needs_mfa = identity_api.put(
        f"/accounts/{customer}/roles",
        json={"roles": ["customer", "agent"]},
        headers=bearer(str(ops_tokens["access_token"])),
    )

    assert by_customer.status_code == 403, by_customer.text
    assert by_ops.status_code == 200, by_ops.text
    assert by_ops.json()["roles"] == ["analyst", "customer"]
    assert needs_mfa.status_code == 409, needs_mfa.text
    # the grant ended the customer's sessions: the new roles apply at the next login
    ended = identity_api.get("/me", headers=bearer(str(customer_tokens["access_token"])))
    assert ended.status_code == 401
    changes = [(c.change, c.actor) for c in identity.history(customer)]
    assert ("roles_changed", ops_id) in changes
    assert changes[0] == ("registered", customer)


def test_an_account_locks_after_failed_logins_and_an_operator_releases_it(
    identity_api: Api, identity: IdentityService, id_settings: Settings
) -> None:
    ops_email, _, secret = an_operator(identity)
    _, ops_tokens = log_in(identity_api, ops_email, totp=current_code(secret))
    email = f"{uuid.uuid4().hex[:8]}@example.com"
    account = identity_api.post(
        "/auth/register", json={"email": email, "password": PASSWORD, "name": "Vic Victim"}
    ).json()["account_id"]

    for _ in range(id_settings.identity_failures_per_account):
        wrong = identity_api.post("/auth/login", json={"email": email, "password": "nope" * 4})
        assert wrong.status_code == 401
    locked = identity_api.post("/auth/login", json={"email": email, "password": PASSWORD})

    assert locked.status_code == 429, locked.text
    assert locked.json()["type"].endswith("/account_locked")
    assert 0 < int(locked.headers["retry-after"]) <= id_settings.identity_lockout_seconds
    released = identity_api.post(
        f"/accounts/{account}/unlock", headers=bearer(str(ops_tokens["access_token"]))
    )
    assert released.status_code == 200, released.text
    assert released.json()["released"] is True
    assert log_in(identity_api, email)[0] == 200
    assert "lockout_released" in [c.change for c in identity.history(account)]
