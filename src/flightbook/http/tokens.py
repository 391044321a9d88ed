"""Bearer JWTs: asymmetric (EdDSA or ES256) with ``kid``, claims checked, roles from a claim.

Signing (:func:`mint_token`, :class:`TokenSigner`) needs the private key file
(:mod:`flightbook.http.keys`): the identity service and ``flightbook token`` only.
Verifying (:func:`verify_token`) needs only the public keys. A token is refused unless:

- its header names a ``kid`` of a known public key and exactly that key's algorithm (so
  ``none``, HS256 with any secret, and HS/RS confusion with the public key as an HMAC
  secret all fail), and carries no key of its own (``jwk``, ``jku``, ``x5u``, ``x5c``);
- the signature verifies with that key;
- ``exp``, ``iat``, ``sub``, ``aud`` and ``iss`` are there; ``aud`` and ``iss`` are ours;
- it lives at most ``Settings.jwt_max_ttl_seconds``: ``exp - iat`` may not exceed the
  maximum, and neither may ``exp - now``.

A token from the identity service names its session (``sid``); the APIs check that the
session is still live (:mod:`flightbook.http.sessions`). A token without ``sid``
(``flightbook token``) is accepted only on the local stack.

A client sends the same token with every request until it expires, and checking its
signature was a tenth of a read's CPU: :func:`verify_token` remembers a token it accepted
(:class:`_Verified`) for at most :data:`REMEMBER_SECONDS` and never past its ``exp``,
and accepts it again only while the key that verified it is still the very key its
source holds for that ``kid`` (a rotation that drops the key refuses it at once).
Refusals are not remembered. (ADR 0029)
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import jwt
import msgspec

from flightbook.http.keys import (
    ALGORITHMS,
    LEEWAY_SECONDS,
    KeyFileError,
    jwks_source,
    public_keys_at,
    signing_keys_from_settings,
)

if TYPE_CHECKING:
    from collections.abc import Iterable

    from flightbook.config.settings import Settings
    from flightbook.http.keys import SigningKeys

__all__ = (
    "ALGORITHMS",
    "LEEWAY_SECONDS",
    "REMEMBER_SECONDS",
    "ROLES",
    "InvalidTokenError",
    "Principal",
    "TokenSigner",
    "mint_token",
    "verify_token",
)

Role = Literal["customer", "agent", "ops", "analyst", "auditor", "privacy"]
ROLES: frozenset[str] = frozenset({"customer", "agent", "ops", "analyst", "auditor", "privacy"})
_EMBEDDED_KEYS = ("jwk", "jku", "x5u", "x5c")
_LONGEST_KID = 64
REMEMBER_SECONDS = 30.0
"""The longest an accepted token is accepted again without checking its signature."""
_REMEMBERED = 10_000  # tokens remembered per process; all are forgotten beyond


class InvalidTokenError(Exception):
    """The bearer token is missing, malformed, expired or not for us."""


class Principal(msgspec.Struct, frozen=True, kw_only=True):
    """Who is calling: the token's subject, roles and session (None: a sessionless token)."""

    subject: str
    roles: frozenset[str]
    session_id: str | None = None

    def has(self, *roles: str) -> bool:
        return not self.roles.isdisjoint(roles)


class TokenSigner:
    """Signs access tokens with the current key of a private key file (header ``kid``)."""

    def __init__(self, keys: SigningKeys, *, issuer: str, audience: str) -> None:
        self.keys = keys
        self.issuer = issuer
        self.audience = audience

    def sign(
        self,
        *,
        subject: str,
        roles: Iterable[str],
        ttl_seconds: int,
        session_id: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            "sub": subject,
            "roles": sorted(set(roles)),
            "iat": now,
            "exp": now + ttl_seconds,
            "aud": self.audience,
            "iss": self.issuer,
            "jti": uuid.uuid4().hex,
            **(extra or {}),
        }
        if session_id is not None:
            claims["sid"] = session_id
        key = self.keys.current()
        return jwt.encode(
            claims, key.private_key, algorithm=key.alg, headers={"kid": key.kid, "typ": "JWT"}
        )


def mint_token(
    settings: Settings,
    *,
    subject: str,
    roles: Iterable[str],
    ttl_seconds: int = 3600,
    session_id: str | None = None,
) -> str:
    """A signed token for local use (``flightbook token``), the benchmark and tests."""
    signer = TokenSigner(
        signing_keys_from_settings(settings),
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
    )
    return signer.sign(subject=subject, roles=roles, ttl_seconds=ttl_seconds, session_id=session_id)


@dataclass(frozen=True, slots=True)
class _Verified:
    """A token accepted earlier: what it was checked against, and until when it holds."""

    principal: Principal
    checks: tuple[str, str, str, int]
    """The key source, audience, issuer and longest lifetime it was checked against."""
    kid: str
    key: jwt.PyJWK
    until: float


_verified: dict[str, _Verified] = {}
_verified_lock = threading.Lock()


def _checks_of(settings: Settings, keys_source: str) -> tuple[str, str, str, int]:
    return (keys_source, settings.jwt_audience, settings.jwt_issuer, settings.jwt_max_ttl_seconds)


def _remembered(token: str, checks: tuple[str, str, str, int]) -> Principal | None:
    seen = _verified.get(token)
    if seen is None or seen.checks != checks or time.time() >= seen.until:
        return None
    try:
        current = public_keys_at(checks[0]).get(seen.kid)
    except KeyFileError:
        return None
    return seen.principal if current is seen.key else None


def _remember(token: str, entry: _Verified) -> None:
    with _verified_lock:
        if len(_verified) >= _REMEMBERED:
            _verified.clear()
        _verified[token] = entry


def verify_token(settings: Settings, token: str) -> Principal:
    """Check header, key, signature, expiry, audience and issuer; return the principal.

    The public keys are where :func:`flightbook.http.keys.jwks_source` says. A token
    accepted within :data:`REMEMBER_SECONDS` is accepted again without the checks while
    its key is unchanged and it has not expired.
    """
    keys_source = jwks_source(settings)
    checks = _checks_of(settings, keys_source)
    remembered = _remembered(token, checks)
    if remembered is not None:
        return remembered
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as exc:
        raise InvalidTokenError(str(exc)) from None
    key = _key_of(header, keys_source)
    try:
        claims = jwt.decode(
            token,
            key.key,
            algorithms=[key.algorithm_name],
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
    session = claims.get("sid")
    if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
        raise InvalidTokenError("claim 'roles' must be a list of strings")
    if not isinstance(subject, str) or not subject:
        raise InvalidTokenError("claim 'sub' must be a non-empty string")
    if session is not None and (not isinstance(session, str) or not session):
        raise InvalidTokenError("claim 'sid' must be a non-empty string")
    principal = Principal(
        subject=subject, roles=frozenset(r for r in roles if r in ROLES), session_id=session
    )
    until = min(float(claims["exp"]), time.time() + REMEMBER_SECONDS)
    _remember(token, _Verified(principal, checks, str(header["kid"]), key, until))
    return principal


def _key_of(header: dict[str, Any], keys_source: str) -> jwt.PyJWK:
    """The public key a token's header names, if the header is one we accept."""
    embedded = [name for name in _EMBEDDED_KEYS if name in header]
    if embedded:
        raise InvalidTokenError(f"the token carries its own key ({embedded[0]}): refused")
    kid, alg = header.get("kid"), header.get("alg")
    if alg not in ALGORITHMS:
        raise InvalidTokenError(f"algorithm {alg!r} is not accepted")
    if not isinstance(kid, str) or not kid or len(kid) > _LONGEST_KID:
        raise InvalidTokenError("the token names no key (kid)")
    try:
        key = public_keys_at(keys_source).get(kid)
    except KeyFileError as exc:
        raise InvalidTokenError(f"no public keys: {exc}") from None
    if key is None:
        raise InvalidTokenError("the token's key (kid) is not one of ours")
    if key.algorithm_name != alg:
        raise InvalidTokenError("the token's algorithm is not its key's")
    return key


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
