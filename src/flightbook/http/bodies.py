"""The one strict decoding of a JSON request body, for every route of both APIs.

A body is refused with a ``400`` problem before any handler sees it when it is

- not UTF-8 (``malformed_body``, ``field: body``, the byte offset named);
- nested deeper than :data:`MAX_DEPTH` arrays/objects (``malformed_body``);
- not JSON (``malformed_body``);
- not of the route's type (``invalid_request`` naming the field, via
  :mod:`flightbook.http.validation`): msgspec's *strict* mode, so ``"100"`` or ``"1e3"``
  is not an integer, ``"true"`` or ``1`` not a boolean, and unknown fields are refused by
  the request Structs (``forbid_unknown_fields``).

A JSON number is a number: ``1e3`` and ``1000.0`` are the integer 1000, as JSON Schema
(``type: integer``) reads them; ``1.5`` is not an integer.

Litestar reads a ``data`` body with ``Request.json()`` and then converts it with msgspec in
lax mode (strings become numbers). :class:`StrictRequest` (the apps' ``request_class``)
decodes the body into the handler's ``data`` type itself, strictly, so the lax conversion
only ever sees a value of the right type and passes it through.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec
from litestar import Request
from litestar.exceptions import ValidationException
from litestar.types import Empty

from flightbook.http.problems import Problem

__all__ = ("MAX_DEPTH", "StrictRequest", "decode_body")

MAX_DEPTH = 32
"""Arrays and objects nested deeper than this are refused (the deepest request is 4)."""

_BRACKETS_AND_STRINGS = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}]')
_OPENING = frozenset(b"[{")


def _malformed(detail: str) -> Problem:
    return Problem(400, "malformed_body", detail, field="body")


def _check_utf8(body: bytes) -> None:
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _malformed(
            f"the body is not valid UTF-8 (byte {exc.start}); send JSON encoded as UTF-8"
        ) from None


def _check_depth(body: bytes) -> None:
    depth = 0
    for token in _BRACKETS_AND_STRINGS.finditer(body):
        first = token.group()[0]
        if first in _OPENING:
            depth += 1
            if depth > MAX_DEPTH:
                raise _malformed(f"the body nests arrays or objects deeper than {MAX_DEPTH}")
        elif first != ord('"'):
            depth -= 1


def decode_body(body: bytes, target: Any = Any) -> Any:
    """``body`` decoded as JSON into ``target``, strictly (see the module's rules).

    Raises:
        Problem: 400 ``malformed_body`` (not UTF-8, too deep, not JSON).
        ValidationException: the JSON is not a ``target`` (names the field).
    """
    _check_utf8(body)
    _check_depth(body)
    try:
        value = _integral(msgspec.json.decode(body))
    except (msgspec.DecodeError, RecursionError) as exc:
        raise _malformed(f"the body is not valid JSON: {exc}") from None
    try:
        return msgspec.convert(value, type=target, strict=True)
    except msgspec.ValidationError as exc:
        raise ValidationException(
            detail=str(exc), extra=[{"message": str(exc), "key": "data", "source": "body"}]
        ) from None


def _integral(value: Any) -> Any:
    """``value`` with every integral float (``1e3``, ``7.0``) made an int."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list):
        return [_integral(item) for item in value]
    if isinstance(value, dict):
        return {key: _integral(item) for key, item in value.items()}
    return value


class StrictRequest(Request[Any, Any, Any]):
    """A request whose JSON body is decoded by :func:`decode_body` into the route's type.

    The type is that of the handler's ``data`` parameter (any JSON value if it has none).
    """

    async def json(self) -> Any:
        if self._json is Empty:
            parameter = self.route_handler.parsed_fn_signature.parameters.get("data")
            target = Any if parameter is None else parameter.annotation
            self._json = decode_body(await self.body() or b"null", target)
        return self._json
