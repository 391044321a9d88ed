"""The password rules (NIST SP 800-63B §5.1.1.2) and the Argon2id hasher (ADR 0019).

Rules: 12 to 128 characters after NFKC normalisation; any characters, spaces included; no
composition rules ("one digit, one symbol"). Refused: a password on the shipped list of
common and breached passwords (``common-passwords.txt``), one that is a listed password
with digits or symbols around it (``password1234!``), a single character or a short
pattern repeated, a run of consecutive characters, and one containing a context word
(the service's name, the email's local part, the account's name).

Hashes are Argon2id PHC strings; the cost is a setting, and :meth:`PasswordHasher.
needs_rehash` tells when a stored hash was made at another cost.
"""

from __future__ import annotations

import functools
import importlib.resources
import itertools
import os
import string
import unicodedata
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import argon2
from argon2.exceptions import InvalidHashError, VerificationError

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = (
    "DEFAULT_MEMORY_KIB",
    "DEFAULT_TIME_COST",
    "MAX_LENGTH",
    "MIN_LENGTH",
    "PasswordHasher",
    "WeakPasswordError",
    "check_password",
    "normalise",
)

MIN_LENGTH = 12
MAX_LENGTH = 128
DEFAULT_TIME_COST = 2
DEFAULT_MEMORY_KIB = 19456  # OWASP's Argon2id minimum: m=19 MiB, t=2, p=1
SERVICE_WORDS = ("flightbook",)
_MIN_CONTEXT = 4
_AROUND = string.digits + string.punctuation + " "


class WeakPasswordError(ValueError):
    """The password breaks a rule; the message says which, never the password."""


def normalise(password: str) -> str:
    """NFKC, as SP 800-63B asks before hashing and comparing."""
    return unicodedata.normalize("NFKC", password)


@functools.cache
def _common() -> frozenset[str]:
    text = (
        importlib.resources.files("flightbook.identity")
        .joinpath("common-passwords.txt")
        .read_text(encoding="utf-8")
    )
    return frozenset(line for line in text.splitlines() if line and not line.startswith("#"))


def _repeated(text: str) -> bool:
    """A character or a pattern of up to half the length, repeated throughout."""
    for size in range(1, len(text) // 2 + 1):
        unit = text[:size]
        if (unit * (len(text) // size + 1))[: len(text)] == text:
            return True
    return False


def _sequential(text: str) -> bool:
    """Consecutive characters throughout, up or down (digits may wrap 9 -> 0)."""

    def step(a: str, b: str) -> int:
        if a.isdigit() and b.isdigit():
            return (int(b) - int(a)) % 10 if (int(b) - int(a)) % 10 in (1, 9) else 0
        return ord(b) - ord(a)

    steps = {step(a, b) for a, b in itertools.pairwise(text)}
    return steps in ({1}, {-1}, {9})


def check_password(password: str, *, context: Iterable[str] = ()) -> None:
    """Refuse a password that breaks a rule.

    Raises:
        WeakPasswordError: one sentence a user can act on.
    """
    text = normalise(password)
    if len(text) < MIN_LENGTH:
        raise WeakPasswordError(f"the password must be at least {MIN_LENGTH} characters")
    if len(text) > MAX_LENGTH:
        raise WeakPasswordError(f"the password must be at most {MAX_LENGTH} characters")
    lowered = text.lower()
    core = lowered.strip(_AROUND)
    if lowered in _common() or (len(core) >= _MIN_CONTEXT and core in _common()):
        raise WeakPasswordError(
            "the password is on a list of common or breached passwords; choose another"
        )
    if _repeated(lowered) or _sequential(lowered):
        raise WeakPasswordError("the password is a repeated pattern or a sequence; choose another")
    words = [w.lower() for w in (*SERVICE_WORDS, *context) if len(w.strip()) >= _MIN_CONTEXT]
    if any(word.strip() in lowered for word in words):
        raise WeakPasswordError(
            "the password contains the service's name, your email or your name; choose another"
        )


class PasswordHasher:
    """Argon2id at a given cost, over NFKC-normalised passwords.

    Hashes run on ``concurrent`` threads of their own (default: one per CPU): each holds
    ``memory_kib`` while it runs, so a burst of logins queues instead of growing the
    process by memory_kib per request, and more at once would not finish sooner. Their
    own threads, not the callers': the C allocator keeps a freed hash's memory in the
    arena of the thread that used it, so hashing on every request thread would keep
    memory_kib per thread for good.
    """

    def __init__(
        self,
        *,
        time_cost: int,
        memory_kib: int,
        parallelism: int = 1,
        concurrent: int | None = None,
    ) -> None:
        self._threads = ThreadPoolExecutor(
            max_workers=concurrent or os.cpu_count() or 1, thread_name_prefix="argon2"
        )
        self._hasher = argon2.PasswordHasher(
            time_cost=time_cost,
            memory_cost=memory_kib,
            parallelism=parallelism,
            type=argon2.Type.ID,
        )
        self._dummy = self._hasher.hash("not a password anyone has: a timing stand-in")

    def hash(self, password: str) -> str:
        return self._threads.submit(self._hasher.hash, normalise(password)).result()

    def verify(self, stored: str, password: str) -> bool:
        """Whether ``password`` is the one ``stored`` was made of (False for a bad hash)."""
        try:
            return self._threads.submit(self._hasher.verify, stored, normalise(password)).result()
        except (VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, stored: str) -> bool:
        try:
            return self._hasher.check_needs_rehash(stored)
        except InvalidHashError:
            return True

    def dummy_verify(self, password: str) -> None:
        """Spend a verification's time for an email that has no account."""
        self.verify(self._dummy, password)
