"""The one translation of a validation failure into a ``400`` problem naming the field.

Litestar reports a bad parameter by its handler name (``idempotency_key``, ``start``) and
a bad body by msgspec's message (``Expected `int`, got `str` - at `$.fares[0].seats```,
``Object missing required field `fare```). The problem names the field as the client sent
it: the header (``Idempotency-Key``), the query parameter (``from``), or the path into the
body (``passengers[0].email``); ``errors`` lists every failure.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from flightbook.http.problems import problem_response

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from litestar import Request, Response
    from litestar.exceptions import ValidationException

__all__ = ("explain", "validation_handler")

_MSGSPEC_FIELD = re.compile(
    r"^Object (?:missing required|contains unknown) field `(?P<name>[^`]+)`"
)
_MISSING_PARAMETER = re.compile(r"Missing required (?P<kind>\w+) parameter '(?P<name>[^']+)'")
_AT_PATH = re.compile(r" - at `\$\.?(?P<path>[^`]*)`")
_PARAMETER_SOURCES = frozenset({"header", "query", "path", "cookie"})


def _join(prefix: str, name: str) -> str:
    if not prefix:
        return name
    if not name:
        return prefix
    return f"{prefix}{name}" if name.startswith("[") else f"{prefix}.{name}"


def explain(
    item: Mapping[str, Any], *, wire_names: Mapping[str, str], fallback: str
) -> dict[str, str]:
    """One failure as ``{field, message[, source]}`` with the field a client knows."""
    message = str(item.get("message", ""))
    key = str(item.get("key") or "")
    source = str(getattr(item.get("source"), "value", item.get("source")) or "")
    at = _AT_PATH.search(message)
    path = at.group("path") if at is not None else ""
    message = _AT_PATH.sub("", message)
    if source in _PARAMETER_SOURCES:
        field = wire_names.get(key, key) or fallback
        return {"field": field, "message": message, "source": source}
    # Litestar names the body "data" and a nested value by its path ("passengers[0]");
    # msgspec names a missing or unknown field only in the message.
    base = _join("" if key == "data" else key, path)
    named = _MSGSPEC_FIELD.match(message)
    if named is not None:
        field = _join(base, named.group("name"))
    elif key == "data" and message == "'data'":
        field, message = "body", "a JSON body is required"
    else:
        field = base or fallback
    return {"field": field, "message": message, **({"source": source} if source else {})}


def validation_handler(
    *, wire_names: Mapping[str, str] | None = None, fallback: str = "body"
) -> Callable[[Request[Any, Any, Any], ValidationException], Response[Any]]:
    """An exception handler answering a ``ValidationException`` with a problem document.

    Args:
        wire_names: Handler parameter (or lower-cased header) names -> the name a client
            sent (``idempotency_key`` -> ``Idempotency-Key``, ``start`` -> ``from``).
        fallback: The field to blame when nothing more precise is known.
    """
    names = dict(wire_names or {})

    def on_validation(_request: Request[Any, Any, Any], exc: ValidationException) -> Response[Any]:
        raw = exc.extra if isinstance(exc.extra, list) else []
        errors = [
            explain(item, wire_names=names, fallback=fallback)
            for item in raw
            if isinstance(item, dict)
        ]
        if not errors:
            detail = str(exc.detail)
            missing = _MISSING_PARAMETER.search(detail)
            if missing is not None:
                name, kind = missing.group("name"), missing.group("kind")
                errors.append(
                    {
                        "field": names.get(name.lower(), name),
                        "message": f"the {kind} parameter is required",
                        "source": kind,
                    }
                )
            else:
                errors.append(
                    explain({"message": detail, "key": "data"}, wire_names=names, fallback=fallback)
                )
        first = errors[0]
        return problem_response(
            400,
            "invalid_request",
            f"{first['field']}: {first['message']}",
            field=first["field"],
            extra={"errors": errors},
        )

    return on_validation
