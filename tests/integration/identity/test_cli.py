"""``flightbook accounts`` and ``flightbook keys``: the first operator, lockouts, key rotation."""

from __future__ import annotations

import io
import uuid
from pathlib import Path

import msgspec
import pyotp
import pytest

from flightbook.config.settings import Settings
from flightbook.http.keys import SigningKeys
from tests.support.api import Api
from tests.support.cli import run_cli, use_settings

pytestmark = pytest.mark.integration

PASSWORD = "the owl and the pussycat went to sea"


@pytest.fixture
def cli_settings(id_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    return use_settings(id_settings, monkeypatch)


def create(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, email: str, password: str
) -> tuple[int, str, str]:
    monkeypatch.setattr("sys.stdin", io.StringIO(password + "\n"))
    return run_cli(
        capsys,
        "accounts",
        "create",
        "--role",
        "ops",
        "--email",
        email,
        "--name",
        "Olga Ops",
        "--password-stdin",
    )


def test_the_first_operator_is_made_on_the_command_line_and_logs_in_with_totp(
    cli_settings: Settings,
    identity_api: Api,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    email = f"olga-{uuid.uuid4().hex[:8]}@example.com"

    code, out, err = create(capsys, monkeypatch, email, PASSWORD)

    assert code == 0, err
    printed = dict(line.split(": ", 1) for line in out.splitlines())
    assert set(printed) == {"account_id", "totp_secret", "otpauth_uri", "recovery_codes"}
    assert len(printed["recovery_codes"].split()) == 10
    assert PASSWORD not in out + err
    code_now = pyotp.TOTP(printed["totp_secret"]).now()
    login = identity_api.post(
        "/auth/login", json={"email": email, "password": PASSWORD, "totp": code_now}
    )
    assert login.status_code == 200, login.text
    me = identity_api.get(
        "/me", headers={"Authorization": f"Bearer {login.json()['access_token']}"}
    )
    assert me.json()["roles"] == ["ops"]
    code, out, err = run_cli(capsys, "accounts", "history", "--email", email)
    assert code == 0, err
    assert any("registered" in line and "by cli:" in line for line in out.splitlines()), out


def test_a_weak_password_or_no_terminal_is_one_line_and_a_failure(
    cli_settings: Settings, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, out, err = create(capsys, monkeypatch, f"o-{uuid.uuid4().hex[:8]}@example.com", "short")
    assert code == 1
    assert out == ""
    assert err.count("\n") == 1
    assert "at least 12 characters" in err

    monkeypatch.setattr("sys.stdin", io.StringIO(""))  # not a terminal, and no --password-stdin
    code, out, err = run_cli(
        capsys, "accounts", "create", "--role", "ops", "--email", "x@example.com", "--name", "X"
    )
    assert code == 1
    assert err.count("\n") == 1
    assert "--password-stdin" in err


def test_keys_rotate_signs_with_a_new_key_and_the_old_one_still_verifies(
    id_settings: Settings,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path = tmp_path / "signing-keys.json"  # not the suite's: other tests sign with that one
    before = SigningKeys.create(path, keep_seconds=60).current().kid
    use_settings(msgspec.structs.replace(id_settings, jwt_signing_keys_file=str(path)), monkeypatch)

    code, out, err = run_cli(capsys, "keys", "rotate")
    assert code == 0, err
    code, listing, err = run_cli(capsys, "keys", "list")

    assert code == 0, err
    after = SigningKeys(path, keep_seconds=60).current().kid
    assert after != before
    assert f"signing with {after}" in out
    states = {line.split()[0]: line.split()[2] for line in listing.splitlines()}
    assert states[after] == "signs"
    assert states[before] == "verifies"
