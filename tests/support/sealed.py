"""Bytes tried as keys on a sealed value: whether anything stored works as its key."""

from __future__ import annotations

import base64

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM


def opens_with_a_window_of(blob: bytes, subject_id: str, sealed: str) -> bool:
    """Whether any 32 bytes of ``blob``, used as the AES key, open ``sealed`` (pii1 or pii2)."""
    if sealed.startswith("pii2:"):
        _, key_hex, body = sealed.split(":")
        aad = f"{subject_id}|{key_hex}".encode()
    else:
        body, aad = sealed.removeprefix("pii1:"), subject_id.encode()
    raw = base64.b64decode(body)
    for start in range(len(blob) - 31):
        try:
            AESGCM(blob[start : start + 32]).decrypt(raw[:12], raw[12:], aad)
        except InvalidTag:
            continue
        return True
    return False
