"""Personal data sealed per data subject, so it can be erased without rewriting the log.

Envelope encryption (ADR 0009, ADR 0017). Each subject (a customer) has at most one live
AES-256-GCM *data key* at a time, in ``pii.data_keys``, stored only wrapped by a
key-encryption key (KEK, :mod:`flightbook.eventstore.keks`) that never lives in the
database. Events carry only sealed text::

    pii2:<key id, 32 hex>:<base64(nonce + ciphertext)>   associated data "<subject>|<key id>"

Erasure (:meth:`PersonalDataVault.erasure_row`, written in the transaction of the
erasure's events, or :meth:`PersonalDataVault.erase`) drops every wrapped key of the
subject; every value sealed under them then reads as :data:`ERASED` (crypto-shredding).
The next :meth:`~PersonalDataVault.seal` for that subject makes a NEW key, so an erased
customer can book again while the old bookings stay erased.

Legacy ``pii1:<base64>`` values (before the key hierarchy) were sealed with the raw key of
``pii.subject_keys`` (associated data: the subject id). They still open while that row
has its key; ``flightbook privacy rotate-kek`` wraps those raw keys in place (columns
``wrapped``, ``kek_id``) and clears ``key``, so after it no raw key is left anywhere.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import os
import threading
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from eventsourcing.persistence import IntegrityError

from flightbook.eventstore.keks import (
    KeyEncryptionKeyError,
    MemoryKeyEncryptionKeys,
    keks_from_settings,
)
from flightbook.eventstore.pools import autocommit

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence
    from contextlib import AbstractContextManager

    from psycopg import Cursor
    from psycopg.rows import DictRow
    from psycopg_pool import ConnectionPool

    from flightbook.config.settings import Settings
    from flightbook.eventstore.keks import KeyEncryptionKeys
    from flightbook.eventstore.memory import MemoryDatabase
    from flightbook.eventstore.rows import Statement

__all__ = (
    "ERASED",
    "SEALED_PREFIXES",
    "DataKeys",
    "KeyCounts",
    "KeyEncryptionKeyError",
    "LiveKeysGuard",
    "MemoryDataKeys",
    "NewDataKey",
    "PersonalDataVault",
    "PostgresDataKeys",
    "RotationRunningError",
    "SealedDataError",
    "SealedUnderErasedKeyError",
    "Sealer",
    "SubjectErasure",
    "WrappedKey",
    "build_vault",
    "is_erased",
    "is_sealed",
    "key_id_of",
)

_V1 = "pii1:"
_V2 = "pii2:"
SEALED_PREFIXES = (_V1, _V2)
"""How a sealed value begins (every format this code opens)."""
ERASED = "[erased]"
_KEY_TTL = 30.0  # seconds a key is cached for opening: an erasure reaches every process within
_NONCE = 12
_LEGACY_REF = "subject:"
DATA_KEYS = "pii.data_keys"
SUBJECT_KEYS = "pii.subject_keys"
_ROTATION_LOCK = 0x_F11_9B_4E7  # pg_try_advisory_lock key: one rotate-kek at a time


class SealedDataError(ValueError):
    """A sealed value is malformed or was sealed for another subject."""


def is_sealed(value: object) -> bool:
    """Whether ``value`` is a sealed string (of any format)."""
    return isinstance(value, str) and value.startswith(SEALED_PREFIXES)


@dataclass(frozen=True)
class WrappedKey:
    """A data key as stored, for rotation.

    ``ref`` is what the wrap is bound to (the associated data): the key id for a data key,
    ``subject:<id>`` for a subject's legacy key. ``kek_id`` None: a legacy raw key, not
    wrapped yet (``material`` is the key itself); otherwise ``material`` is wrapped.
    """

    ref: str
    subject_id: str
    kek_id: str | None
    material: bytes

    @property
    def legacy(self) -> bool:
        return self.ref.startswith(_LEGACY_REF)


@dataclass(frozen=True)
class KeyCounts:
    """Live keys (data and legacy): all, those under another KEK, legacy ones not wrapped."""

    live: int
    under_other_kek: int
    raw: int


class RotationRunningError(RuntimeError):
    """Another rotation of the key-encryption key is rewrapping keys right now."""


def _legacy_ref(subject_id: str) -> str:
    return _LEGACY_REF + subject_id


class DataKeys(Protocol):
    """Where the wrapped data keys are kept (``pii.data_keys``, ``pii.subject_keys``)."""

    def live(self, subject_id: str) -> tuple[uuid.UUID, WrappedKey] | None:
        """The subject's live data key, if it has one."""
        ...

    def add(self, key_id: uuid.UUID, subject_id: str, kek_id: str, wrapped: bytes) -> bool:
        """Store a new live key, unless the subject has a live key already (then nothing).

        True if this key was stored (it is the subject's live key now).
        """
        ...

    def find(self, key_id: uuid.UUID) -> tuple[str, WrappedKey | None] | None:
        """``(subject_id, key or None once erased)``; None if there is no such key."""
        ...

    def legacy(self, subject_id: str) -> WrappedKey | None:
        """The subject's pre-hierarchy key (``pii1`` values), None if none or erased."""
        ...

    def erase(self, subject_id: str) -> None:
        """Erase every key of the subject, now (its own transaction)."""
        ...

    def not_under(self, kek_id: str, limit: int) -> list[WrappedKey]:
        """Up to ``limit`` live keys not wrapped by ``kek_id`` (legacy raw keys too)."""
        ...

    def replace(self, changes: Sequence[tuple[WrappedKey, str, bytes]]) -> int:
        """Rewrap: each ``(old, kek_id, wrapped)`` if the key is still ``old``; how many."""
        ...

    def counts(self, kek_id: str) -> KeyCounts:
        """How many live keys there are, how many not under ``kek_id``, how many raw."""
        ...

    def exclusive(self) -> AbstractContextManager[None]:
        """Held while keys are rewrapped: one rotation at a time (raises if one runs)."""
        ...


# -- the erasure, as a row of the erasure's transaction ---------------------------------------


@dataclass(frozen=True)
class SubjectErasure:
    """Every key of a subject erased: data keys and the legacy key lose their material.

    A :class:`~flightbook.eventstore.rows.Row`; erasing twice changes nothing more.
    """

    subject_id: str

    def sql(self) -> Statement:
        return (
            "WITH erased AS ("
            " UPDATE pii.data_keys SET wrapped = NULL, erased_at = now()"
            " WHERE subject_id = %s AND wrapped IS NOT NULL RETURNING key_id)"
            " UPDATE pii.subject_keys SET key = NULL, wrapped = NULL, kek_id = NULL,"
            " erased_at = COALESCE(erased_at, now())"
            " WHERE subject_id = %s AND (key IS NOT NULL OR wrapped IS NOT NULL)",
            (self.subject_id, self.subject_id),
        )

    def check(self, database: MemoryDatabase) -> None:
        pass  # nothing unique: erasing is idempotent

    def apply(self, database: MemoryDatabase) -> None:
        now = time.time()
        for row in database.table(DATA_KEYS).values():
            if row["subject_id"] == self.subject_id and row["wrapped"] is not None:
                row.update(wrapped=None, erased_at=now)
        legacy = database.table(SUBJECT_KEYS).get(self.subject_id)
        if legacy is not None and (legacy.get("key") or legacy.get("wrapped")):
            legacy.update(key=None, wrapped=None, kek_id=None, erased_at=now)


class SealedUnderErasedKeyError(SealedDataError):
    """Values were sealed under a key that an erasure committed in the meantime erased."""


@dataclass(frozen=True, slots=True)
class LiveKeysGuard:
    """Refuse a transaction whose sealed values' keys were erased after they were sealed.

    A :class:`~flightbook.eventstore.rows.Guard`, placed after the guard that takes the
    customer's lock (the erasure takes the same lock): a booking sealed a moment before an
    erasure committed is then refused with :class:`SealedUnderErasedKeyError` and sealed
    again under a new key, instead of being stored already unreadable.
    """

    key_ids: tuple[uuid.UUID, ...]

    def verify(self, cursor: Cursor[DictRow]) -> None:
        if not self.key_ids:
            return
        cursor.execute(
            "SELECT count(*) AS erased FROM pii.data_keys"
            " WHERE key_id = ANY(%s) AND wrapped IS NULL",
            (list(self.key_ids),),
        )
        row = cursor.fetchone()
        if row is not None and int(row["erased"]) > 0:
            raise SealedUnderErasedKeyError("sealed under a key erased since")

    def check(self, database: MemoryDatabase) -> None:
        table = database.table(DATA_KEYS)
        for key_id in self.key_ids:
            row = table.get(key_id)
            if row is not None and row["wrapped"] is None:
                raise SealedUnderErasedKeyError("sealed under a key erased since")


# -- a new key, as a row of the transaction of the first values sealed under it -------------


@dataclass(frozen=True)
class NewDataKey:
    """A subject's new live data key, stored with the first values sealed under it.

    A :class:`~flightbook.eventstore.rows.Row`: a new customer's key then costs no
    transaction of its own, and no value can be stored under a key that is not. When
    another transaction made the subject's live key first, the partial unique index
    refuses this one with ``IntegrityError`` (nothing of the transaction is stored); the
    caller seals again under that key (:meth:`PersonalDataVault.sealer`).
    """

    key_id: uuid.UUID
    subject_id: str
    kek_id: str
    wrapped: bytes

    def sql(self) -> Statement:
        return (
            "INSERT INTO pii.data_keys (key_id, subject_id, wrapped, kek_id) "
            "VALUES (%s, %s, %s, %s)",
            (self.key_id, self.subject_id, self.wrapped, self.kek_id),
        )

    def check(self, database: MemoryDatabase) -> None:
        for row in database.table(DATA_KEYS).values():
            if row["subject_id"] == self.subject_id and row["wrapped"] is not None:
                raise IntegrityError(f"subject {self.subject_id} has a live data key")

    def apply(self, database: MemoryDatabase) -> None:
        database.table(DATA_KEYS)[self.key_id] = {
            "subject_id": self.subject_id,
            "kek_id": self.kek_id,
            "wrapped": self.wrapped,
            "erased_at": None,
        }


@dataclass(frozen=True)
class Sealer:
    """Seals values of one subject under one data key (:meth:`PersonalDataVault.sealer`).

    Attributes:
        subject_id: whose values these are.
        key_id: the data key they are sealed under.
        new_key: the key's row when it is not stored yet: it must be written in the
            transaction that stores the sealed values, and :meth:`PersonalDataVault.stored`
            told once that committed.
    """

    subject_id: str
    key_id: uuid.UUID
    key: bytes
    new_key: NewDataKey | None

    def seal(self, plaintext: str) -> str:
        nonce = os.urandom(_NONCE)
        box = AESGCM(self.key).encrypt(
            nonce, plaintext.encode(), _aad(self.subject_id, self.key_id)
        )
        return f"{_V2}{self.key_id.hex}:{base64.b64encode(nonce + box).decode()}"


# -- the stores -------------------------------------------------------------------------------


class PostgresDataKeys:
    """Data keys in ``pii.data_keys`` (and legacy keys in ``pii.subject_keys``).

    Args:
        pool: connections to the event store database (``pii`` schema from migrations).
    """

    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool

    def live(self, subject_id: str) -> tuple[uuid.UUID, WrappedKey] | None:
        with autocommit(self._pool) as conn:
            row = conn.execute(
                "SELECT key_id, kek_id, wrapped FROM pii.data_keys "
                "WHERE subject_id = %s AND wrapped IS NOT NULL",
                (subject_id,),
            ).fetchone()
        if row is None:
            return None
        key_id: uuid.UUID = row[0]
        return key_id, WrappedKey(str(key_id), subject_id, row[1], bytes(row[2]))

    def add(self, key_id: uuid.UUID, subject_id: str, kek_id: str, wrapped: bytes) -> bool:
        with autocommit(self._pool) as conn:
            row = conn.execute(
                "INSERT INTO pii.data_keys (key_id, subject_id, wrapped, kek_id) "
                "VALUES (%s, %s, %s, %s) "
                "ON CONFLICT (subject_id) WHERE wrapped IS NOT NULL DO NOTHING RETURNING key_id",
                (key_id, subject_id, wrapped, kek_id),
            ).fetchone()
        return row is not None

    def find(self, key_id: uuid.UUID) -> tuple[str, WrappedKey | None] | None:
        with autocommit(self._pool) as conn:
            row = conn.execute(
                "SELECT subject_id, kek_id, wrapped FROM pii.data_keys WHERE key_id = %s",
                (key_id,),
            ).fetchone()
        if row is None:
            return None
        subject_id: str = row[0]
        if row[2] is None:
            return subject_id, None
        return subject_id, WrappedKey(str(key_id), subject_id, row[1], bytes(row[2]))

    def legacy(self, subject_id: str) -> WrappedKey | None:
        with self._pool.connection() as conn:
            row = conn.execute(
                "SELECT key, kek_id, wrapped FROM pii.subject_keys WHERE subject_id = %s",
                (subject_id,),
            ).fetchone()
        return None if row is None else _legacy_key(subject_id, row[0], row[1], row[2])

    def erase(self, subject_id: str) -> None:
        statement, params = SubjectErasure(subject_id).sql()
        with self._pool.connection() as conn:
            conn.execute(statement, params)  # type: ignore[arg-type]

    def not_under(self, kek_id: str, limit: int) -> list[WrappedKey]:
        with self._pool.connection() as conn:
            data = conn.execute(
                "SELECT key_id, subject_id, kek_id, wrapped FROM pii.data_keys "
                "WHERE wrapped IS NOT NULL AND kek_id <> %s ORDER BY key_id LIMIT %s",
                (kek_id, limit),
            ).fetchall()
            found = [WrappedKey(str(r[0]), r[1], r[2], bytes(r[3])) for r in data]
            if len(found) < limit:
                legacy = conn.execute(
                    "SELECT subject_id, key, kek_id, wrapped FROM pii.subject_keys "
                    "WHERE key IS NOT NULL OR (wrapped IS NOT NULL AND kek_id <> %s) "
                    "ORDER BY subject_id LIMIT %s",
                    (kek_id, limit - len(found)),
                ).fetchall()
                found += [
                    key for r in legacy if (key := _legacy_key(r[0], r[1], r[2], r[3])) is not None
                ]
        return found

    def replace(self, changes: Sequence[tuple[WrappedKey, str, bytes]]) -> int:
        done = 0
        with self._pool.connection() as conn, conn.transaction():
            for old, kek_id, wrapped in changes:
                done += conn.execute(*_replace_statement(old, kek_id, wrapped)).rowcount  # type: ignore[arg-type]
        return done

    def counts(self, kek_id: str) -> KeyCounts:
        with self._pool.connection() as conn:
            row = conn.execute(
                "SELECT"
                " (SELECT count(*) FROM pii.data_keys WHERE wrapped IS NOT NULL)"
                " + (SELECT count(*) FROM pii.subject_keys"
                "    WHERE key IS NOT NULL OR wrapped IS NOT NULL),"
                " (SELECT count(*) FROM pii.data_keys WHERE wrapped IS NOT NULL AND kek_id <> %s)"
                " + (SELECT count(*) FROM pii.subject_keys"
                "    WHERE key IS NULL AND wrapped IS NOT NULL AND kek_id <> %s),"
                " (SELECT count(*) FROM pii.subject_keys WHERE key IS NOT NULL)",
                (kek_id, kek_id),
            ).fetchone()
        assert row is not None  # noqa: S101 - an aggregate always has a row
        return KeyCounts(live=int(row[0]), under_other_kek=int(row[1]), raw=int(row[2]))

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        with self._pool.connection() as conn:
            conn.autocommit = True  # no transaction open for the whole rotation
            try:
                held = conn.execute("SELECT pg_try_advisory_lock(%s)", (_ROTATION_LOCK,))
                if not bool((held.fetchone() or (False,))[0]):
                    raise RotationRunningError("another rotate-kek is rewrapping keys right now")
                try:
                    yield
                finally:
                    conn.execute("SELECT pg_advisory_unlock(%s)", (_ROTATION_LOCK,))
            finally:
                conn.autocommit = False


def _replace_statement(old: WrappedKey, kek_id: str, wrapped: bytes) -> Statement:
    if not old.legacy:
        return (
            "UPDATE pii.data_keys SET wrapped = %s, kek_id = %s WHERE key_id = %s AND wrapped = %s",
            (wrapped, kek_id, uuid.UUID(old.ref), old.material),
        )
    if old.kek_id is None:  # a raw legacy key: wrap it in place, the raw key goes
        return (
            "UPDATE pii.subject_keys SET key = NULL, wrapped = %s, kek_id = %s "
            "WHERE subject_id = %s AND key = %s",
            (wrapped, kek_id, old.subject_id, old.material),
        )
    return (
        "UPDATE pii.subject_keys SET wrapped = %s, kek_id = %s "
        "WHERE subject_id = %s AND key IS NULL AND wrapped = %s",
        (wrapped, kek_id, old.subject_id, old.material),
    )


def _legacy_key(
    subject_id: str, raw: bytes | None, kek_id: str | None, wrapped: bytes | None
) -> WrappedKey | None:
    if raw is not None:
        return WrappedKey(_legacy_ref(subject_id), subject_id, None, bytes(raw))
    if wrapped is not None and kek_id is not None:
        return WrappedKey(_legacy_ref(subject_id), subject_id, kek_id, bytes(wrapped))
    return None


class MemoryDataKeys:
    """Data keys in the in-memory event store's tables (``pii.data_keys``, ``pii.subject_keys``)."""

    def __init__(self, database: MemoryDatabase) -> None:
        self._database = database

    def live(self, subject_id: str) -> tuple[uuid.UUID, WrappedKey] | None:
        with self._database.lock:
            for key_id, row in self._database.table(DATA_KEYS).items():
                if row["subject_id"] == subject_id and row["wrapped"] is not None:
                    return uuid.UUID(str(key_id)), WrappedKey(
                        str(key_id), subject_id, row["kek_id"], row["wrapped"]
                    )
        return None

    def add(self, key_id: uuid.UUID, subject_id: str, kek_id: str, wrapped: bytes) -> bool:
        row = NewDataKey(key_id, subject_id, kek_id, wrapped)
        with self._database.lock:
            try:
                row.check(self._database)
            except IntegrityError:
                return False
            row.apply(self._database)
            return True

    def find(self, key_id: uuid.UUID) -> tuple[str, WrappedKey | None] | None:
        with self._database.lock:
            row = self._database.table(DATA_KEYS).get(key_id)
            if row is None:
                return None
            subject_id: str = row["subject_id"]
            if row["wrapped"] is None:
                return subject_id, None
            return subject_id, WrappedKey(str(key_id), subject_id, row["kek_id"], row["wrapped"])

    def legacy(self, subject_id: str) -> WrappedKey | None:
        with self._database.lock:
            row = self._database.table(SUBJECT_KEYS).get(subject_id)
            if row is None:
                return None
            return _legacy_key(subject_id, row.get("key"), row.get("kek_id"), row.get("wrapped"))

    def erase(self, subject_id: str) -> None:
        with self._database.lock:
            SubjectErasure(subject_id).apply(self._database)

    def not_under(self, kek_id: str, limit: int) -> list[WrappedKey]:
        found: list[WrappedKey] = []
        with self._database.lock:
            for key_id, row in sorted(
                self._database.table(DATA_KEYS).items(), key=lambda i: str(i[0])
            ):
                if row["wrapped"] is not None and row["kek_id"] != kek_id:
                    found.append(
                        WrappedKey(str(key_id), row["subject_id"], row["kek_id"], row["wrapped"])
                    )
            for subject_id in sorted(self._database.table(SUBJECT_KEYS), key=str):
                key = self.legacy(str(subject_id))
                if key is not None and key.kek_id != kek_id:
                    found.append(key)
        return found[:limit]

    def replace(self, changes: Sequence[tuple[WrappedKey, str, bytes]]) -> int:
        done = 0
        with self._database.lock:
            for old, kek_id, wrapped in changes:
                if not old.legacy:
                    row = self._database.table(DATA_KEYS).get(uuid.UUID(old.ref))
                    if row is not None and row["wrapped"] == old.material:
                        row.update(wrapped=wrapped, kek_id=kek_id)
                        done += 1
                    continue
                current = self.legacy(old.subject_id)
                if current == old:
                    self._database.table(SUBJECT_KEYS)[old.subject_id].update(
                        key=None, wrapped=wrapped, kek_id=kek_id
                    )
                    done += 1
        return done

    def counts(self, kek_id: str) -> KeyCounts:
        with self._database.lock:
            live = under = raw = 0
            for row in self._database.table(DATA_KEYS).values():
                if row["wrapped"] is not None:
                    live += 1
                    under += row["kek_id"] != kek_id
            for subject_id in self._database.table(SUBJECT_KEYS):
                key = self.legacy(str(subject_id))
                if key is not None:
                    live += 1
                    raw += key.kek_id is None
                    under += key.kek_id is not None and key.kek_id != kek_id
            return KeyCounts(live=live, under_other_kek=under, raw=raw)

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        with self._database.lock:
            flags = self._database.table("pii.rotation")
            if "running" in flags:
                raise RotationRunningError("another rotate-kek is rewrapping keys right now")
            flags["running"] = {}
        try:
            yield
        finally:
            with self._database.lock:
                flags.pop("running", None)


# -- the vault --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Cached:
    at: float
    subject_id: str
    key: bytes | None  # None: erased


class PersonalDataVault:
    """Seals and opens personal data with a data key per subject, wrapped by a KEK.

    Args:
        keys: where the wrapped data keys are kept.
        keks: the key-encryption keys (outside the database).
        clock: seconds, for the key cache (monotonic).
    """

    def __init__(
        self,
        keys: DataKeys,
        keks: KeyEncryptionKeys,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.keys = keys
        self.keks = keks
        self._clock = clock
        self._lock = threading.Lock()
        self._cache: dict[str, _Cached] = {}
        self._live: dict[str, tuple[float, uuid.UUID]] = {}  # subject -> (when, live key id)

    @classmethod
    def in_postgres(cls, pool: ConnectionPool, keks: KeyEncryptionKeys) -> PersonalDataVault:
        """A vault whose keys are in the ``pii`` schema of the event store database."""
        return cls(PostgresDataKeys(pool), keks)

    @classmethod
    def in_memory(
        cls, database: MemoryDatabase, keks: KeyEncryptionKeys | None = None
    ) -> PersonalDataVault:
        """A vault on the in-memory event store's tables (a random KEK unless given)."""
        return cls(MemoryDataKeys(database), keks or MemoryKeyEncryptionKeys())

    # -- the API ------------------------------------------------------------------------------

    def seal(self, subject_id: str, plaintext: str) -> str:
        """``plaintext`` sealed under the subject's live key (made now if none is live).

        Which key is live is cached like the keys (30 s). A value sealed under a key that
        another process erased since is refused where it is stored, by
        :class:`LiveKeysGuard` in the same transaction; the caller then forgets
        the subject and seals again, under the new key (``CommandService`` does).
        """
        key_id, key = self._live_key(subject_id)
        return Sealer(subject_id, key_id, key, None).seal(plaintext)

    def sealer(self, subject_id: str) -> Sealer:
        """Seals under the subject's live key, or under a new key not stored yet.

        The values of a subject with no live key are sealed under a new key whose row
        (``Sealer.new_key``) the caller writes in the transaction that stores them, and
        then passes to :meth:`stored`; a subject's first booking so needs no transaction
        for its key. Until then the new key is not this process's live key: a transaction
        that failed leaves nothing behind, here or in the database.
        """
        live = self._cached_live_key(subject_id)
        if live is not None:
            return Sealer(subject_id, *live, None)
        found = self.keys.live(subject_id)
        if found is not None:
            return Sealer(subject_id, *self._adopt(subject_id, *found), None)
        key, new = self._new_key(subject_id)
        return Sealer(subject_id, new.key_id, key, new)

    def stored(self, sealer: Sealer) -> None:
        """The transaction holding ``sealer``'s new key committed: it is the live key now."""
        if sealer.new_key is None:
            return
        self._remember(sealer.key_id.hex, sealer.subject_id, sealer.key)
        with self._lock:
            self._live[sealer.subject_id] = (self._clock(), sealer.key_id)

    def open(self, subject_id: str, sealed: str) -> str:
        """The plaintext, or :data:`ERASED` when the key it was sealed under was erased.

        Raises:
            SealedDataError: not a sealed value, altered, or sealed for another subject.
            KeyEncryptionKeyError: the key's KEK is not in this process's KEK file.
        """
        if sealed.startswith(_V2):
            key_id, raw = _parse_v2(sealed)
            key = self._key_by_id(subject_id, key_id)
            aad = _aad(subject_id, key_id)
        elif sealed.startswith(_V1):
            raw = _b64(sealed.removeprefix(_V1))
            key = self._legacy_key(subject_id)
            aad = subject_id.encode()
        else:
            raise SealedDataError("not a sealed value")
        if key is None:
            return ERASED
        try:
            return AESGCM(key).decrypt(raw[:_NONCE], raw[_NONCE:], aad).decode()
        except (InvalidTag, ValueError) as exc:
            raise SealedDataError("sealed for another subject, or altered") from exc

    def digest(self, subject_id: str, value: str) -> str:
        """HMAC-SHA256 of ``value`` under the subject's live key.

        A lookup key for a value that must not be stored in the clear (the identity
        service's email addresses, under a subject of their own that is never erased).
        """
        _, key = self._live_key(subject_id)
        return hmac.new(key, value.encode(), hashlib.sha256).hexdigest()

    def key_id_of(self, sealed: str) -> uuid.UUID | None:
        """The data key a ``pii2`` value was sealed under (None for a legacy value)."""
        return key_id_of(sealed)

    def is_erased(self, subject_id: str, sealed: str) -> bool:
        """Whether the value's key was erased: it tells without the KEK and opens nothing."""
        return is_erased(self.keys, subject_id, sealed)

    def erasure_row(self, subject_id: str) -> SubjectErasure:
        """The row that erases every key of the subject, for the erasure's transaction."""
        return SubjectErasure(subject_id)

    def forget(self, subject_id: str) -> None:
        """Drop this process's cached keys of the subject (after its erasure)."""
        with self._lock:
            for name in [n for n, c in self._cache.items() if c.subject_id == subject_id]:
                del self._cache[name]
            self._live.pop(subject_id, None)

    def erase(self, subject_id: str) -> None:
        """Erase every key of the subject now, in a transaction of its own (tools, tests)."""
        self.keys.erase(subject_id)
        self.forget(subject_id)

    # -- keys ---------------------------------------------------------------------------------

    def _live_key(self, subject_id: str) -> tuple[uuid.UUID, bytes]:
        live = self._cached_live_key(subject_id)
        if live is not None:
            return live
        return self._adopt(subject_id, *self._find_or_make_live_key(subject_id))

    def _cached_live_key(self, subject_id: str) -> tuple[uuid.UUID, bytes] | None:
        with self._lock:
            live = self._live.get(subject_id)
        if live is not None and self._clock() - live[0] < _KEY_TTL:
            cached = self._cached(live[1].hex)
            if cached is not None and cached.key is not None:
                return live[1], cached.key
        return None

    def _adopt(
        self, subject_id: str, key_id: uuid.UUID, wrapped: WrappedKey
    ) -> tuple[uuid.UUID, bytes]:
        """The stored live key, unwrapped and remembered as the subject's live key."""
        key = self._key_of(key_id, subject_id, wrapped)
        with self._lock:
            self._live[subject_id] = (self._clock(), key_id)
        return key_id, key

    def _find_or_make_live_key(self, subject_id: str) -> tuple[uuid.UUID, WrappedKey]:
        for _ in range(3):  # another process may make (or erase) it at the same moment
            found = self.keys.live(subject_id)
            if found is not None:
                return found
            _, new = self._new_key(subject_id)
            if self.keys.add(new.key_id, subject_id, new.kek_id, new.wrapped):  # ours is live
                return new.key_id, WrappedKey(str(new.key_id), subject_id, new.kek_id, new.wrapped)
        raise SealedDataError(f"no key could be made for subject {subject_id}")

    def _new_key(self, subject_id: str) -> tuple[bytes, NewDataKey]:
        """A new data key (not stored) and its row, wrapped under the current KEK."""
        key_id = uuid.uuid4()
        key = AESGCM.generate_key(bit_length=256)
        kek_id, wrapped = self.keks.wrap(str(key_id), key)
        return key, NewDataKey(key_id, subject_id, kek_id, wrapped)

    def _key_of(self, key_id: uuid.UUID, subject_id: str, wrapped: WrappedKey) -> bytes:
        cached = self._cached(key_id.hex)
        if cached is not None and cached.key is not None:
            return cached.key
        key = self._unwrap(wrapped)
        self._remember(key_id.hex, subject_id, key)
        return key

    def _key_by_id(self, subject_id: str, key_id: uuid.UUID) -> bytes | None:
        cached = self._cached(key_id.hex)
        if cached is None:
            found = self.keys.find(key_id)
            if found is None:
                raise SealedDataError("sealed under a key this database does not have")
            owner, wrapped = found
            cached = self._remember(
                key_id.hex, owner, None if wrapped is None else self._unwrap(wrapped)
            )
        if cached.subject_id != subject_id:
            raise SealedDataError("sealed for another subject")
        return cached.key

    def _legacy_key(self, subject_id: str) -> bytes | None:
        name = _legacy_ref(subject_id)
        cached = self._cached(name)
        if cached is None:
            wrapped = self.keys.legacy(subject_id)
            key = None if wrapped is None else self._unwrap(wrapped)
            cached = self._remember(name, subject_id, key)
        return cached.key

    def _unwrap(self, wrapped: WrappedKey) -> bytes:
        if wrapped.kek_id is None:
            return wrapped.material  # a legacy key not yet wrapped by rotate-kek
        return self.keks.unwrap(wrapped.kek_id, wrapped.ref, wrapped.material)

    def _cached(self, name: str) -> _Cached | None:
        with self._lock:
            cached = self._cache.get(name)
            if cached is not None and self._clock() - cached.at >= _KEY_TTL:
                del self._cache[name]
                return None
            return cached

    def _remember(self, name: str, subject_id: str, key: bytes | None) -> _Cached:
        cached = _Cached(self._clock(), subject_id, key)
        with self._lock:
            self._cache[name] = cached
        return cached


def key_id_of(sealed: str) -> uuid.UUID | None:
    """The data key a ``pii2`` value was sealed under (None for a legacy ``pii1`` value).

    Raises:
        SealedDataError: not a sealed value.
    """
    if sealed.startswith(_V2):
        return _parse_v2(sealed)[0]
    if sealed.startswith(_V1):
        return None
    raise SealedDataError("not a sealed value")


def is_erased(keys: DataKeys, subject_id: str, sealed: str) -> bool:
    """Whether the key ``sealed`` was sealed under is erased (needs no KEK, opens nothing)."""
    key_id = key_id_of(sealed)
    if key_id is None:
        return keys.legacy(subject_id) is None
    found = keys.find(key_id)
    return found is None or found[1] is None


def _aad(subject_id: str, key_id: uuid.UUID) -> bytes:
    return f"{subject_id}|{key_id.hex}".encode()


def _parse_v2(sealed: str) -> tuple[uuid.UUID, bytes]:
    key_hex, colon, body = sealed.removeprefix(_V2).partition(":")
    if not colon or len(key_hex) != 32:  # a uuid in hex
        raise SealedDataError("not a sealed value")
    try:
        key_id = uuid.UUID(hex=key_hex)
    except ValueError:
        raise SealedDataError("not a sealed value") from None
    return key_id, _b64(body)


def _b64(text: str) -> bytes:
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise SealedDataError("not a sealed value") from None
    if len(raw) <= _NONCE:
        raise SealedDataError("not a sealed value")
    return raw


def build_vault(settings: Settings, pool: ConnectionPool) -> PersonalDataVault:
    """The vault of a process: its keys in PostgreSQL, its KEKs from ``FLIGHTBOOK_KEK_FILE``.

    Raises:
        SettingsError: no usable KEK file (one line naming ``FLIGHTBOOK_KEK_FILE``).
    """
    return PersonalDataVault.in_postgres(pool, keks_from_settings(settings))
