"""Tokens made by hand for the tests of what the APIs refuse (claims, keys, headers)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ed25519

from flightbook.http.keys import signing_keys_from_settings

if TYPE_CHECKING:
    from flightbook.config.settings import Settings

__all__ = ("claims_of", "foreign_key", "signed", "signed_token")


def claims_of(settings: Settings, **claims: Any) -> dict[str, Any]:
    """Sane claims for alice the customer, overridden by ``claims`` (None drops one)."""
    now = int(time.time())
    body: dict[str, Any] = {
        "sub": "alice",
        "roles": ["customer"],
        "iat": now,
        "exp": now + 600,
        "aud": settings.jwt_audience,
        "iss": settings.jwt_issuer,
        **claims,
    }
    return {key: value for key, value in body.items() if value is not None}


def foreign_key() -> ed25519.Ed25519PrivateKey:
    """A key nobody published."""
    return ed25519.Ed25519PrivateKey.generate()


def signed_token(
    settings: Settings,
    *,
    key: Any = None,
    algorithm: str | None = None,
    headers: dict[str, Any] | None = None,
    **claims: Any,
) -> str:
    """A token with these claims, signed with the test's current signing key (its kid in
    the header) unless ``key``/``algorithm``/``headers`` say otherwise."""
    current = signing_keys_from_settings(settings).current()
    header = {"kid": current.kid, **(headers or {})}
    return jwt.encode(
        claims_of(settings, **claims),
        current.private_key if key is None else key,
        algorithm=algorithm or current.alg,
        headers=header,
    )


def signed(settings: Settings, **claims: Any) -> dict[str, str]:
    """A bearer header for :func:`signed_token` with these claims."""
    return {"Authorization": f"Bearer {signed_token(settings, **claims)}"}
