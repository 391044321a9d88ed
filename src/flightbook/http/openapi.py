"""What both APIs say about themselves in their OpenAPI documents.

Problems, common headers, and :class:`ClosedStructSchemaPlugin`: a request Struct that
refuses unknown fields (``forbid_unknown_fields``) is documented with
``additionalProperties: false``, so the document states every rule the server enforces.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec

# Litestar's schema of a msgspec Struct has no public home; this plugin extends it.
from litestar._openapi.schema_generation.plugins.struct import StructSchemaPlugin
from litestar.datastructures import ResponseHeader
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import HeaderParameter

from flightbook.http.correlation import REQUEST_ID, REQUEST_ID_HEADER
from flightbook.http.problems import PROBLEM_JSON

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from litestar._openapi.schema_generation import SchemaCreator
    from litestar.openapi.spec import Schema
    from litestar.typing import FieldDefinition

__all__ = (
    "REQUEST_ID_RESPONSE_HEADER",
    "UNAVAILABLE_DESCRIPTION",
    "ClosedStructSchemaPlugin",
    "FieldProblem",
    "ProblemDocument",
    "problem_responses",
    "request_id_parameter",
)


class FieldProblem(msgspec.Struct, frozen=True, kw_only=True):
    field: str
    message: str
    source: str | None = None


class ProblemDocument(msgspec.Struct, frozen=True, kw_only=True):
    """An RFC 9457 problem (``application/problem+json``), as every error is answered.

    Documents :func:`problem_response` in the OpenAPI schema; it is not used to encode.
    """

    type: str
    title: str
    status: int
    detail: str
    field: str | None = None
    """The request field to blame: ``passengers[0].email``, ``Idempotency-Key``..."""
    errors: list[FieldProblem] | None = None
    """Every field that failed validation (400 only)."""


UNAVAILABLE_DESCRIPTION = (
    "A server this API needs is away (a restart, a failover): nothing was lost; send the "
    "request again after Retry-After seconds (a command with the same Idempotency-Key)"
)


def problem_responses(
    descriptions: Mapping[int, str],
) -> Callable[..., dict[int, ResponseSpec]]:
    """``responses=`` for routes: one problem document per status, described by the API.

    Every route may answer ``503`` with ``Retry-After`` while a server it needs is away
    (ADR 0018), so each route documents it whether it is named or not.
    """

    def responses(*statuses: int) -> dict[int, ResponseSpec]:
        return {
            status: ResponseSpec(
                data_container=ProblemDocument,
                description=descriptions.get(status, UNAVAILABLE_DESCRIPTION),
                media_type=PROBLEM_JSON,
                generate_examples=False,
            )
            for status in dict.fromkeys((*statuses, 503))
        }

    return responses


def request_id_parameter(description: str) -> dict[str, HeaderParameter]:
    """The optional ``X-Request-ID`` header every route takes (a router's ``parameters=``)."""
    return {
        "request_id": HeaderParameter(
            name=REQUEST_ID_HEADER,
            annotation=str,
            required=False,
            pattern=REQUEST_ID.pattern,
            max_length=64,
            description=description,
        )
    }


REQUEST_ID_RESPONSE_HEADER = ResponseHeader(
    name=REQUEST_ID_HEADER, description="The request's correlation id", documentation_only=True
)


class ClosedStructSchemaPlugin(StructSchemaPlugin):
    """Litestar's Struct schema, closed where the Struct refuses unknown fields.

    ``additionalProperties: false`` for every request body of the command API.
    """

    def to_openapi_schema(
        self, field_definition: FieldDefinition, schema_creator: SchemaCreator
    ) -> Schema:
        schema = super().to_openapi_schema(field_definition, schema_creator)
        info = msgspec.inspect.type_info(field_definition.type_)
        if isinstance(info, msgspec.inspect.StructType) and info.forbid_unknown_fields:
            schema.additional_properties = False
        return schema
