"""The ``X-Flightbook-Position`` token: positions in the contexts' notification logs.

Opaque to clients; inside it is ``context:position`` pairs joined by ``,``
(``booking:42,inventory:17``). Commands return it; queries accept it back as
``X-Flightbook-After`` and wait until their read models have applied those positions.

:data:`POSITIONS_PATTERN` is the token's whole grammar (the OpenAPI documents state it):
a string it matches always decodes, any other is refused.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from flightbook.eventstore.contexts import CONTEXT_NAMES

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = (
    "MAX_POSITION_DIGITS",
    "POSITIONS_PATTERN",
    "PositionTokenError",
    "decode_positions",
    "encode_positions",
)

MAX_POSITION_DIGITS = 18
"""A position is a PostgreSQL ``bigint``: at most 18 digits keep every one in range."""
_PAIR = f"(?:{'|'.join(sorted(CONTEXT_NAMES))}):[0-9]{{1,{MAX_POSITION_DIGITS}}}"
POSITIONS_PATTERN = f"^(?:{_PAIR}(?:,{_PAIR})*)?$"
"""``context:position`` pairs joined by ``,``, nothing else (the empty token names none)."""
_POSITIONS = re.compile(POSITIONS_PATTERN)


class PositionTokenError(ValueError):
    """The token is not one this system issued."""


def encode_positions(positions: Mapping[str, int | None]) -> str:
    """Encode the known positions (None entries are left out)."""
    return ",".join(
        f"{context}:{position}"
        for context, position in sorted(positions.items())
        if position is not None
    )


def decode_positions(token: str) -> dict[str, int]:
    """Decode a token; raise :class:`PositionTokenError` unless it matches the grammar."""
    if _POSITIONS.fullmatch(token) is None:
        raise PositionTokenError("not a position token")
    positions: dict[str, int] = {}
    for part in filter(None, token.split(",")):
        context, _, number = part.partition(":")
        positions[context] = max(int(number), positions.get(context, 0))
    return positions
