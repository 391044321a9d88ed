"""Rate limits shared by every API process: per customer and per client address, in Redis.

Every request to a route behind the bearer token (a route that declares who may call it,
:func:`flightbook.http.auth.requires`) takes one hit from each of these limits, in this
order, and stops at the first that refuses (the later ones are not charged):

==================  =========================================  ===============================
limit               counted for                                setting
==================  =========================================  ===============================
``refused_tokens``  the client address; only requests without  ``rate_limit_refused_tokens``
                    a valid token (they all end in ``401``)
``writes``          the token's subject (else the address):    ``rate_limit_writes``
                    ``POST``, ``DELETE``...
``reads``           the token's subject (else the address):    ``rate_limit_reads``
                    ``GET``, ``HEAD``, ``OPTIONS``
``address``         the client address, every limited route    ``rate_limit_address``
==================  =========================================  ===============================

Health, ``/metrics`` and the docs are not limited. The client address is the peer's,
or, when the peer is one of ``trusted_proxies``, the right-most ``X-Forwarded-For`` hop
that is not a trusted proxy (the hops left of it are the client's to invent).

A refusal is a ``429`` problem document (``rate_limited``) naming the limit, with
``Retry-After`` (seconds), ``RateLimit`` and ``RateLimit-Policy``
(draft-ietf-httpapi-ratelimit-headers-09); every limited answer carries
``RateLimit-Policy``. The counters live in Redis (the ``limits`` library's sliding-window
counters), so every API process shares them. When Redis does not answer within
``rate_limit_timeout_seconds`` (a setting, 0.25 s) the request is served unchecked and the
limiter rests for :data:`PAUSE_SECONDS`: a limiter must never take the booking system down.
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

import anyio
import limits
import redis.asyncio
import structlog
from limits.aio.storage import RedisStorage
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from limits.errors import StorageError
from litestar.datastructures import Headers, MutableScopeHeaders
from litestar.enums import ScopeType
from litestar.middleware import ASGIMiddleware
from litestar.openapi.datastructures import ResponseSpec
from litestar.plugins import InitPlugin, ReceiveRoutePlugin
from litestar.routes import HTTPRoute
from prometheus_client import Counter
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from flightbook.config.settings import require
from flightbook.http.auth import ROLES_OPT_KEY, verified_principal
from flightbook.http.correlation import REQUEST_ID_HEADER, correlation_of
from flightbook.http.openapi import ProblemDocument
from flightbook.http.problems import PROBLEM_JSON, Problem

if TYPE_CHECKING:
    from collections.abc import Sequence

    from litestar.config.app import AppConfig
    from litestar.routes import BaseRoute
    from litestar.types import ASGIApp, HTTPScope, Message, Receive, Scope, Send
    from prometheus_client import CollectorRegistry

    from flightbook.config.settings import Settings

__all__ = (
    "PAUSE_SECONDS",
    "RATE_LIMITED_RESPONSE",
    "Policy",
    "RateLimitPlugin",
    "client_address",
)

PAUSE_SECONDS = 5.0
"""How long the limiter leaves Redis alone after it failed to answer."""

_READS = frozenset({"GET", "HEAD", "OPTIONS"})
_WHAT = {
    "refused_tokens": "requests without a valid token from one address",
    "writes": "changes (POST, DELETE) by one customer",
    "reads": "reads (GET) by one customer",
    "address": "requests from one address",
}
_log = structlog.get_logger("flightbook.http.ratelimit")

RATE_LIMITED_RESPONSE = ResponseSpec(
    data_container=ProblemDocument,
    description=(
        "Too many requests: a rate limit is used up (`rate_limited`). Retry-After says "
        "in how many seconds to retry; RateLimit names the limit, RateLimit-Policy lists "
        "the limits of the route"
    ),
    media_type=PROBLEM_JSON,
    generate_examples=False,
)
"""The ``429`` every limited route documents."""


@dataclass(frozen=True, slots=True)
class Policy:
    """One rate limit of a class: ``writes-1s`` allows 5 changes per second, say."""

    limit: str
    """The class: ``writes``, ``reads``, ``address`` or ``refused_tokens``."""
    item: limits.RateLimitItem

    @property
    def window(self) -> int:
        return self.item.get_expiry()

    @property
    def name(self) -> str:
        return f"{self.limit}-{self.window}s"

    def header(self) -> str:
        """This policy as a member of ``RateLimit-Policy``."""
        return f'"{self.name}";q={self.item.amount};w={self.window}'


def _policies(limit: str, notation: str) -> tuple[Policy, ...]:
    # the notation was checked when the settings were read
    return tuple(Policy(limit, item) for item in limits.parse_many(notation))


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def client_address(scope: Scope, trusted: Sequence[Network]) -> str:
    """The client's address: the peer's, or the one a trusted proxy names.

    Behind trusted proxies the ``X-Forwarded-For`` hops are read from the right (the
    nearest) to the first one that is not a trusted proxy; a hop that is not an address
    ends the walk at the last good one.
    """
    client = scope.get("client")
    peer = client[0] if client else "unknown"
    if not _trusts(peer, trusted):
        return peer
    hops = [
        hop.strip()
        for value in Headers.from_scope(scope).getall("x-forwarded-for", [])
        for hop in value.split(",")
    ]
    address = peer
    for hop in reversed(hops):
        try:
            ip = ipaddress.ip_address(hop)
        except ValueError:
            break
        address = str(ip)
        if not any(ip in network for network in trusted):
            break
    return address


def _trusts(peer: str, trusted: Sequence[Network]) -> bool:
    if not trusted:
        return False
    try:
        ip = ipaddress.ip_address(peer)
    except ValueError:
        return False
    return any(ip in network for network in trusted)


def _identity(kind: str, value: str) -> tuple[str, str]:
    # A hash in the Redis key: no subject or address stored, a bounded key, and no "/"
    # from a subject to run into the next part of the key.
    return kind, hashlib.blake2b(value.encode(), digest_size=16).hexdigest()


_Check = tuple[Policy, tuple[str, str]]
"""A policy and whose counter of it to charge (:func:`_identity`)."""


@dataclass(frozen=True, slots=True)
class _Refusal:
    policy: Policy
    retry_after: int


class _Limiter:
    """The counters in Redis, through ``limits``; fails open when Redis does not answer."""

    def __init__(self, settings: Settings, registry: CollectorRegistry) -> None:
        self._url = require(settings.redis_url, "redis_url")
        self._key_prefix = f"{settings.redis_prefix}ratelimit"
        self._timeout = settings.rate_limit_timeout_seconds
        self._pool: redis.asyncio.ConnectionPool | None = None
        self._strategy: SlidingWindowCounterRateLimiter | None = None
        self._paused_until = 0.0
        self._failing = False
        self.refused = Counter(
            "flightbook_rate_limited",
            "Requests refused with 429, by the limit that refused them",
            ["limit"],
            registry=registry,
        )
        self.unchecked = Counter(
            "flightbook_rate_limit_unchecked",
            "Requests served without a rate-limit check: Redis unreachable or too slow",
            registry=registry,
        )

    async def open(self) -> None:
        """Connect (lazily) on the app's event loop."""
        self._pool = redis.asyncio.ConnectionPool.from_url(
            self._url,
            socket_timeout=self._timeout,
            socket_connect_timeout=self._timeout,
            retry=Retry(NoBackoff(), 0),
        )
        storage = RedisStorage(
            f"async+{self._url}",
            implementation="redispy",
            key_prefix=self._key_prefix,
            connection_pool=self._pool,  # type: ignore[arg-type]  # passed on to redis-py
        )
        self._strategy = SlidingWindowCounterRateLimiter(storage)

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.aclose()
        self._pool = self._strategy = None

    async def first_refusal(self, checks: Sequence[_Check]) -> _Refusal | None:
        """Hit each ``(policy, identity)`` in turn; the first that refuses, else None."""
        strategy = self._strategy
        if strategy is None or time.monotonic() < self._paused_until:
            self.unchecked.inc()
            return None
        try:
            with anyio.fail_after(self._timeout):
                refusal = await self._hit(strategy, checks)
        except (TimeoutError, OSError, RedisError, StorageError) as exc:
            self._pause(exc)
            self.unchecked.inc()
            return None
        if self._failing:
            self._failing = False
            _log.info("rate_limit.available")
        if refusal is not None:
            self.refused.labels(refusal.policy.limit).inc()
        return refusal

    @staticmethod
    async def _hit(
        strategy: SlidingWindowCounterRateLimiter,
        checks: Sequence[_Check],
    ) -> _Refusal | None:
        for policy, identity in checks:
            if not await strategy.hit(policy.item, policy.limit, *identity):
                stats = await strategy.get_window_stats(policy.item, policy.limit, *identity)
                retry_after = max(1, math.ceil(stats.reset_time - time.time()))
                return _Refusal(policy, min(retry_after, policy.window))
        return None

    def _pause(self, exc: BaseException) -> None:
        now = time.monotonic()
        if now >= self._paused_until:  # once per pause, not once per waiting request
            _log.warning(
                "rate_limit.unavailable",
                error=type(exc).__name__,
                served="unchecked",
                pause_seconds=PAUSE_SECONDS,
            )
        self._paused_until = now + PAUSE_SECONDS
        self._failing = True


class _RateLimit(ASGIMiddleware):
    """Charges the request to its limits; answers ``429`` when one is used up."""

    scopes = (ScopeType.HTTP,)

    def __init__(self, settings: Settings, limiter: _Limiter) -> None:
        self._settings = settings
        self._limiter = limiter
        self._trusted = settings.trusted_proxy_networks
        self._refused_tokens = _policies("refused_tokens", settings.rate_limit_refused_tokens)
        self._writes = _policies("writes", settings.rate_limit_writes)
        self._reads = _policies("reads", settings.rate_limit_reads)
        self._address = _policies("address", settings.rate_limit_address)

    def __deepcopy__(self, _memo: dict[int, object]) -> _RateLimit:
        # one limiter (one Redis pool, one set of metrics) per app
        return self

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        if ROLES_OPT_KEY not in scope["route_handler"].opt:  # health, metrics, docs
            await next_app(scope, receive, send)
            return
        checks = self._checks(scope)
        policy_header = ", ".join(policy.header() for policy, _ in checks)
        refusal = await self._limiter.first_refusal(checks)
        if refusal is not None:
            raise _problem(scope, refusal, policy_header)

        async def send_with_policy(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableScopeHeaders.from_message(message)["RateLimit-Policy"] = policy_header
            await send(message)

        await next_app(scope, receive, send_with_policy)

    def _checks(self, scope: Scope) -> list[_Check]:
        address = _identity("address", client_address(scope, self._trusted))
        verified = verified_principal(scope, self._settings)
        subject = None if verified is None else verified.subject
        principal = address if subject is None else _identity("subject", subject)
        kind = self._reads if cast("HTTPScope", scope)["method"] in _READS else self._writes
        checks = [] if subject is not None else [(p, address) for p in self._refused_tokens]
        checks += [(policy, principal) for policy in kind]
        checks += [(policy, address) for policy in self._address]
        return checks


def _problem(scope: Scope, refusal: _Refusal, policy_header: str) -> Problem:
    policy = refusal.policy
    correlation_id, _ = correlation_of(scope)
    return Problem(
        429,
        "rate_limited",
        f"rate limit {policy.name} reached: at most {policy.item.amount} "
        f"{_WHAT[policy.limit]} every {policy.window} s; retry in {refusal.retry_after} s",
        headers={
            "Retry-After": str(refusal.retry_after),
            "RateLimit": f'"{policy.name}";r=0;t={refusal.retry_after}',
            "RateLimit-Policy": policy_header,
            REQUEST_ID_HEADER: correlation_id,
        },
    )


class RateLimitPlugin(InitPlugin, ReceiveRoutePlugin):
    """Rate limits for an app (nothing when ``rate_limit_enabled`` is false).

    Adds the limiting middleware, opens and closes its Redis pool with the app, and
    documents the ``429`` on every limited route.

    Args:
        settings: The limits, ``trusted_proxies``, ``redis_url`` and ``redis_prefix``.
        registry: Where the limiter's metrics go.
    """

    def __init__(self, settings: Settings, registry: CollectorRegistry) -> None:
        self._enabled = settings.rate_limit_enabled
        self._limiter = _Limiter(settings, registry) if self._enabled else None
        self._settings = settings

    def on_app_init(self, app_config: AppConfig) -> AppConfig:
        if self._limiter is not None:
            # outermost: a refused request costs nothing else
            app_config.middleware.insert(0, _RateLimit(self._settings, self._limiter))
            app_config.on_startup.append(self._limiter.open)
            app_config.on_shutdown.append(self._limiter.close)
        return app_config

    def receive_route(self, route: BaseRoute) -> None:
        if self._limiter is None or not isinstance(route, HTTPRoute):
            return
        for handler in route.route_handlers:
            if ROLES_OPT_KEY in handler.opt:
                handler.responses = {**(handler.responses or {}), 429: RATE_LIMITED_RESPONSE}
