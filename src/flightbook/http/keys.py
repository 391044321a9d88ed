"""The token signing keys: a private key file for the signer, a public JWKS for verifiers.

Tokens are signed with EdDSA (Ed25519) or ES256 (P-256) and name their key by ``kid``
(ADR 0019). Only the identity service and ``flightbook token`` hold the private keys
(``FLIGHTBOOK_JWT_SIGNING_KEYS_FILE``); the command and query APIs verify with the public
keys alone (``FLIGHTBOOK_JWT_JWKS``: the identity service's
``/.well-known/jwks.json`` URL, or a file).

The private file lists every key with when it was made and when it was retired. The
newest key not retired signs; :meth:`SigningKeys.rotate` retires it and makes a new one,
and the public set keeps a retired key until no token it signed can still be valid
(``jwt_max_ttl_seconds`` after its retirement, plus the clock leeway), so a rotation
needs no downtime. Every save writes the public half beside the private file
(``<name>.jwks.json``), which is what verifiers read on the local stack.

Both files are read again whenever they change on disk, so running processes follow a
rotation.
"""

from __future__ import annotations

import functools
import json
import secrets
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from jwt.algorithms import ECAlgorithm, OKPAlgorithm

from flightbook.config.keyfiles import ChangedFile, create_once, replace_atomically
from flightbook.config.locality import on_local_stack
from flightbook.config.settings import PREFIX, SettingsError

if TYPE_CHECKING:
    from flightbook.config.settings import Settings

__all__ = (
    "ALGORITHMS",
    "DEFAULT_SIGNING_KEYS_FILE",
    "LEEWAY_SECONDS",
    "FilePublicKeys",
    "KeyFileError",
    "PublicKeys",
    "SigningKey",
    "SigningKeys",
    "UrlPublicKeys",
    "jwks_source",
    "public_keys_at",
    "signing_keys_from_settings",
    "signing_keys_path",
)

ALGORITHMS = ("EdDSA", "ES256")
"""The only algorithms a token may name: asymmetric, with a key of the matching type."""
DEFAULT_SIGNING_KEYS_FILE = "signing-keys.json"
LEEWAY_SECONDS = 30
"""Clock skew allowed between the issuer and us (``iat`` slightly ahead, ``exp`` just past)."""
_REFETCH_SECONDS = 10.0  # an unknown kid makes a URL source fetch again at most this often
_FETCH_TIMEOUT = 2.0


class KeyFileError(RuntimeError):
    """A key file or JWKS is missing, unreadable or malformed."""


@dataclass(frozen=True)
class SigningKey:
    """One key of the private file."""

    kid: str
    alg: str
    jwk: dict[str, Any]  # the private JWK (RFC 7517), with "d"
    created: float
    retired: float | None = None

    @functools.cached_property
    def private_key(self) -> ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey:
        key = jwt.PyJWK(self.jwk, algorithm=self.alg).key
        if not isinstance(key, ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey):
            raise KeyFileError(f"key {self.kid} is not a private key")
        return key

    def public_jwk(self) -> dict[str, Any]:
        public = {k: v for k, v in self.jwk.items() if k != "d"}
        return {**public, "kid": self.kid, "alg": self.alg, "use": "sig"}


def _new_key(alg: str) -> SigningKey:
    if alg == "EdDSA":
        private: Any = ed25519.Ed25519PrivateKey.generate()
        jwk = OKPAlgorithm.to_jwk(private, as_dict=True)
    elif alg == "ES256":
        private = ec.generate_private_key(ec.SECP256R1())
        jwk = ECAlgorithm.to_jwk(private, as_dict=True)
    else:
        raise KeyFileError(f"algorithm {alg!r} is not one of {', '.join(ALGORITHMS)}")
    return SigningKey(kid=secrets.token_hex(8), alg=alg, jwk=dict(jwk), created=time.time())


class SigningKeys:
    """The private key file (mode 0600): who signs now, and the public set to publish.

    Args:
        path: the file; it must exist and hold at least one key that is not retired.
        keep_seconds: how long a retired key stays in the public set (the longest a token
            lives, plus leeway).
    """

    def __init__(self, path: Path | str, *, keep_seconds: float) -> None:
        self.path = Path(path)
        self.keep_seconds = keep_seconds
        self._lock = threading.Lock()
        self._file = ChangedFile(self.path)
        self._keys: list[SigningKey] = []
        self._refresh()

    @classmethod
    def create(cls, path: Path | str, *, keep_seconds: float, alg: str = "EdDSA") -> SigningKeys:
        """The key file at ``path``, made with one new key if there is none yet.

        Safe against processes racing to make it: exactly one file wins, all use it.
        """
        path = Path(path)
        if not path.exists():
            create_once(path, _render([_new_key(alg)]))
        keys = cls(path, keep_seconds=keep_seconds)
        keys.publish()
        return keys

    @property
    def public_path(self) -> Path:
        """Where the public half is written (``signing-keys.jwks.json``)."""
        return self.path.with_name(self.path.stem + ".jwks.json")

    def current(self) -> SigningKey:
        """The key that signs now: the newest one not retired."""
        with self._lock:
            self._refresh()
            live = [key for key in self._keys if key.retired is None]
        if not live:
            raise KeyFileError(f"signing key file {self.path} has no key that is not retired")
        return max(live, key=lambda key: key.created)

    def keys(self) -> list[SigningKey]:
        with self._lock:
            self._refresh()
            return list(self._keys)

    def jwks(self, *, now: float | None = None) -> dict[str, Any]:
        """The public keys that may still verify a token (RFC 7517 JWK Set)."""
        moment = time.time() if now is None else now
        published = [
            key.public_jwk()
            for key in self.keys()
            if key.retired is None or moment - key.retired <= self.keep_seconds
        ]
        return {"keys": published}

    def rotate(self, *, alg: str = "EdDSA") -> tuple[SigningKey, list[str]]:
        """Retire the signing key and make a new one; drop the keys no token can need.

        Returns the new key and the kids dropped.
        """
        now = time.time()
        with self._lock:
            self._refresh()
            kept: list[SigningKey] = []
            dropped: list[str] = []
            for old in self._keys:
                key = (
                    old if old.retired else SigningKey(old.kid, old.alg, old.jwk, old.created, now)
                )
                if now - (key.retired or now) > self.keep_seconds:
                    dropped.append(key.kid)
                else:
                    kept.append(key)
            new = _new_key(alg)
            self._save([*kept, new])
        self.publish()
        return new, dropped

    def publish(self) -> None:
        """Write the public half beside the private file (atomically, world-readable)."""
        body = (json.dumps(self.jwks(), indent=2) + "\n").encode()
        replace_atomically(self.public_path, body, mode=0o644)

    def _save(self, keys: list[SigningKey]) -> None:
        replace_atomically(self.path, _render(keys))
        self._file.forget()
        self._refresh()

    def _refresh(self) -> None:
        try:
            keys = self._file.parse_if_changed(lambda text: _parse(text, self.path))
        except OSError as exc:
            raise KeyFileError(f"signing key file {self.path}: {exc.strerror}") from None
        if keys is not None:
            self._keys = keys


def _render(keys: list[SigningKey]) -> bytes:
    document = {
        "keys": [
            {"kid": k.kid, "alg": k.alg, "jwk": k.jwk, "created": k.created, "retired": k.retired}
            for k in keys
        ]
    }
    return (json.dumps(document, indent=2) + "\n").encode()


def _parse(text: str, path: Path) -> list[SigningKey]:
    bad = KeyFileError(f"signing key file {path} is not a flightbook signing key file")
    try:
        document = json.loads(text)
        entries = document["keys"]
        keys = [
            SigningKey(
                kid=str(entry["kid"]),
                alg=str(entry["alg"]),
                jwk=dict(entry["jwk"]),
                created=float(entry["created"]),
                retired=None if entry.get("retired") is None else float(entry["retired"]),
            )
            for entry in entries
        ]
    except (ValueError, KeyError, TypeError):
        raise bad from None
    if any(key.alg not in ALGORITHMS for key in keys):
        raise bad
    return keys


# -- the verifiers' side ----------------------------------------------------------------------


class PublicKeys(Protocol):
    """Where a verifier finds a token's key by its ``kid``."""

    def get(self, kid: str) -> jwt.PyJWK | None: ...


def _key_set(document: object) -> dict[str, jwt.PyJWK]:
    """The usable keys of a JWKS document: asymmetric, for signing, with a known alg."""
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise KeyFileError("not a JWK Set (RFC 7517 §5)")
    found: dict[str, jwt.PyJWK] = {}
    for entry in document["keys"]:
        if not isinstance(entry, dict) or entry.get("alg") not in ALGORITHMS:
            continue
        kid = entry.get("kid")
        if not isinstance(kid, str) or "d" in entry or entry.get("use", "sig") != "sig":
            continue
        try:
            found[kid] = jwt.PyJWK(entry, algorithm=str(entry["alg"]))
        except jwt.PyJWTError:
            continue
    return found


class FilePublicKeys:
    """A JWKS file, read again whenever it changed on disk."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._file = ChangedFile(self.path)
        self._keys: dict[str, jwt.PyJWK] = {}
        self._refresh()

    def get(self, kid: str) -> jwt.PyJWK | None:
        with self._lock:
            self._refresh()
            return self._keys.get(kid)

    def _refresh(self) -> None:
        try:
            keys = self._file.parse_if_changed(lambda text: _key_set(json.loads(text)))
        except OSError as exc:
            raise KeyFileError(f"public key file {self.path}: {exc.strerror}") from None
        except ValueError:
            raise KeyFileError(f"public key file {self.path} is not JSON") from None
        if keys is not None:
            self._keys = keys


class UrlPublicKeys:
    """A JWKS URL (the identity service's), fetched again for an unknown ``kid``.

    At most every 10 s, so forged kids cannot make us hammer the identity service.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self._lock = threading.Lock()
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched = float("-inf")

    def get(self, kid: str) -> jwt.PyJWK | None:
        with self._lock:
            key = self._keys.get(kid)
            if key is None and time.monotonic() - self._fetched >= _REFETCH_SECONDS:
                self._fetched = time.monotonic()
                self._keys = self._fetch() or self._keys
                key = self._keys.get(kid)
            return key

    def _fetch(self) -> dict[str, jwt.PyJWK] | None:
        try:
            with urllib.request.urlopen(self.url, timeout=_FETCH_TIMEOUT) as response:  # noqa: S310 - a configured http(s) URL
                return _key_set(json.loads(response.read()))
        except (OSError, ValueError, KeyFileError):
            return None  # keep the keys we had; the next unknown kid tries again


# -- from settings ----------------------------------------------------------------------------

_SOURCES: dict[str, PublicKeys] = {}
_SIGNING: dict[tuple[Path, float], SigningKeys] = {}
_SOURCES_LOCK = threading.Lock()


def signing_keys_path(settings: Settings) -> Path:
    """Where the private key file is: the setting, else the local stack's state dir.

    Raises:
        SettingsError: ``FLIGHTBOOK_JWT_SIGNING_KEYS_FILE`` is unset off the local stack.
    """
    if settings.jwt_signing_keys_file:
        return Path(settings.jwt_signing_keys_file).resolve()
    if on_local_stack(settings):
        return settings.state_path / DEFAULT_SIGNING_KEYS_FILE
    raise SettingsError(
        f"{PREFIX}JWT_SIGNING_KEYS_FILE is not set: off the local stack the token signer "
        "needs its private key file (flightbook keys create --file <path>)"
    )


def _keep_seconds(settings: Settings) -> float:
    return float(settings.jwt_max_ttl_seconds + LEEWAY_SECONDS)


def signing_keys_from_settings(settings: Settings) -> SigningKeys:
    """The private key file of ``settings`` (on the local stack, made if the setting is unset).

    One reader per file and lifetime.
    A file named by ``FLIGHTBOOK_JWT_SIGNING_KEYS_FILE`` is never made: a typo must not
    silently start signing with a key nobody publishes.

    Raises:
        SettingsError: one line naming ``FLIGHTBOOK_JWT_SIGNING_KEYS_FILE``.
    """
    path = signing_keys_path(settings)
    keep = _keep_seconds(settings)
    with _SOURCES_LOCK:
        known = _SIGNING.get((path, keep))
    if known is not None:
        return known
    try:
        if settings.jwt_signing_keys_file:
            keys = SigningKeys(path, keep_seconds=keep)
        else:
            keys = SigningKeys.create(path, keep_seconds=keep)
    except (KeyFileError, OSError) as exc:
        raise SettingsError(f"{PREFIX}JWT_SIGNING_KEYS_FILE: {exc}") from None
    with _SOURCES_LOCK:
        return _SIGNING.setdefault((path, keep), keys)


@functools.lru_cache(maxsize=64)
def jwks_source(settings: Settings) -> str:
    """Where the verifiers' public keys are: ``FLIGHTBOOK_JWT_JWKS`` (a URL or a file).

    Unset on the local stack: the public half beside the local signing key file (made if
    missing).

    Raises:
        SettingsError: unset off the local stack, or the local key file is unusable.
    """
    if settings.jwt_jwks:
        return settings.jwt_jwks
    if on_local_stack(settings):
        return str(signing_keys_from_settings(settings).public_path)
    raise SettingsError(
        f"{PREFIX}JWT_JWKS is not set: off the local stack the APIs verify tokens with the "
        "identity service's public keys; set it to its /.well-known/jwks.json URL or a file"
    )


def public_keys_at(source: str) -> PublicKeys:
    """The public keys at ``source`` (an http(s) URL or a file), one reader per source.

    Raises:
        KeyFileError: a file source is missing or malformed.
    """
    with _SOURCES_LOCK:
        keys = _SOURCES.get(source)
        if keys is None:
            if source.startswith(("http://", "https://")):
                keys = UrlPublicKeys(source)
            else:
                keys = FilePublicKeys(source)
            _SOURCES[source] = keys
        return keys
