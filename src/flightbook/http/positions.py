"""The ``X-Flightbook-Position`` token: positions in the contexts' notification logs.

Opaque to clients; inside it is ``context:position`` pairs joined by ``,``
(``booking:42,inventory:17``). Commands return it; queries accept it back as
``X-Flightbook-After`` and wait until their read models have applied those positions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from flightbook.eventstore.contexts import CONTEXT_NAMES

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ("PositionTokenError", "decode_positions", "encode_positions")


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
    """Decode a token; raise :class:`PositionTokenError` if it is malformed."""
    positions: dict[str, int] = {}
    if not token.strip():
        return positions
    for part in token.split(","):
        context, _, number = part.strip().partition(":")
        if context not in CONTEXT_NAMES or not number.isdigit():
            raise PositionTokenError(f"not a position token: {token!r}")
        positions[context] = max(int(number), positions.get(context, 0))
    return positions
