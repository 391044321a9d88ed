"""Personal data sealed per data subject, so it can be erased without rewriting the log.

Each subject (a customer) gets a random AES-256-GCM key in ``pii.subject_keys``. Events
carry only the sealed text; :meth:`PersonalDataVault.erase` deletes the key, after which
every sealed value of that subject reads as erased (crypto-shredding).
"""

from __future__ import annotations

import base64
import os
import time
from typing import TYPE_CHECKING, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

if TYPE_CHECKING:
    from psycopg_pool import ConnectionPool

    from flightbook.eventstore.memory import MemoryDatabase

__all__ = (
    "ERASED",
    "MemorySubjectKeys",
    "PersonalDataVault",
    "PostgresSubjectKeys",
    "SealedDataError",
    "SubjectKeys",
)

_PREFIX = "pii1:"
ERASED = "[erased]"
_KEY_TTL = 30.0  # seconds a key is cached: an erasure reaches every process within this


class SealedDataError(ValueError):
    """A sealed value is malformed or was sealed for another subject."""


class SubjectKeys(Protocol):
    """Where the subjects' keys are kept."""

    def key(self, subject_id: str, *, create: bool) -> tuple[bool, bytes | None]:
        """Whether the subject has a key row, and its key (None once erased).

        With ``create``, a subject that has no row gets a new key first.
        """
        ...

    def erase(self, subject_id: str) -> None:
        """Forget the subject's key for good (it can never be made again)."""
        ...


class PostgresSubjectKeys:
    """Keys in ``pii.subject_keys``.

    Args:
        pool: connections to the event store database (``pii`` schema from migrations).
    """

    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool

    def key(self, subject_id: str, *, create: bool) -> tuple[bool, bytes | None]:
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
            return False, None  # never sealed anything: nothing to open
        return True, bytes(row[0]) if row[0] is not None else None

    def erase(self, subject_id: str) -> None:
        with self._pool.connection() as conn:
            conn.execute(
                "INSERT INTO pii.subject_keys (subject_id, key, erased_at) "
                "VALUES (%s, NULL, now()) "
                "ON CONFLICT (subject_id) DO UPDATE SET key = NULL, erased_at = now()",
                (subject_id,),
            )


class MemorySubjectKeys:
    """Keys in the in-memory event store's tables (``pii.subject_keys``)."""

    def __init__(self, database: MemoryDatabase) -> None:
        self._database = database

    def key(self, subject_id: str, *, create: bool) -> tuple[bool, bytes | None]:
        with self._database.lock:
            table = self._database.table("pii.subject_keys")
            if create and subject_id not in table:
                table[subject_id] = {"key": AESGCM.generate_key(bit_length=256)}
            row = table.get(subject_id)
            return (False, None) if row is None else (True, row["key"])

    def erase(self, subject_id: str) -> None:
        with self._database.lock:
            self._database.table("pii.subject_keys")[subject_id] = {"key": None}


class PersonalDataVault:
    """Seals and opens personal data with a key per subject.

    Args:
        keys: where the subjects' keys are kept.
    """

    def __init__(self, keys: SubjectKeys) -> None:
        self._keys = keys
        self._cache: dict[str, tuple[float, bytes | None]] = {}

    @classmethod
    def in_postgres(cls, pool: ConnectionPool) -> PersonalDataVault:
        """A vault whose keys are in ``pii.subject_keys`` of the event store database."""
        return cls(PostgresSubjectKeys(pool))

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
        self._keys.erase(subject_id)
        self._cache[subject_id] = (time.monotonic(), None)

    def _key(self, subject_id: str, *, create: bool) -> bytes | None:
        cached = self._cache.get(subject_id)
        if cached is not None and time.monotonic() - cached[0] < _KEY_TTL:
            return cached[1]
        exists, key = self._keys.key(subject_id, create=create)
        if exists:
            self._cache[subject_id] = (time.monotonic(), key)
        return key
