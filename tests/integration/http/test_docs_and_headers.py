"""The docs UI works offline on every API, and every answer carries the security headers."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

import pytest
from litestar.testing import TestClient

from flightbook.bootstrap import build_command_api, build_identity_api, build_query_api
from flightbook.config.settings import Settings
from flightbook.http.headers import API_CSP, DOCS_CSP
from tests.support.api import Api, Headers, booking_body
from tests.support.readside import ServerReadSide

pytestmark = pytest.mark.integration

EXTERNAL = re.compile(r"(?i)\b(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}")
REFERENCES = re.compile(r"""(?:src|href)\s*=\s*["']([^"']+)["']""")


BUILDERS = {"command": build_command_api, "query": build_query_api, "identity": build_identity_api}


@pytest.fixture(params=["command", "query"])
def any_api(request: pytest.FixtureRequest, settings: Settings) -> Iterator[Api]:
    side = ServerReadSide(settings)
    build = BUILDERS[request.param]
    try:
        with TestClient(build(settings)) as client:
            yield client
    finally:
        side.close()


@pytest.fixture(params=list(BUILDERS))
def docs_api(request: pytest.FixtureRequest, settings: Settings) -> Iterator[Api]:
    side = ServerReadSide(settings)
    try:
        with TestClient(BUILDERS[request.param](settings)) as client:
            yield client
    finally:
        side.close()


@pytest.mark.parametrize("page", ["/schema", "/schema/swagger"])
def test_the_docs_page_and_every_asset_it_loads_come_from_the_api_itself(
    docs_api: Api, page: str
) -> None:
    any_api = docs_api
    html = any_api.get(page)

    assert html.status_code == 200
    assert html.headers["content-type"].startswith("text/html")
    assert html.headers["content-security-policy"] == DOCS_CSP
    assert EXTERNAL.search(html.text) is None, EXTERNAL.search(html.text)
    assert "<script>" not in html.text.replace(" ", "")  # no inline script: CSP has none
    assets = REFERENCES.findall(html.text)
    assert len(assets) >= 4, assets
    for asset in assets:
        assert asset.startswith("/schema/"), asset
        answer = any_api.get(asset)
        assert answer.status_code == 200, asset
        assert answer.content, asset
        if asset.endswith("init.js"):
            assert EXTERNAL.search(answer.text) is None, (asset, EXTERNAL.search(answer.text))
        if asset.endswith(".css"):
            # what a stylesheet fetches: url(...) and @import (its SVG icons are data: URIs)
            urls = re.findall(r"url\(\s*['\"]?([^)'\"]+)", answer.text)
            assert urls, "no url() at all: the check below would prove nothing"
            assert [u for u in urls if not u.startswith("data:") and "//" in u] == []
            assert "@import" not in answer.text
    init = any_api.get("/schema/swagger-init.js").text
    assert '"/schema/openapi.json"' in init
    assert "validatorUrl: null" in init  # no call to validator.swagger.io


def test_only_the_listed_docs_assets_are_served(docs_api: Api) -> None:
    any_api = docs_api
    assert any_api.get("/schema/static/index.html").status_code == 404
    assert any_api.get("/schema/static/swagger-initializer.js").status_code == 404
    assert any_api.get("/schema/static/..%2F..%2F__init__.py").status_code == 404
    assert any_api.get("/schema/redoc").status_code == 404


def test_every_kind_of_answer_carries_the_security_headers(any_api: Api, auth: Headers) -> None:
    customer = auth("alice", "customer", **{"Idempotency-Key": "k"})
    answers = {
        "health": any_api.get("/health/live"),
        "openapi": any_api.get("/schema/openapi.json"),
        "401": any_api.get("/bookings"),
        "404 route": any_api.get("/no-such-route"),
        "404 id": any_api.post(f"/bookings/{uuid.uuid4()}/cancel", headers=customer),
        "405": any_api.delete("/bookings", headers=customer),
        "400": any_api.post("/bookings", content=b"{", headers=customer),
        "413": any_api.post("/bookings", content=b"x" * (70 * 1024), headers=customer),
        "2xx/4xx": any_api.post(
            "/bookings", json=booking_body(str(uuid.uuid4())), headers=customer
        ),
        "query": any_api.get("/bookings", headers=customer),
    }

    for name, answer in answers.items():
        assert answer.headers["x-content-type-options"] == "nosniff", name
        assert answer.headers["cache-control"] == "no-store", name
        assert answer.headers["referrer-policy"] == "no-referrer", name
        assert answer.headers["content-security-policy"] == API_CSP, name


def test_docs_assets_may_be_cached_but_nothing_else(docs_api: Api) -> None:
    asset = docs_api.get("/schema/static/swagger-ui.css")

    assert asset.headers["cache-control"].startswith("public, max-age=")
    assert asset.headers["x-content-type-options"] == "nosniff"
