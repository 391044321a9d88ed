"""The one structlog processor that keeps secrets and personal data out of every log line.

It runs after the exception has been rendered into the event (so a traceback's text is
scrubbed too) and before the renderer, for structlog's own lines and for the standard
library's (uvicorn, Litestar, psycopg). What it removes:

- the value of a key that holds request content or credentials (``authorization``,
  ``headers``, ``body``, ``passengers``, ``email``, ``payment_token``, ``token``,
  ``secret``..., see :data:`SENSITIVE_KEYS`), and any ``bytes`` value (a body, a header);
- in every string, at any depth: ``Bearer <anything>``, JWT-shaped strings (also cut
  ones), email addresses, payment tokens (``tok_...``), and the secrets it was given
  (the signing secret);
- in the text of an exception (``exc_value``, the ``error`` field, a rendered traceback's
  message lines): every quoted literal, since exceptions quote the input that broke
  them (``UnicodeDecodeError('utf-8', b'Zo...')``, ``KeyError('Ada Lovelace')``).

Tracebacks never carry frame locals (:mod:`flightbook.runtime.logs`): that was where the
request's headers and body came from.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterable

    from structlog.typing import EventDict, WrappedLogger

__all__ = ("REDACTED", "SENSITIVE_KEYS", "Scrubber")

REDACTED = "[redacted]"
SENSITIVE_KEYS: frozenset[str] = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "cookie",
        "set-cookie",
        "headers",
        "body",
        "data",
        "content",
        "form",
        "json",
        "passenger",
        "passengers",
        "passenger_name",
        "names",
        "email",
        "emails",
        "payment_token",
        "token",
        "access_token",
        "refresh_token",
        "password",
        "secret",
        "totp",
        "totp_secret",
        "otpauth_uri",
        "recovery_code",
        "recovery_codes",
        "code",
        "locals",
    }
)
"""Keys (case-insensitive) whose values are never logged."""

_FREE_TEXT_KEYS = frozenset({"exc_value", "error", "exception"})
"""Keys holding an exception's text, where quoted input is dropped too."""

_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"(?i)\b(bearer|basic)\s+[^\s'\",;]+"), rf"\1 {REDACTED}"),
    (re.compile(r"eyJ[A-Za-z0-9_=-]{2,}(?:\.[A-Za-z0-9_=-]*){0,2}"), "[redacted jwt]"),
    (re.compile(r"[^\s@'\"<>()\[\],;:]+@[^\s@'\"<>()\[\],;:]+\.[A-Za-z]{2,}"), "[redacted email]"),
    (re.compile(r"\btok_[A-Za-z0-9_-]+"), "tok_[redacted]"),
)
# a literal opens at a quote not inside a word ("can't" is no literal; b'...' is one)
_QUOTED = re.compile(r"""(?<![A-Za-z0-9_])b?(?:'(?:[^'\\\n]|\\.)*'|"(?:[^"\\\n]|\\.)*")""")
_TRACEBACK_FILE_LINE = re.compile(r'^\s*File "[^"]*", line \d+')


class Scrubber:
    """The processor (``processors=[..., Scrubber(secrets=[...]), renderer]``).

    Args:
        secrets: Exact strings never to log (the signing secret); empty ones are ignored.
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets = tuple(sorted({s for s in secrets if s}, key=len, reverse=True))

    def __call__(self, _logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
        return {key: self._value(key, value) for key, value in event_dict.items()}

    def _value(self, key: object, value: Any, *, free_text: bool = False) -> Any:
        name = key.lower() if isinstance(key, str) else ""
        if name in SENSITIVE_KEYS:
            return REDACTED
        free_text = free_text or name in _FREE_TEXT_KEYS
        if isinstance(value, str):
            return self.text(value, free_text=free_text)
        if isinstance(value, bytes | bytearray | memoryview):
            return REDACTED
        if isinstance(value, dict):
            return {k: self._value(k, v, free_text=free_text) for k, v in value.items()}
        if isinstance(value, list | tuple | set | frozenset):
            return [self._value(None, v, free_text=free_text) for v in value]
        if isinstance(value, BaseException):
            return self.text(repr(value), free_text=True)
        return value

    def text(self, text: str, *, free_text: bool = False) -> str:
        """``text`` without secrets, tokens, emails (and quoted literals, if ``free_text``)."""
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        for pattern, replacement in _PATTERNS:
            text = pattern.sub(replacement, text)
        if free_text:
            text = "\n".join(
                line if _TRACEBACK_FILE_LINE.match(line) else _QUOTED.sub(f"'{REDACTED}'", line)
                for line in text.split("\n")
            )
        return text
