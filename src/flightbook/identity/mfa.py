"""Second factors: TOTP codes (RFC 6238, via pyotp) and one-time recovery codes.

Pure logic, no database and no I/O: the caller stores the secret, the last used step and
the recovery code hashes.

- :func:`new_secret` and :func:`provisioning_uri` enrol an authenticator app
  (``otpauth://totp/...``, issuer ``flightbook``, SHA-1, :data:`DIGITS` digits, every
  :data:`PERIOD` seconds).
- :func:`matching_step` checks a code against the steps ``now ± WINDOW`` (clock skew) in
  constant time and returns the step it matched. The caller keeps that step and passes it
  back as ``after_step``: a code is never accepted twice, nor an older one after a newer.
- :func:`new_recovery_codes` draws :data:`RECOVERY_CODES` codes of 50 bits each, shown as
  ``xxxxx-xxxxx``; only :func:`recovery_code_hash` of each is stored.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time

import pyotp

__all__ = (
    "DIGITS",
    "ISSUER",
    "PERIOD",
    "RECOVERY_ALPHABET",
    "RECOVERY_CODES",
    "WINDOW",
    "looks_like_recovery_code",
    "matching_step",
    "new_recovery_codes",
    "new_secret",
    "provisioning_uri",
    "recovery_code_hash",
)

ISSUER = "flightbook"
DIGITS = 6
PERIOD = 30
WINDOW = 1  # steps accepted either side of the current one, for clock skew

RECOVERY_CODES = 10
# Lower case without 0, o, 1 and l: 32 symbols, so 10 of them carry exactly 50 bits.
# With 0, 1 and l gone, i can be mistaken for nothing and stays.
RECOVERY_ALPHABET = "abcdefghijkmnpqrstuvwxyz23456789"
_RECOVERY_LENGTH = 10
_RECOVERY_GROUP = 5
_ASCII_DIGITS = frozenset("0123456789")


def new_secret() -> str:
    """A fresh TOTP secret: 32 base32 characters (160 bits)."""
    return pyotp.random_base32()


def _totp(secret: str) -> pyotp.TOTP:
    return pyotp.TOTP(secret, digits=DIGITS, interval=PERIOD)


def provisioning_uri(secret: str, *, account_label: str) -> str:
    """The ``otpauth://totp/flightbook:<label>?secret=...&issuer=flightbook`` URI (QR code)."""
    return _totp(secret).provisioning_uri(name=account_label, issuer_name=ISSUER)


def _normalised_code(code: str) -> str | None:
    digits = code.replace(" ", "").strip()
    if len(digits) != DIGITS or not set(digits) <= _ASCII_DIGITS:
        return None
    return digits


def _candidate_steps(now: float, after_step: int) -> list[int]:
    current = int(now // PERIOD)
    steps = range(current - WINDOW, current + WINDOW + 1)
    return [step for step in steps if step > after_step and step >= 0]


def matching_step(
    secret: str, code: str, *, now: float | None = None, after_step: int = 0
) -> int | None:
    """The earliest time step within ``now ± WINDOW`` whose code is ``code``, if it is new.

    Args:
        secret: the account's base32 TOTP secret.
        code: what the user typed; spaces are ignored, anything but :data:`DIGITS` ASCII
            digits is refused.
        now: Unix time (default: the clock).
        after_step: the last step this account already used; only later steps count, so a
            code cannot be replayed, nor an older one used after a newer one.

    Returns:
        The matched step (store it as the next ``after_step``), or None.
    """
    typed = _normalised_code(code)
    if typed is None:
        return None
    totp = _totp(secret)
    steps = _candidate_steps(time.time() if now is None else now, after_step)
    # Compare against every candidate, without stopping early, each in constant time.
    matches = [
        step
        for step in steps
        if hmac.compare_digest(totp.generate_otp(step).encode(), typed.encode())
    ]
    return matches[0] if matches else None


def new_recovery_codes() -> list[str]:
    """:data:`RECOVERY_CODES` distinct random codes, each ``xxxxx-xxxxx`` (50 bits)."""
    codes: list[str] = []
    while len(codes) < RECOVERY_CODES:
        code = _new_recovery_code()
        if code not in codes:
            codes.append(code)
    return codes


def _new_recovery_code() -> str:
    raw = "".join(secrets.choice(RECOVERY_ALPHABET) for _ in range(_RECOVERY_LENGTH))
    return f"{raw[:_RECOVERY_GROUP]}-{raw[_RECOVERY_GROUP:]}"


def _normalised_recovery_code(text: str) -> str:
    return text.strip().replace("-", "").replace(" ", "").lower()


def recovery_code_hash(code: str) -> str:
    """SHA-256 (hex) of the code without case, dashes and spaces: what is stored.

    A fast hash is enough here, unlike for passwords: the codes are random 50-bit values,
    not chosen by people, so there is no dictionary to try first, and a slow hash would
    only add a constant factor to an exhaustive search of all 2**50 codes.
    """
    return hashlib.sha256(_normalised_recovery_code(code).encode()).hexdigest()


def looks_like_recovery_code(text: str) -> bool:
    """Whether ``text`` has a recovery code's shape (10 alphabet characters, once normalised)."""
    normalised = _normalised_recovery_code(text)
    return len(normalised) == _RECOVERY_LENGTH and set(normalised) <= set(RECOVERY_ALPHABET)
