"""Rate limits of both APIs, on the session's Redis (finding 7 of issue 15).

The APIs run in-process behind httpx's ASGI transport, which lets a test choose the
peer address a request comes from; each test sets its own, low, limits.
"""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AsyncExitStack
from typing import Any

import httpx
import msgspec
import pytest
import redis
from litestar import Litestar
from prometheus_client import CollectorRegistry
from structlog.testing import capture_logs

from flightbook.bootstrap import build_command_api, build_query_api
from flightbook.config.settings import Settings
from tests.support.api import Headers, booking_body, flight_body

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

PEER = "198.51.100.7"
SEARCH = "/flights?origin=LHR&destination=JFK&date=2026-12-24"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def limited(settings: Settings, cache: redis.Redis) -> Callable[..., Settings]:
    """The test's settings with some limits changed (its Redis keys go afterwards).

    These tests count; a loaded machine must not make the limiter's Redis look "too slow"
    (0.25 s by default) and serve their requests unchecked.
    """

    def change(**limits: str) -> Settings:
        return msgspec.structs.replace(settings, rate_limit_timeout_seconds=5.0, **limits)

    return change


class Served:
    """Apps running (lifespan entered), and clients of them from chosen peer addresses."""

    def __init__(self, stack: AsyncExitStack) -> None:
        self._stack = stack

    async def start(self, app: Litestar) -> Litestar:
        await self._stack.enter_async_context(app.lifespan())
        return app

    async def client(self, app: Litestar, peer: str = PEER) -> httpx.AsyncClient:
        # httpx types the ASGI app more loosely than Litestar types its __call__
        transport = httpx.ASGITransport(app=app, client=(peer, 40000))  # type: ignore[arg-type]
        client = httpx.AsyncClient(transport=transport, base_url="http://api")
        return await self._stack.enter_async_context(client)


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    async with AsyncExitStack() as stack:
        yield Served(stack)


async def _schedule_flight(api: httpx.AsyncClient, auth: Headers) -> str:
    response = await api.post("/flights", json=flight_body(), headers=auth("ops-1", "ops"))
    assert response.status_code == 201, response.text
    return str(response.json()["flight_id"])


async def _book(api: httpx.AsyncClient, auth: Headers, customer: str, flight: str) -> Any:
    headers = auth(customer, "customer", **{"Idempotency-Key": uuid.uuid4().hex})
    return await api.post("/bookings", json=booking_body(flight), headers=headers)


async def test_a_flood_of_bookings_from_one_token_is_refused_after_the_write_limit(
    limited: Callable[..., Settings], served: Served, auth: Headers
) -> None:
    # finding 7: 500 POST /bookings from one token in 11 s were all accepted
    app = await served.start(build_command_api(limited(rate_limit_writes="4/minute")))
    api = await served.client(app)
    flight = await _schedule_flight(api, auth)

    flood = [(await _book(api, auth, "mallory", flight)).status_code for _ in range(100)]
    other = await _book(api, auth, "bob", flight)

    assert flood == [202] * 4 + [429] * 96
    assert other.status_code == 202, other.text


async def test_random_booking_ids_from_one_token_are_refused_after_the_read_limit(
    limited: Callable[..., Settings], served: Served, auth: Headers
) -> None:
    app = await served.start(build_query_api(limited(rate_limit_reads="10/minute")))
    api = await served.client(app)
    headers = auth("mallory", "customer")

    probes = [
        (await api.get(f"/bookings/{uuid.uuid4()}", headers=headers)).status_code for _ in range(40)
    ]
    other = await api.get(f"/bookings/{uuid.uuid4()}", headers=auth("bob", "customer"))

    assert probes == [404] * 10 + [429] * 30
    assert other.status_code == 404


async def test_a_request_the_limiter_lets_through_has_its_token_verified_once(
    limited: Callable[..., Settings],
    served: Served,
    auth: Headers,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from flightbook.http.tokens import verify_token

    app = await served.start(build_query_api(limited()))
    api = await served.client(app)
    verified: list[str] = []

    def counting(settings: Settings, token: str) -> Any:
        verified.append(token)
        return verify_token(settings, token)

    monkeypatch.setattr("flightbook.http.auth.verify_token", counting)

    answer = await api.get(f"/bookings/{uuid.uuid4()}", headers=auth("bob", "customer"))

    assert answer.status_code == 404
    assert len(verified) == 1  # by the limiter; the guard takes its principal


async def test_a_bad_token_flood_from_one_address_is_refused_but_a_good_token_from_it_is_not(
    limited: Callable[..., Settings], served: Served, auth: Headers
) -> None:
    app = await served.start(build_query_api(limited(rate_limit_refused_tokens="10/minute")))
    api = await served.client(app)
    forged = {"Authorization": "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"}

    flood = [(await api.get(SEARCH, headers=forged)).status_code for _ in range(30)]
    anonymous = await api.get(SEARCH)
    elsewhere = await (await served.client(app, "203.0.113.50")).get(SEARCH, headers=forged)
    good = await api.get(SEARCH, headers=auth("alice", "customer"))

    assert flood == [401] * 10 + [429] * 20
    assert anonymous.status_code == 429
    assert elsewhere.status_code == 401
    assert good.status_code == 200, good.text


async def test_a_customers_refused_requests_do_not_use_up_the_limit_of_their_address(
    limited: Callable[..., Settings], served: Served, auth: Headers
) -> None:
    settings = limited(rate_limit_reads="2/minute", rate_limit_address="5/minute")
    api = await served.client(await served.start(build_query_api(settings)))

    mallory = [
        (await api.get(SEARCH, headers=auth("mallory", "customer"))).status_code for _ in range(20)
    ]
    # same address (an office behind one NAT, say): 3 of the address's 5 are left
    others = [
        (await api.get(SEARCH, headers=auth(f"colleague-{i}", "customer"))).status_code
        for i in range(4)
    ]

    assert mallory == [200] * 2 + [429] * 18
    assert others == [200] * 3 + [429]


async def test_two_api_instances_on_one_redis_share_the_limits(
    limited: Callable[..., Settings], served: Served, auth: Headers
) -> None:
    settings = limited(rate_limit_reads="10/minute")
    first = await served.client(await served.start(build_query_api(settings)))
    second = await served.client(await served.start(build_query_api(settings)))
    headers = auth("mallory", "customer")

    statuses = [
        (await api.get(SEARCH, headers=headers)).status_code
        for _ in range(10)
        for api in (first, second)
    ]

    assert statuses == [200] * 10 + [429] * 10


async def test_x_forwarded_for_names_the_client_only_when_a_trusted_proxy_sends_it(
    limited: Callable[..., Settings], served: Served, auth: Headers
) -> None:
    settings = limited(rate_limit_address="5/minute", trusted_proxies="192.0.2.0/28, 10.1.1.1")
    app = await served.start(build_query_api(settings))
    proxy = await served.client(app, "192.0.2.3")
    direct = await served.client(app, PEER)

    async def status(api: httpx.AsyncClient, forwarded: str, subject: str) -> int:
        # a new customer each time: only the address limit can refuse
        headers = auth(subject, "customer", **{"X-Forwarded-For": forwarded})
        return (await api.get(SEARCH, headers=headers)).status_code

    # the client prepends invented hops; the proxies append the real one
    carol = [await status(proxy, f"10.9.9.{i}, 203.0.113.7, 10.1.1.1", f"c{i}") for i in range(7)]
    dave = await status(proxy, "203.0.113.8", "dave")
    spoofed = [await status(direct, f"203.0.113.{100 + i}", f"s{i}") for i in range(7)]

    assert carol == [200] * 5 + [429] * 2
    assert dave == 200
    assert spoofed == [200] * 5 + [429] * 2


async def test_a_refusal_is_a_429_problem_with_retry_after_and_ratelimit_headers(
    limited: Callable[..., Settings], served: Served, auth: Headers
) -> None:
    settings = limited(rate_limit_reads="2/minute;100/hour", rate_limit_address="50/second")
    registry = CollectorRegistry()
    api = await served.client(await served.start(build_query_api(settings, registry=registry)))
    headers = auth("mallory", "customer", **{"X-Request-ID": "probe-1"})

    allowed = [await api.get(SEARCH, headers=headers) for _ in range(2)]
    refused = await api.get(SEARCH, headers=headers)

    policy = '"reads-60s";q=2;w=60, "reads-3600s";q=100;w=3600, "address-1s";q=50;w=1'
    assert [r.status_code for r in allowed] == [200, 200]
    assert {r.headers["RateLimit-Policy"] for r in allowed} == {policy}
    assert refused.status_code == 429
    assert refused.headers["content-type"] == "application/problem+json"
    retry_after = int(refused.headers["Retry-After"])
    assert 1 <= retry_after <= 60
    assert refused.headers["RateLimit"] == f'"reads-60s";r=0;t={retry_after}'
    assert refused.headers["RateLimit-Policy"] == policy
    assert refused.headers["X-Request-ID"] == "probe-1"
    assert refused.json() == {
        "type": "https://flightbook.example/problems/rate_limited",
        "title": "Rate limited",
        "status": 429,
        "detail": (
            "rate limit reads-60s reached: at most 2 reads (GET) by one customer every 60 s; "
            f"retry in {retry_after} s"
        ),
    }
    assert registry.get_sample_value("flightbook_rate_limited_total", {"limit": "reads"}) == 1


async def test_health_metrics_and_docs_are_not_limited(
    limited: Callable[..., Settings], served: Served
) -> None:
    settings = limited(rate_limit_address="2/minute", rate_limit_refused_tokens="2/minute")
    app = await served.start(build_query_api(settings))
    api = await served.client(app)
    docs = app.openapi_config.path if app.openapi_config else "/schema"

    statuses = {
        path: [(await api.get(path)).status_code for _ in range(5)]
        for path in ("/health/live", f"{docs}/openapi.json")
    }

    assert statuses == {path: [200] * 5 for path in statuses}


@pytest.mark.parametrize("build", [build_command_api, build_query_api])
def test_both_openapi_documents_give_every_limited_route_a_429(
    settings: Settings, build: Callable[[Settings], Litestar]
) -> None:
    paths = build(settings).openapi_schema.to_schema()["paths"]

    answers = {
        (path, method): set(operation["responses"])
        for path, item in paths.items()
        for method, operation in item.items()
    }

    limited = {key for key, statuses in answers.items() if "429" in statuses}
    assert limited == {key for key in answers if not key[0].startswith(("/health", "/metrics"))}
    assert limited


@pytest.fixture(params=["closed port", "silent server"])
def unreachable_redis(request: pytest.FixtureRequest) -> Iterator[str]:
    """A Redis URL that refuses connections, or whose server accepts and never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        url = f"redis://127.0.0.1:{sock.getsockname()[1]}/0"
        if request.param == "silent server":
            sock.listen(64)
            yield url
            return
    yield url  # closed: nothing listens there any more


async def test_requests_are_served_unchecked_when_the_limiters_redis_does_not_answer(
    limited: Callable[..., Settings], served: Served, auth: Headers, unreachable_redis: str
) -> None:
    settings = msgspec.structs.replace(
        limited(rate_limit_writes="1/minute", rate_limit_address="1/minute"),
        redis_url=unreachable_redis,
        rate_limit_timeout_seconds=Settings().rate_limit_timeout_seconds,  # the default
    )
    registry = CollectorRegistry()
    app = await served.start(build_command_api(settings, registry=registry))
    api = await served.client(app)

    with capture_logs() as logs:
        started = time.monotonic()
        first = await _schedule_flight(api, auth)
        took = time.monotonic() - started
        more = [await _schedule_flight(api, auth) for _ in range(5)]

    assert len({first, *more}) == 6  # six flights (201): the 1/minute limits not applied
    assert took < 2.0
    warnings = [log for log in logs if log["event"] == "rate_limit.unavailable"]
    assert len(warnings) == 1
    assert warnings[0]["log_level"] == "warning"
    assert registry.get_sample_value("flightbook_rate_limit_unchecked_total") == 6
