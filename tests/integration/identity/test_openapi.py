"""The identity API's OpenAPI document, and what the other two documents now say about tokens."""

from __future__ import annotations

from typing import Any

import pytest

from flightbook.http.headers import API_CSP
from tests.support.api import Api

pytestmark = pytest.mark.integration

ROUTES = {
    "/auth/register": {"post"},
    "/auth/login": {"post"},
    "/auth/refresh": {"post"},
    "/auth/logout": {"post"},
    "/auth/mfa/totp": {"post"},
    "/auth/mfa/totp/confirm": {"post"},
    "/me": {"get"},
    "/.well-known/jwks.json": {"get"},
    "/accounts/{account_id}/roles": {"put"},
    "/accounts/{account_id}/unlock": {"post"},
}


def _schema(document: dict[str, Any], ref: dict[str, Any]) -> dict[str, Any]:
    name = str(ref["$ref"]).rsplit("/", 1)[1]
    found: dict[str, Any] = document["components"]["schemas"][name]
    return found


def test_the_identity_document_names_every_route_and_the_rfc_6749_token_response(
    identity_api: Api,
) -> None:
    document = identity_api.get("/schema/openapi.json").json()

    paths = document["paths"]
    for path, methods in ROUTES.items():
        assert path in paths, path
        assert methods <= set(paths[path]), (path, set(paths[path]))
    login = paths["/auth/login"]["post"]
    assert "security" not in login  # no bearer token needed to log in
    assert "security" not in document  # nor by default
    assert {"401", "429"} <= set(login["responses"])
    tokens = _schema(document, login["responses"]["200"]["content"]["application/json"]["schema"])
    assert {"access_token", "token_type", "expires_in", "refresh_token"} <= set(
        tokens["properties"]
    )
    assert paths["/auth/logout"]["post"]["security"] == [{"bearer": []}]
    assert "204" in paths["/auth/logout"]["post"]["responses"]
    register = paths["/auth/register"]["post"]
    assert {"201", "409", "422"} <= set(register["responses"])


@pytest.mark.parametrize("api", ["command_api", "query_api"])
def test_the_other_documents_say_tokens_come_from_the_identity_service(
    api: str, request: pytest.FixtureRequest
) -> None:
    client: Api = request.getfixturevalue(api)
    scheme = client.get("/schema/openapi.json").json()["components"]["securitySchemes"]["bearer"]

    assert scheme["bearerFormat"] == "JWT"
    assert "/auth/login" in scheme["description"]
    assert "revoked" in scheme["description"]


def test_every_identity_answer_carries_the_security_headers(identity_api: Api) -> None:
    answers = {
        "jwks": identity_api.get("/.well-known/jwks.json"),
        "401": identity_api.get("/me"),
        "400": identity_api.post("/auth/login", content=b"{"),
        "422": identity_api.post("/auth/register", json={"email": "x"}),
        "404": identity_api.get("/no-such-route"),
    }

    assert answers["jwks"].status_code == 200
    for name, answer in answers.items():
        assert answer.headers["x-content-type-options"] == "nosniff", name
        assert answer.headers["content-security-policy"] == API_CSP, name
        if name != "jwks":
            assert answer.headers["content-type"].startswith("application/problem+json"), name
