"""``flightbook token``: a local token, never longer-lived than the APIs accept."""

from __future__ import annotations

from pathlib import Path

import jwt
import pytest

from flightbook.cli import main
from flightbook.config.settings import Settings
from flightbook.http.keys import signing_keys_from_settings
from flightbook.http.tokens import verify_token

pytestmark = pytest.mark.unit


def test_a_token_longer_lived_than_the_maximum_is_refused_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FLIGHTBOOK_JWT_MAX_TTL_SECONDS", "600")

    with pytest.raises(SystemExit) as exit_:
        main(["token", "--sub", "alice", "--role", "customer", "--ttl", "601"])

    assert exit_.value.code == 2
    assert capsys.readouterr().err.splitlines() == [
        "flightbook: error: --ttl must be between 1 and 600 seconds"
        " (FLIGHTBOOK_JWT_MAX_TTL_SECONDS)"
    ]


@pytest.mark.parametrize("ttl", ["0", "-5"])
def test_a_token_that_is_already_expired_is_refused(
    ttl: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["token", "--sub", "alice", "--role", "customer", "--ttl", ttl])

    assert exit_.value.code == 2
    assert "--ttl must be between 1 and" in capsys.readouterr().err


def test_a_token_within_the_maximum_is_printed_signed_with_the_local_key(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FLIGHTBOOK_STATE_DIR", str(tmp_path))
    settings = Settings.from_env()

    assert main(["token", "--sub", "alice", "--role", "customer", "--ttl", "600"]) == 0

    token = capsys.readouterr().out.strip()
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "EdDSA"
    assert header["kid"] == signing_keys_from_settings(settings).current().kid
    principal = verify_token(settings, token)  # with the public half, beside the key file
    assert principal.subject == "alice"
    assert principal.roles == {"customer"}
    assert principal.session_id is None
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == 600
