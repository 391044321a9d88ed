"""Bearer JWTs: HS256 pinned, ``exp``, ``iat``, ``aud`` and ``iss`` checked, roles from a claim.

A token lives at most ``Settings.jwt_max_ttl_seconds``: it must say when it was issued
(``iat``, not in the future), ``exp - iat`` may not exceed the maximum, and neither may
``exp - now`` (so a token "valid until the year 3000" is refused whatever its ``iat``).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Literal

import jwt
import msgspec

if TYPE_CHECKING:
    from collections.abc import Iterable

    from flightbook.config.settings import Settings

__all__ = (
    "ALGORITHM",
    "LEEWAY_SECONDS",
    "ROLES",
    "InvalidTokenError",
    "Principal",
    "mint_token",
    "verify_token",
)

ALGORITHM = "HS256"  # pinned: a token naming another algorithm (or "none") is refused
Role = Literal["customer", "agent", "ops", "analyst", "auditor", "privacy"]
ROLES: frozenset[str] = frozenset({"customer", "agent", "ops", "analyst", "auditor", "privacy"})
LEEWAY_SECONDS = 30
"""Clock skew allowed between the issuer and us (``iat`` slightly ahead, ``exp`` just past)."""


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
            options={"require": ["exp", "iat", "sub", "aud", "iss"]},
            leeway=LEEWAY_SECONDS,
        )
    except jwt.PyJWTError as exc:
        raise InvalidTokenError(str(exc)) from exc
    _check_lifetime(claims, settings.jwt_max_ttl_seconds)
    roles = claims.get("roles", [])
    subject = claims["sub"]
    if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
        raise InvalidTokenError("claim 'roles' must be a list of strings")
    if not isinstance(subject, str) or not subject:
        raise InvalidTokenError("claim 'sub' must be a non-empty string")
    return Principal(subject=subject, roles=frozenset(r for r in roles if r in ROLES))


def _check_lifetime(claims: dict[str, object], longest: int) -> None:
    issued, expires = claims["iat"], claims["exp"]
    # PyJWT checked iat is not in the future and exp not past, but accepts "123" for both
    numbers = (int, float)
    if not (isinstance(issued, numbers) and isinstance(expires, numbers)) or isinstance(
        issued, bool
    ):
        raise InvalidTokenError("claims 'iat' and 'exp' must be numbers")
    if expires - issued > longest:
        raise InvalidTokenError(f"the token lives longer than {longest} s (exp - iat)")
    if expires - time.time() > longest + LEEWAY_SECONDS:
        raise InvalidTokenError(f"the token expires more than {longest} s from now")
