"""The JWT attacks, asymmetric keys and their rotation: every forged token is a 401."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import msgspec
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from flightbook.config.settings import Settings
from flightbook.http.keys import SigningKeys, signing_keys_from_settings
from flightbook.http.tokens import InvalidTokenError, mint_token, verify_token
from tests.support.api import Api
from tests.support.apps import query_api_on
from tests.support.tokens import claims_of, foreign_key, signed_token

pytestmark = pytest.mark.integration

OLD_SHARED_SECRET = "flightbook-local-development-secret-do-not-deploy"


@pytest.fixture
def query_api(settings: Settings) -> Iterator[Api]:
    with query_api_on(settings) as client:
        yield client


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hand_made(header: dict[str, Any], claims: dict[str, Any], secret: bytes | None) -> str:
    """A token assembled by hand: PyJWT itself refuses to make some of these."""
    head = _b64(json.dumps(header).encode()) + "." + _b64(json.dumps(claims).encode())
    if secret is None:
        return head + "."
    return head + "." + _b64(hmac.new(secret, head.encode(), hashlib.sha256).digest())


def attacks(settings: Settings) -> dict[str, str]:
    current = signing_keys_from_settings(settings).current()
    public_jwk = json.dumps(current.public_jwk()).encode()
    x = base64.urlsafe_b64decode(current.jwk["x"] + "==")
    claims = claims_of(settings)
    now = int(time.time())
    return {
        "alg_none": hand_made({"alg": "none", "kid": current.kid}, claims, None),
        "alg_none_no_kid": hand_made({"alg": "none"}, claims, None),
        "hs256_old_shared_secret": jwt.encode(
            claims, OLD_SHARED_SECRET, algorithm="HS256", headers={"kid": current.kid}
        ),
        "hs256_public_jwk_as_secret": hand_made(
            {"alg": "HS256", "kid": current.kid}, claims, public_jwk
        ),
        "hs256_public_key_bytes_as_secret": hand_made(
            {"alg": "HS256", "kid": current.kid}, claims, x
        ),
        "kid_path_traversal": signed_token(
            settings, key=foreign_key(), headers={"kid": "../../../../dev/null"}
        ),
        "kid_sql": signed_token(settings, key=foreign_key(), headers={"kid": "x' OR '1'='1"}),
        "kid_unknown": signed_token(settings, key=foreign_key(), headers={"kid": "0" * 16}),
        "no_kid": jwt.encode(claims, current.private_key, algorithm="EdDSA"),
        "embedded_jwk": signed_token(
            settings,
            key=(attacker := foreign_key()),
            headers={
                "jwk": jwt.algorithms.OKPAlgorithm.to_jwk(attacker.public_key(), as_dict=True)
            },
        ),
        "jku": signed_token(
            settings, key=foreign_key(), headers={"jku": "https://evil.example/jwks.json"}
        ),
        "x5u": signed_token(settings, headers={"x5u": "https://evil.example/cert.pem"}),
        "foreign_key_right_kid": signed_token(settings, key=foreign_key()),
        "expired": signed_token(settings, iat=now - 900, exp=now - 120),
        "wrong_audience": signed_token(settings, aud="someone-else"),
        "wrong_issuer": signed_token(settings, iss="https://evil.example"),
        "es256_on_an_eddsa_kid": signed_token(
            settings, key=ec.generate_private_key(ec.SECP256R1()), algorithm="ES256"
        ),
    }


def test_every_forged_or_foreign_token_is_a_401(query_api: Api, settings: Settings) -> None:
    forged = attacks(settings)

    answers = {
        name: query_api.get("/bookings", headers={"Authorization": f"Bearer {token}"}).status_code
        for name, token in forged.items()
    }

    assert answers == dict.fromkeys(forged, 401)
    genuine = mint_token(settings, subject="alice", roles=["customer"])
    assert (
        query_api.get("/bookings", headers={"Authorization": f"Bearer {genuine}"}).status_code
        == 200
    )


def rotating(tmp_path: Path, settings: Settings, keep: float) -> tuple[Settings, SigningKeys]:
    keys = SigningKeys.create(tmp_path / "keys.json", keep_seconds=keep)
    changed = msgspec.structs.replace(
        settings,
        jwt_signing_keys_file=str(keys.path),
        jwt_jwks=str(keys.public_path),
    )
    return changed, keys


def test_a_rotated_key_verifies_its_tokens_until_the_last_can_have_expired(
    tmp_path: Path, settings: Settings
) -> None:
    changed, keys = rotating(tmp_path, settings, keep=settings.jwt_max_ttl_seconds + 30)
    before = mint_token(changed, subject="alice", roles=["customer"])
    old_kid = keys.current().kid

    new, dropped = keys.rotate()
    after = mint_token(changed, subject="bob", roles=["customer"])

    assert dropped == []
    assert jwt.get_unverified_header(after)["kid"] == new.kid != old_kid
    assert verify_token(changed, before).subject == "alice"  # the old key still verifies
    assert verify_token(changed, after).subject == "bob"
    # once no token of the old key can be valid any more, the next rotation drops it
    document = json.loads(keys.path.read_text())
    for entry in document["keys"]:
        if entry["kid"] == old_kid:
            entry["retired"] = time.time() - keys.keep_seconds - 1
    keys.path.write_text(json.dumps(document))
    _, dropped = keys.rotate()
    assert dropped == [old_kid]
    with pytest.raises(InvalidTokenError, match="not one of ours"):
        verify_token(changed, before)


def test_a_token_accepted_once_is_accepted_again_without_its_signature_checked(
    tmp_path: Path, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    changed, _ = rotating(tmp_path, settings, keep=settings.jwt_max_ttl_seconds + 30)
    token = mint_token(changed, subject="alice", roles=["customer"])
    assert verify_token(changed, token).subject == "alice"

    def no_more_checks(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("the remembered token was checked again")

    monkeypatch.setattr(jwt, "decode", no_more_checks)

    assert verify_token(changed, token).subject == "alice"
    # other checks (another audience) are not answered from what was remembered
    other = msgspec.structs.replace(changed, jwt_audience="someone-else")
    with pytest.raises(AssertionError, match="checked again"):
        verify_token(other, token)


def test_a_remembered_token_is_checked_again_once_its_exp_has_passed(
    tmp_path: Path, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    changed, _ = rotating(tmp_path, settings, keep=settings.jwt_max_ttl_seconds + 30)
    token = mint_token(changed, subject="alice", roles=["customer"], ttl_seconds=5)
    assert verify_token(changed, token).subject == "alice"
    later = time.time() + 6

    def checked(*_args: object, **_kwargs: object) -> None:
        raise jwt.ExpiredSignatureError("Signature has expired")

    monkeypatch.setattr(time, "time", lambda: later)
    monkeypatch.setattr(jwt, "decode", checked)

    with pytest.raises(InvalidTokenError, match="expired"):
        verify_token(changed, token)


def test_the_jwks_holds_public_keys_only(settings: Settings) -> None:
    published = signing_keys_from_settings(settings).jwks()

    assert published["keys"]
    for key in published["keys"]:
        assert "d" not in key
        assert key["alg"] in ("EdDSA", "ES256")
        assert key["use"] == "sig"
