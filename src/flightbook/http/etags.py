"""Entity tags for the one-resource reads, and ``If-None-Match`` → ``304 Not Modified``.

The tag is a strong validator made from the representation itself (a BLAKE2b digest of
the JSON the client would get): it changes exactly when the answer would, whichever
stores the answer joins (a flight's document and its seats in Redis, say), a rebuilt read
model that says the same keeps its tags, and an erased booking gets a new one.
``If-None-Match`` is compared weakly, as RFC 9110 asks (``W/`` is ignored; ``*`` matches
any current representation).
"""

from __future__ import annotations

import hashlib
from typing import Annotated, Any

from litestar import Response
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import HeaderParameter
from litestar.serialization import encode_json
from litestar.status_codes import HTTP_304_NOT_MODIFIED

__all__ = ("NOT_MODIFIED_RESPONSE", "IfNoneMatch", "entity_tag", "tagged")

IfNoneMatch = Annotated[
    str,
    HeaderParameter(
        name="If-None-Match",
        required=False,
        max_length=1024,
        description="ETags of representations the client holds: 304 if one is current",
    ),
]

NOT_MODIFIED_RESPONSE = ResponseSpec(
    data_container=None,
    description="Not modified: the representation whose ETag was sent is still current",
    generate_examples=False,
)


def entity_tag(body: bytes) -> str:
    """The strong entity tag of a representation."""
    return '"' + hashlib.blake2b(body, digest_size=12).hexdigest() + '"'


def _matches(if_none_match: str, tag: str) -> bool:
    offered = [part.strip() for part in if_none_match.split(",")]
    return any(part == "*" or part.removeprefix("W/") == tag for part in offered)


def tagged(view: Any, if_none_match: str) -> Response[Any]:
    """``view`` with its ``ETag``; an empty ``304`` when the client holds it already."""
    body = encode_json(view)
    tag = entity_tag(body)
    if if_none_match and _matches(if_none_match, tag):
        return Response(content=b"", status_code=HTTP_304_NOT_MODIFIED, headers={"ETag": tag})
    return Response(content=body, media_type="application/json", headers={"ETag": tag})
