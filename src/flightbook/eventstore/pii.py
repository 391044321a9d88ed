"""Personal data sealed per data subject, so it can be erased without rewriting the log.

Each subject (a customer) gets a random AES-256-GCM key in ``pii.subject_keys``. Events
carry only the sealed text; :meth:`PersonalDataVault.erase` deletes the key, after which
every sealed value of that subject reads as erased (crypto-shredding).
"""

from __future__ import annotations

import base64
import os
import time
from typing import TYPE_CHECKING

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

if TYPE_CHECKING:
    from psycopg_pool import ConnectionPool

__all__ = ("ERASED", "PersonalDataVault", "SealedDataError")

_PREFIX = "pii1:"
ERASED = "[erased]"
_KEY_TTL = 30.0  # seconds a key is cached: an erasure reaches every process within this


class SealedDataError(ValueError):
    """A sealed value is malformed or was sealed for another subject."""


class PersonalDataVault:
    """Seals and opens personal data with a key per subject, stored in PostgreSQL.

    Args:
        pool: connections to the event store database (``pii`` schema from migrations).
    """

    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool
        self._cache: dict[str, tuple[float, bytes | None]] = {}

    def seal(self, subject_id: str, plaintext: str) -> str:
        key = self._key(subject_id, create=True)
        if key is None:
            raise SealedDataError(f"subject {subject_id} was erased; nothing can be sealed for it")
        nonce = os.urandom(12)
        box = AESGCM(key).encrypt(nonce, plaintext.encode(), subject_id.encode())
        return _PREFIX + base64.b64encode(nonce + box).decode()

    def open(self, subject_id: str, sealed: str) -> str:
        """The plaintext, or :data:`ERASED` when the subject's key was erased."""
        if not sealed.startswith(_PREFIX):
            raise SealedDataError("not a sealed value")
        key = self._key(subject_id, create=False)
        if key is None:
            return ERASED
        raw = base64.b64decode(sealed.removeprefix(_PREFIX))
        try:
            return AESGCM(key).decrypt(raw[:12], raw[12:], subject_id.encode()).decode()
        except InvalidTag as exc:
            raise SealedDataError("sealed for another subject, or altered") from exc

    def erase(self, subject_id: str) -> None:
        with self._pool.connection() as conn:
            conn.execute(
                "INSERT INTO pii.subject_keys (subject_id, key, erased_at) "
                "VALUES (%s, NULL, now()) "
                "ON CONFLICT (subject_id) DO UPDATE SET key = NULL, erased_at = now()",
                (subject_id,),
            )
        self._cache[subject_id] = (time.monotonic(), None)

    def _key(self, subject_id: str, *, create: bool) -> bytes | None:
        cached = self._cache.get(subject_id)
        if cached is not None and time.monotonic() - cached[0] < _KEY_TTL:
            return cached[1]
        with self._pool.connection() as conn:
            if create:
                conn.execute(
                    "INSERT INTO pii.subject_keys (subject_id, key) VALUES (%s, %s) "
                    "ON CONFLICT (subject_id) DO NOTHING",
                    (subject_id, AESGCM.generate_key(bit_length=256)),
                )
            row = conn.execute(
                "SELECT key FROM pii.subject_keys WHERE subject_id = %s", (subject_id,)
            ).fetchone()
        if row is None:
            return None  # never sealed anything: nothing to open
        key = bytes(row[0]) if row[0] is not None else None
        self._cache[subject_id] = (time.monotonic(), key)
        return key
