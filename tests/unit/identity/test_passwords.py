"""The password rules and the Argon2id hasher (ADR 0019): NIST SP 800-63B, no composition rules."""

from __future__ import annotations

import threading

import pytest
from argon2 import extract_parameters

from flightbook.identity.passwords import (
    MAX_LENGTH,
    MIN_LENGTH,
    PasswordHasher,
    WeakPasswordError,
    check_password,
)


def _full_width(text: str) -> str:
    """The same letters in their full-width forms (U+FF01...), spaces as U+3000."""
    return "".join("\u3000" if c == " " else chr(ord(c) - 0x20 + 0xFF00) for c in text)


@pytest.mark.parametrize(
    "password",
    [
        "correct horse battery staple",  # spaces are characters like any other
        "lowercaseonlyisfine",  # no composition rules
        "Ünïcödé pässwörd ✈",
        "x" * 5 + "kqzvlm" + "y" * 3,
    ],
)
def test_long_uncommon_passwords_pass(password: str) -> None:
    check_password(password)


@pytest.mark.parametrize(
    ("password", "words"),
    [
        ("short pass", "at least 12"),
        ("a" * (MAX_LENGTH + 1), "at most"),
        ("1qaz2wsx3edc4rfv", "common or breached"),  # on the shipped list
        ("Password1234!", "common or breached"),  # a listed one with digits around it
        ("abcabcabcabc", "repeated"),
        ("passwordpassword", "repeated"),
        ("123456789012", "sequence"),
        ("abcdefghijklmnop", "sequence"),
        ("my flightbook secret", "service's name"),
    ],
)
def test_weak_passwords_are_refused_with_a_reason(password: str, words: str) -> None:
    with pytest.raises(WeakPasswordError, match=words) as refused:
        check_password(password)
    assert password not in str(refused.value)


def test_a_password_containing_the_email_or_name_is_refused() -> None:
    with pytest.raises(WeakPasswordError, match="your email or your name"):
        check_password("ada.lovelace rocks on", context=["ada.lovelace", "Ada"])
    check_password("entirely unrelated words", context=["ada.lovelace"])


def test_length_counts_characters_after_normalisation() -> None:
    # eleven full-width letters normalise (NFKC) to eleven ASCII ones: still too short
    with pytest.raises(WeakPasswordError, match=f"at least {MIN_LENGTH}"):
        check_password(_full_width("qwertyuiopa"))


def test_the_hasher_makes_argon2id_at_the_configured_cost() -> None:
    hasher = PasswordHasher(time_cost=1, memory_kib=8192)
    stored = hasher.hash("a long enough passphrase")
    parameters = extract_parameters(stored)
    assert stored.startswith("$argon2id$")
    assert (parameters.time_cost, parameters.memory_cost) == (1, 8192)
    assert hasher.verify(stored, "a long enough passphrase")
    assert not hasher.verify(stored, "a long enough passphrasE")
    assert not hasher.verify("not a hash", "a long enough passphrase")


def test_a_hash_at_another_cost_needs_rehashing() -> None:
    old = PasswordHasher(time_cost=1, memory_kib=8192).hash("a long enough passphrase")
    current = PasswordHasher(time_cost=2, memory_kib=8192)
    assert current.needs_rehash(old)
    assert not current.needs_rehash(current.hash("a long enough passphrase"))
    assert current.needs_rehash("garbage")


def test_compatible_forms_of_a_password_verify_alike() -> None:
    hasher = PasswordHasher(time_cost=1, memory_kib=8192)
    stored = hasher.hash(_full_width("fullwidth pass"))  # NFKC makes it ASCII
    assert hasher.verify(stored, "fullwidth pass")


def test_hashes_run_on_at_most_the_hashers_own_threads() -> None:
    hasher = PasswordHasher(time_cost=1, memory_kib=8192, concurrent=2)
    entered = threading.Semaphore(0)
    release = threading.Event()
    hashing_threads: set[int] = set()

    class Held:  # a hash that runs until the test lets it finish
        def hash(self, _password: str) -> str:
            hashing_threads.add(threading.get_ident())
            entered.release()
            release.wait(30)
            return "$argon2id$held"

    hasher._hasher = Held()  # type: ignore[assignment]
    callers = [
        threading.Thread(target=hasher.hash, args=(f"passphrase {n} xyzzy",)) for n in range(6)
    ]
    for caller in callers:
        caller.start()
    assert entered.acquire(timeout=30)
    assert entered.acquire(timeout=30)
    release.set()
    for caller in callers:
        caller.join(30)
    assert not any(caller.is_alive() for caller in callers)
    assert len(hashing_threads) <= 2  # six callers, two hashing threads: memory stays bounded
    assert not hashing_threads & {caller.ident for caller in callers}
