"""``flightbook token``: a local token, never longer-lived than the APIs accept."""

from __future__ import annotations

import jwt
import pytest

from flightbook.cli import main
from flightbook.config.settings import Settings

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


def test_a_token_within_the_maximum_is_printed(capsys: pytest.CaptureFixture[str]) -> None:
    settings = Settings()

    assert main(["token", "--sub", "alice", "--role", "customer", "--ttl", "600"]) == 0

    claims = jwt.decode(
        capsys.readouterr().out.strip(),
        settings.jwt_secret,
        algorithms=["HS256"],
        audience=settings.jwt_audience,
    )
    assert claims["exp"] - claims["iat"] == 600
    assert claims["roles"] == ["customer"]
