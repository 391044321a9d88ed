"""Bearer JWTs: HS256 pinned, ``exp``, ``aud`` and ``iss`` checked, roles from a claim."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Literal

import jwt
import msgspec

if TYPE_CHECKING:
    from collections.abc import Iterable

    from flightbook.config.settings import Settings

__all__ = ("ALGORITHM", "ROLES", "InvalidTokenError", "Principal", "mint_token", "verify_token")

ALGORITHM = "HS256"  # pinned: a token naming another algorithm (or "none") is refused
Role = Literal["customer", "agent", "ops", "analyst", "auditor"]
ROLES: frozenset[str] = frozenset({"customer", "agent", "ops", "analyst", "auditor"})


class InvalidTokenError(Exception):
    """The bearer token is missing, malformed, expired or not for us."""


class Principal(msgspec.Struct, frozen=True, kw_only=True):
    """Who is calling: the token's subject and roles."""

    subject: str
    roles: frozenset[str]

    def has(self, *roles: str) -> bool:
        return not self.roles.isdisjoint(roles)


def mint_token(
    settings: Settings, *, subject: str, roles: Iterable[str], ttl_seconds: int = 3600
) -> str:
    """A signed token for local use (``flightbook token``) and tests."""
    now = int(time.time())
    claims = {
        "sub": subject,
        "roles": sorted(set(roles)),
        "iat": now,
        "exp": now + ttl_seconds,
        "aud": settings.jwt_audience,
        "iss": settings.jwt_issuer,
    }
    return jwt.encode(claims, settings.jwt_secret, algorithm=ALGORITHM)


def verify_token(settings: Settings, token: str) -> Principal:
    """Check signature, algorithm, expiry, audience and issuer; return the principal."""
    try:
        claims = jwt.decode(
            token,
            settings.jwt_secret,
            algorithms=[ALGORITHM],
            audience=settings.jwt_audience,
            issuer=settings.jwt_issuer,
            options={"require": ["exp", "sub", "aud", "iss"]},
        )
    except jwt.PyJWTError as exc:
        raise InvalidTokenError(str(exc)) from exc
    roles = claims.get("roles", [])
    subject = claims["sub"]
    if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
        raise InvalidTokenError("claim 'roles' must be a list of strings")
    if not isinstance(subject, str) or not subject:
        raise InvalidTokenError("claim 'sub' must be a non-empty string")
    return Principal(subject=subject, roles=frozenset(r for r in roles if r in ROLES))
