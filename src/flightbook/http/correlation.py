"""The correlation id of a request: the caller's ``X-Request-ID`` when acceptable, else new."""

from __future__ import annotations

import re
import uuid
from typing import TYPE_CHECKING

from litestar.datastructures import Headers

if TYPE_CHECKING:
    from litestar.types import Scope

__all__ = ("REQUEST_ID", "REQUEST_ID_HEADER", "correlation_of")

REQUEST_ID_HEADER = "X-Request-ID"
REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
"""What a caller's X-Request-ID may look like (whole value); it becomes the correlation id."""


def correlation_of(scope: Scope) -> tuple[str, bool]:
    """The request's correlation id, and whether the caller's X-Request-ID was acceptable.

    The correlation id is the caller's X-Request-ID when it is acceptable, else a new one.
    """
    given = Headers.from_scope(scope).get(REQUEST_ID_HEADER)
    acceptable = given is None or REQUEST_ID.fullmatch(given) is not None
    return (given if given and acceptable else str(uuid.uuid4())), acceptable
