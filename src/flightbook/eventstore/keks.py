"""Key-encryption keys (KEKs): they wrap the data keys and never live in the database.

A data key (one per customer and generation, :mod:`flightbook.eventstore.pii`) is stored
only wrapped: AES-256-GCM under a KEK, with the key's own id as associated data, so a
wrapped key cannot be moved to another row. A copy of the database without the KEK
opens no sealed value. :class:`KeyEncryptionKeys` is the port;
:class:`FileKeyEncryptionKeys` keeps the KEKs in a JSON file outside the database
(``FLIGHTBOOK_KEK_FILE``), :class:`MemoryKeyEncryptionKeys` in memory (unit tests).

The file is ``{"current": "<id>", "keys": {"<id>": "<base64 of 32 bytes>"}}``, mode 0600.
New data keys are wrapped under ``current``; every KEK in ``keys`` can unwrap.
``flightbook privacy rotate-kek`` adds a new current KEK, rewraps the data keys and
later retires the old ones (:class:`RotatableKeyEncryptionKeys`). A process notices a
changed file (rotation) the next time it wraps or unwraps.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import os
import secrets
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from flightbook.config.keyfiles import ChangedFile, create_once, replace_atomically
from flightbook.config.locality import on_local_stack
from flightbook.config.settings import PREFIX, SettingsError

if TYPE_CHECKING:
    from collections.abc import Mapping

    from flightbook.config.settings import Settings

__all__ = (
    "DEFAULT_KEK_FILE",
    "FileKeyEncryptionKeys",
    "KeyEncryptionKeyError",
    "KeyEncryptionKeys",
    "MemoryKeyEncryptionKeys",
    "RotatableKeyEncryptionKeys",
    "kek_file_path",
    "keks_from_settings",
    "new_kek_id",
)

DEFAULT_KEK_FILE = "kek.json"
"""The KEK file's name in the state directory on the local stack (created if missing)."""
_NONCE = 12
_KEK_BYTES = 32


class KeyEncryptionKeyError(RuntimeError):
    """A KEK is missing, unknown or does not open a wrapped key (never says the key)."""


class KeyEncryptionKeys(Protocol):
    """The port: wrap and unwrap data keys under KEKs kept outside the database."""

    @property
    def current_id(self) -> str:
        """The id of the KEK that wraps new keys."""
        ...

    def wrap(self, key_id: str, data_key: bytes) -> tuple[str, bytes]:
        """``(kek_id, wrapped)``: ``data_key`` under the current KEK, bound to ``key_id``."""
        ...

    def unwrap(self, kek_id: str, key_id: str, wrapped: bytes) -> bytes:
        """The data key ``wrap`` returned.

        Raises:
            KeyEncryptionKeyError: no KEK ``kek_id`` here, or it does not open ``wrapped``.
        """
        ...


class RotatableKeyEncryptionKeys(KeyEncryptionKeys, Protocol):
    """KEKs that can be rotated: a new current one added, the others retired."""

    @property
    def ids(self) -> tuple[str, ...]:
        """Every KEK id held (the current one among them)."""
        ...

    def add_current(self) -> str:
        """Make a new random KEK current (the others stay, to unwrap); return its id."""
        ...

    def retire_others(self) -> list[str]:
        """Drop every KEK but the current one; return the ids dropped."""
        ...


def new_kek_id() -> str:
    """A fresh KEK id: the day it was made and random hex (``20261201-1a2b3c4d``)."""
    return f"{dt.datetime.now(dt.UTC):%Y%m%d}-{secrets.token_hex(4)}"


def _wrap(kek: bytes, key_id: str, data_key: bytes) -> bytes:
    nonce = os.urandom(_NONCE)
    return nonce + AESGCM(kek).encrypt(nonce, data_key, key_id.encode())


def _unwrap(kek_id: str, kek: bytes | None, key_id: str, wrapped: bytes) -> bytes:
    if kek is None:
        raise KeyEncryptionKeyError(
            f"data key {key_id} is wrapped by key-encryption key {kek_id}, which this process "
            f"does not have ({PREFIX}KEK_FILE)"
        )
    try:
        return AESGCM(kek).decrypt(wrapped[:_NONCE], wrapped[_NONCE:], key_id.encode())
    except InvalidTag:
        raise KeyEncryptionKeyError(
            f"key-encryption key {kek_id} does not open data key {key_id} "
            f"(another key file of the same id, or the row was altered)"
        ) from None


class MemoryKeyEncryptionKeys:
    """KEKs in memory (unit tests): one random current KEK to begin with."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._current = new_kek_id()
        self._keys = {self._current: AESGCM.generate_key(bit_length=256)}

    @property
    def current_id(self) -> str:
        return self._current

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(self._keys)

    def wrap(self, key_id: str, data_key: bytes) -> tuple[str, bytes]:
        with self._lock:
            current = self._current
            return current, _wrap(self._keys[current], key_id, data_key)

    def unwrap(self, kek_id: str, key_id: str, wrapped: bytes) -> bytes:
        return _unwrap(kek_id, self._keys.get(kek_id), key_id, wrapped)

    def add_current(self) -> str:
        with self._lock:
            kek_id = new_kek_id()
            while kek_id in self._keys:
                kek_id = new_kek_id()
            self._keys = {**self._keys, kek_id: AESGCM.generate_key(bit_length=256)}
            self._current = kek_id
            return kek_id

    def retire_others(self) -> list[str]:
        with self._lock:
            retired = [k for k in self._keys if k != self._current]
            self._keys = {self._current: self._keys[self._current]}
            return retired


class FileKeyEncryptionKeys:
    """KEKs in a JSON file outside the database (``FLIGHTBOOK_KEK_FILE``).

    The file is read when the object is made and again whenever it changed on disk
    (checked before each wrap and unwrap), so a running process follows a rotation.

    Args:
        path: the KEK file; it must exist and hold at least the current KEK.

    Raises:
        KeyEncryptionKeyError: the file is missing, unreadable or not a KEK file.
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._file = ChangedFile(self.path)
        self._current = ""
        self._keys: dict[str, bytes] = {}
        self._refresh()

    @classmethod
    def create(cls, path: Path | str) -> FileKeyEncryptionKeys:
        """The KEK file at ``path``, made (mode 0600, one new KEK) if there is none yet.

        Safe against processes racing to make it: exactly one file wins, all use it.
        """
        path = Path(path)
        if not path.exists():
            kek_id = new_kek_id()
            create_once(path, _render(kek_id, {kek_id: AESGCM.generate_key(bit_length=256)}))
        return cls(path)

    @property
    def current_id(self) -> str:
        with self._lock:
            self._refresh()
            return self._current

    @property
    def ids(self) -> tuple[str, ...]:
        with self._lock:
            self._refresh()
            return tuple(self._keys)

    def wrap(self, key_id: str, data_key: bytes) -> tuple[str, bytes]:
        with self._lock:
            self._refresh()
            current, kek = self._current, self._keys[self._current]
        return current, _wrap(kek, key_id, data_key)

    def unwrap(self, kek_id: str, key_id: str, wrapped: bytes) -> bytes:
        with self._lock:
            self._refresh()
            kek = self._keys.get(kek_id)
        return _unwrap(kek_id, kek, key_id, wrapped)

    def add_current(self) -> str:
        with self._lock:
            self._refresh()
            kek_id = new_kek_id()
            while kek_id in self._keys:
                kek_id = new_kek_id()
            self._save(kek_id, {**self._keys, kek_id: AESGCM.generate_key(bit_length=256)})
            return kek_id

    def retire_others(self) -> list[str]:
        with self._lock:
            self._refresh()
            retired = [k for k in self._keys if k != self._current]
            if retired:
                self._save(self._current, {self._current: self._keys[self._current]})
            return retired

    def _save(self, current: str, keys: Mapping[str, bytes]) -> None:
        replace_atomically(self.path, _render(current, keys))
        self._file.forget()
        self._refresh()

    def _refresh(self) -> None:
        """Read the file again if it changed since it was last read (call under the lock)."""
        try:
            parsed = self._file.parse_if_changed(lambda text: _parse(text, self.path))
        except OSError as exc:
            raise KeyEncryptionKeyError(
                f"key-encryption key file {self.path}: {exc.strerror}"
            ) from None
        if parsed is not None:
            self._current, self._keys = parsed


def _render(current: str, keys: Mapping[str, bytes]) -> bytes:
    document = {
        "current": current,
        "keys": {kek_id: base64.b64encode(kek).decode() for kek_id, kek in keys.items()},
    }
    return (json.dumps(document, indent=2) + "\n").encode()


def _parse(text: str, path: Path) -> tuple[str, dict[str, bytes]]:
    bad = KeyEncryptionKeyError(
        f"key-encryption key file {path} is not "
        '{"current": "<id>", "keys": {"<id>": "<base64 of 32 bytes>"}}'
    )
    try:
        document = json.loads(text)
    except ValueError:
        raise bad from None
    if not isinstance(document, dict):
        raise bad
    current, raw_keys = document.get("current"), document.get("keys")
    if not isinstance(current, str) or not isinstance(raw_keys, dict) or current not in raw_keys:
        raise bad
    keys: dict[str, bytes] = {}
    for kek_id, encoded in raw_keys.items():
        try:
            kek = base64.b64decode(str(encoded), validate=True)
        except (binascii.Error, ValueError):
            raise bad from None
        if len(kek) != _KEK_BYTES:
            raise bad
        keys[str(kek_id)] = kek
    return current, keys


# -- from settings ----------------------------------------------------------------------------


def kek_file_path(settings: Settings) -> Path:
    """Where this process's KEK file is: the setting, else the local stack's state dir.

    Raises:
        SettingsError: ``FLIGHTBOOK_KEK_FILE`` is unset and this is not the local stack.
    """
    if settings.kek_file:
        return Path(settings.kek_file).resolve()
    if on_local_stack(settings):
        return settings.state_path / DEFAULT_KEK_FILE
    raise SettingsError(
        f"{PREFIX}KEK_FILE is not set: off the local stack (listening beyond loopback, or "
        "servers elsewhere) a process that handles personal data needs the key-encryption "
        f"key file, kept outside the database; set {PREFIX}KEK_FILE to its path"
    )


def keks_from_settings(settings: Settings) -> FileKeyEncryptionKeys:
    """The KEK file of ``settings`` (on the local stack, made if the setting is unset).

    A file named by ``FLIGHTBOOK_KEK_FILE`` is never made: a typo must not silently start
    a new key hierarchy.

    Raises:
        SettingsError: one line naming ``FLIGHTBOOK_KEK_FILE``.
    """
    path = kek_file_path(settings)
    try:
        if settings.kek_file:
            return FileKeyEncryptionKeys(path)
        return FileKeyEncryptionKeys.create(path)
    except (KeyEncryptionKeyError, OSError) as exc:
        raise SettingsError(f"{PREFIX}KEK_FILE: {exc}") from None
