"""Composition: build each process from settings with real adapters (STYLE G5).

The files in ``commands/``, ``queries/`` and ``projections/`` call :func:`run` with their
process's name and nothing else; the names, composition roots and ports are the table of
:mod:`flightbook.config.processes`.
"""

from __future__ import annotations

import importlib.util
import sys
from typing import TYPE_CHECKING, Any, Literal, NoReturn, Protocol

import msgspec
import psycopg
import pymongo
import redis.asyncio
import structlog
from prometheus_client import CollectorRegistry, ProcessCollector

from flightbook.commands.http import create_command_app
from flightbook.config.processes import process
from flightbook.config.settings import PREFIX, Settings, SettingsError, require
from flightbook.queries.http import create_query_app
from flightbook.runtime.logs import configure_logging
from flightbook.runtime.loop import run_until_signalled
from flightbook.runtime.ops import OpsServer

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable

    from litestar import Litestar

    from flightbook.audit.sealer_process import SealerProcess
    from flightbook.config.processes import ProcessSpec
    from flightbook.identity.service import IdentityService
    from flightbook.projections.worker import ProjectionWorker
    from flightbook.queries.ports import ReadModels
    from flightbook.relay.process import RelayProcess
    from flightbook.saga.process import SagaProcess

__all__ = (
    "Worker",
    "build_auditor",
    "build_command_api",
    "build_identity_api",
    "build_identity_service",
    "build_projection_worker",
    "build_query_api",
    "build_relay",
    "build_saga",
    "load_settings",
    "run",
    "serve_http",
)


class Worker(Protocol):
    """A long-running process that is not an HTTP API: its ops server shows these."""

    @property
    def registry(self) -> CollectorRegistry: ...

    def ready(self) -> bool: ...

    def run(self) -> None: ...

    def stop(self) -> None: ...


def load_settings(process_name: str) -> Settings:
    """Settings from the environment, logging configured; exit 2 with one line if bad."""
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        _die(process_name, str(exc), 2)
    configure_logging(
        log_format=settings.log_format,
        level=settings.log_level,
        process=process_name,
    )
    return settings


def _die(process_name: str, message: str, code: int) -> NoReturn:
    print(f"{process_name}: error: {message}", file=sys.stderr, flush=True)
    raise SystemExit(code)


def postgres_check(url: str) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        async with await psycopg.AsyncConnection.connect(url, connect_timeout=2) as conn:
            await conn.execute("SELECT 1")
        return True

    return check


def mongo_check(url: str) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        client: pymongo.AsyncMongoClient[dict[str, object]] = pymongo.AsyncMongoClient(
            url, serverSelectionTimeoutMS=2000
        )
        try:
            await client.admin.command("ping")
        finally:
            await client.close()
        return True

    return check


def redis_check(url: str) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        client = redis.asyncio.Redis.from_url(url, socket_timeout=2)
        try:
            return bool(await client.ping())
        finally:
            await client.aclose()

    return check


def _registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)  # CPU, memory (RSS), open files of this process
    return registry


# -- the HTTP APIs ----------------------------------------------------------------------------


def build_command_api(settings: Settings, *, registry: CollectorRegistry | None = None) -> Litestar:
    """The command API on the three applications; its pools open and close with the app.

    Its metrics go to ``registry`` (served on the ops port by :func:`run`).
    """
    import anyio.to_thread
    from psycopg_pool import ConnectionPool

    from flightbook.commands.idempotency import PostgresIdempotencyKeys
    from flightbook.commands.service import CommandService
    from flightbook.eventstore.applications import EventStore
    from flightbook.eventstore.pii import build_vault

    postgres_url = require(settings.postgres_url, "postgres_url")
    # while PostgreSQL is away a command waits this long at most, then answers 503
    wait = settings.api_postgres_wait_seconds
    store = EventStore(settings, pool_timeout=wait)
    pool = ConnectionPool(
        postgres_url, min_size=1, max_size=10, open=False, name="command-api", timeout=wait
    )
    service = CommandService(
        store=store,
        keys=PostgresIdempotencyKeys(pool),
        vault=build_vault(settings, pool),
        settings=settings,
    )

    def open_pool() -> None:
        pool.open(wait=False)

    async def close_all() -> None:
        def close() -> None:
            pool.close()
            store.close()

        await anyio.to_thread.run_sync(close)

    return create_command_app(
        settings,
        checks={"postgres": postgres_check(postgres_url)},
        registry=registry or _registry(),
        service=service,
        on_startup=[open_pool],
        on_shutdown=[close_all],
    )


def build_query_api(settings: Settings, *, registry: CollectorRegistry | None = None) -> Litestar:
    """The query API on MongoDB and Redis; its clients open and close with the app.

    Its metrics go to ``registry`` (served on the ops port by :func:`run`).
    """
    from contextlib import asynccontextmanager

    from flightbook.queries.mongo import mongo_redis_read_models

    mongo_url = require(settings.mongo_url, "mongo_url")
    redis_url = require(settings.redis_url, "redis_url")
    checks = {"mongo": mongo_check(mongo_url), "redis": redis_check(redis_url)}

    @asynccontextmanager
    async def read_models() -> AsyncIterator[ReadModels]:
        mongo: pymongo.AsyncMongoClient[dict[str, Any]] = pymongo.AsyncMongoClient(
            mongo_url, tz_aware=True, serverSelectionTimeoutMS=5000
        )
        cache = redis.asyncio.Redis.from_url(redis_url, socket_timeout=2)
        models = mongo_redis_read_models(
            mongo[settings.mongo_database], cache, redis_prefix=settings.redis_prefix
        )
        try:
            yield models
        finally:
            await models.changes.aclose()
            await cache.aclose()
            await mongo.close()

    return create_query_app(
        settings, checks=checks, registry=registry or _registry(), read_models=read_models
    )


def build_identity_service(
    settings: Settings, *, open_pool: bool = True
) -> tuple[IdentityService, Callable[[], None]]:
    """The identity use cases on PostgreSQL, Redis, the vault and the signing keys.

    Also a function that closes what they opened (the API and ``flightbook accounts``
    share this).
    """
    import redis as sync_redis
    from psycopg_pool import ConnectionPool

    from flightbook.eventstore.pii import build_vault
    from flightbook.http.keys import signing_keys_from_settings
    from flightbook.http.tokens import TokenSigner
    from flightbook.identity.accounts import PostgresAccounts
    from flightbook.identity.passwords import PasswordHasher
    from flightbook.identity.service import IdentityService
    from flightbook.identity.sessions import SessionStore
    from flightbook.identity.throttle import LoginThrottle

    postgres_url = require(settings.postgres_url, "postgres_url")
    redis_url = require(settings.redis_url, "redis_url")
    keys = signing_keys_from_settings(settings)
    wait = settings.api_postgres_wait_seconds
    pool = ConnectionPool(
        postgres_url, min_size=1, max_size=10, open=open_pool, name="identity", timeout=wait
    )
    cache = sync_redis.Redis.from_url(redis_url, socket_timeout=2)
    service = IdentityService(
        accounts=PostgresAccounts(pool),
        sessions=SessionStore(
            pool,
            cache,
            redis_prefix=settings.redis_prefix,
            lifetime_seconds=settings.identity_session_ttl_seconds,
        ),
        throttle=LoginThrottle(
            cache,
            prefix=settings.redis_prefix,
            failures_per_account=settings.identity_failures_per_account,
            failures_per_address=settings.identity_failures_per_address,
            window_seconds=settings.identity_lockout_seconds,
        ),
        vault=build_vault(settings, pool),
        hasher=PasswordHasher(
            time_cost=settings.identity_argon2_time_cost,
            memory_kib=settings.identity_argon2_memory_kib,
        ),
        signer=TokenSigner(keys, issuer=settings.jwt_issuer, audience=settings.jwt_audience),
        access_ttl_seconds=settings.identity_access_ttl_seconds,
    )

    def close() -> None:
        pool.close()
        cache.close()

    return service, close


def build_identity_api(
    settings: Settings, *, registry: CollectorRegistry | None = None
) -> Litestar:
    """The identity API; its pools open and close with the app.

    It signs with the private key file and verifies its own tokens with the public half
    (unless ``FLIGHTBOOK_JWT_JWKS`` names another source).
    """
    import anyio.to_thread

    from flightbook.http.keys import signing_keys_from_settings
    from flightbook.identity.http import create_identity_app

    if not settings.jwt_jwks:
        public = signing_keys_from_settings(settings).public_path
        settings = msgspec.structs.replace(settings, jwt_jwks=str(public))
    service, close = build_identity_service(settings, open_pool=False)

    def open_pool() -> None:
        service.accounts.pool.open(wait=False)

    async def close_all() -> None:
        await anyio.to_thread.run_sync(close)

    return create_identity_app(
        settings,
        checks={
            "postgres": postgres_check(require(settings.postgres_url, "postgres_url")),
            "redis": redis_check(require(settings.redis_url, "redis_url")),
        },
        registry=registry or _registry(),
        service=service,
        on_startup=[open_pool],
        on_shutdown=[close_all],
    )


def serve_http(app: Litestar, *, host: str, port: int, process: str) -> None:
    """Serve ``app`` until SIGINT/SIGTERM (uvicorn drains in-flight requests first)."""
    import uvicorn

    structlog.get_logger().info("http.listening", url=f"http://{host}:{port}", process=process)
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_config=None,  # its loggers go to the root handler: structlog's, scrubbed
        access_log=False,  # the APIs log one line per request themselves
        server_header=False,  # no "server: uvicorn"
        timeout_graceful_shutdown=10,
        loop=_event_loop(),
        http="httptools",  # ADR 0021
    )


def _event_loop() -> Literal["uvloop", "asyncio"]:
    """The event loop: uvloop where it is installed (not on Windows), else asyncio's (ADR 0021)."""
    return "uvloop" if importlib.util.find_spec("uvloop") is not None else "asyncio"


# -- the workers ------------------------------------------------------------------------------


def build_saga(settings: Settings) -> tuple[SagaProcess, Callable[[], None]]:
    """The saga process and a function that closes what it opened."""
    from psycopg_pool import ConnectionPool

    from flightbook.eventstore.applications import EventStore
    from flightbook.eventstore.pii import build_vault
    from flightbook.payments.budget import TimeoutBudget
    from flightbook.payments.resilience import ResilientGateway
    from flightbook.payments.simulated import SimulatedGateway
    from flightbook.saga.jobs import PostgresJobQueue
    from flightbook.saga.process import SagaProcess

    url = require(settings.postgres_url, "postgres_url")
    size = settings.saga_workers + 2
    store = EventStore(settings, pool_size=size)
    pool = ConnectionPool(url, min_size=1, max_size=size, open=True)
    gateway_url = require(settings.gateway_database(), "gateway_postgres_url")
    # the provider stands in for an external system: on its own database where it has one
    gateway_pool = (
        pool
        if gateway_url == url
        else ConnectionPool(gateway_url, min_size=1, max_size=size, open=True, name="gateway")
    )
    simulated = SimulatedGateway(
        gateway_pool,
        latency=settings.gateway_latency_seconds,
        timeout=settings.gateway_timeout_seconds,
    )
    simulated.ensure_schema()
    budget = TimeoutBudget(
        limit=settings.payment_timeouts_per_customer,
        window=settings.payment_timeout_window_seconds,
    )
    gateway = ResilientGateway(
        simulated,
        max_elapsed=settings.gateway_max_elapsed_seconds,
        # twice a payer's budget: no customer alone can open the breaker (ADR 0016)
        breaker_fail_max=max(10, settings.saga_workers * 2, 2 * budget.limit),
        budget=budget,
    )
    saga = SagaProcess(
        store=store,
        gateway=gateway,
        vault=build_vault(settings, pool),  # opens the sealed payment tokens
        queue=PostgresJobQueue(pool),
        postgres_url=url,
        hold_seconds=settings.hold_seconds,
        workers=settings.saga_workers,
        poll_seconds=settings.saga_poll_seconds,
        linger_seconds=settings.saga_linger_seconds,
    )

    def close() -> None:
        store.close()
        if gateway_pool is not pool:
            gateway_pool.close()
        pool.close()

    return saga, close


def build_relay(settings: Settings) -> tuple[RelayProcess, Callable[[], None]]:
    """The relay process (connected to the broker once) and a function that closes it."""
    from psycopg_pool import ConnectionPool

    from flightbook.eventstore.applications import EventStore
    from flightbook.eventstore.contexts import CONTEXTS
    from flightbook.relay.process import KafkaBroker, RelayProcess
    from flightbook.relay.relay import PostgresCheckpoints

    url = require(settings.postgres_url, "postgres_url")
    bootstrap = require(settings.kafka_bootstrap, "kafka_bootstrap")
    store = EventStore(settings, pool_size=2)
    pool = ConnectionPool(url, min_size=1, max_size=3, open=True, name="relay")
    relay = RelayProcess(
        store=store,
        checkpoints=PostgresCheckpoints(pool),
        broker=KafkaBroker(
            bootstrap,
            topics=[spec.topic(settings.topic_prefix) for spec in CONTEXTS],
            partitions=settings.kafka_partitions,
        ),
        postgres_url=url,
        topic_prefix=settings.topic_prefix,
        batch_size=settings.relay_batch_size,
        poll_seconds=settings.relay_poll_seconds,
        registry=_registry(),
    )
    relay.connect()  # topics and producer before the health endpoint answers (retried if not)

    def close() -> None:
        store.close()
        pool.close()

    return relay, close


def build_projection_worker(
    settings: Settings, name: str
) -> tuple[ProjectionWorker, Callable[[], None]]:
    """A projection worker (``bookings`` or ``flights``) and a function that closes its clients."""
    from confluent_kafka import Consumer

    from flightbook.eventstore.contexts import context
    from flightbook.projections.kafka import consumer_config
    from flightbook.projections.services import open_services
    from flightbook.projections.worker import ProjectionWorker

    bootstrap = require(settings.kafka_bootstrap, "kafka_bootstrap")
    services = open_services(settings, name=f"projection-{name}")
    try:
        services.progress.ensure_indexes()
        engine = services.engine(name)
    except Exception:
        services.close()
        raise
    config = consumer_config(
        bootstrap,
        group=f"{settings.topic_prefix}.projection.{name}",
        session_timeout_ms=settings.kafka_session_timeout_ms,
        client_id=f"flightbook-projection-{name}",
    )
    worker = ProjectionWorker(
        engine=engine,
        progress=services.progress,
        reader=services.reader,
        consumer_factory=lambda: Consumer(config),
        topic=context(engine.kind.context).topic(settings.topic_prefix),
        registry=_registry(),
        batch_size=settings.projection_batch_size,
        poll_seconds=settings.projection_poll_seconds,
        broker_check_seconds=settings.projection_broker_check_seconds,
        stall_seconds=settings.projection_stall_seconds,
        analytics_seconds=settings.projection_analytics_seconds,
    )
    return worker, services.close


def build_auditor(settings: Settings) -> tuple[SealerProcess, Callable[[], None]]:
    """The auditor process (seals the hash chain) and a function that closes it."""
    from flightbook.audit.sealer_process import SealerProcess

    sealer = SealerProcess(
        require(settings.postgres_url, "postgres_url"), interval=settings.audit_seal_seconds
    )
    return sealer, sealer.close


_WORKERS: dict[str, Callable[[Settings], tuple[Worker, Callable[[], None]]]] = {
    "saga": build_saga,
    "relay": build_relay,
    "bookings-projection": lambda settings: build_projection_worker(settings, "bookings"),
    "flights-projection": lambda settings: build_projection_worker(settings, "flights"),
    "auditor": build_auditor,
}
_APIS: dict[str, Callable[..., Litestar]] = {
    "command-api": build_command_api,
    "query-api": build_query_api,
    "identity-api": build_identity_api,
}
_VAULT_PROCESSES = frozenset(
    {"command-api", "identity-api", "saga", "bookings-projection", "flights-projection"}
)
"""The processes that open or seal personal data: they need the key-encryption key file."""


def _require_kek(process_name: str, settings: Settings) -> None:
    """Refuse to start, before connecting anywhere, without a usable KEK file (exit 2)."""
    from flightbook.eventstore.keks import keks_from_settings

    try:
        keks_from_settings(settings)
    except SettingsError as exc:
        _die(process_name, str(exc), 2)


def _require_token_keys(process_name: str, settings: Settings) -> None:
    """The keys an API needs before it listens (ADR 0019).

    Public keys to verify tokens; for the identity service, its private signing keys.

    Raises:
        SettingsError: one line naming the setting.
    """
    from flightbook.http.keys import (
        KeyFileError,
        jwks_source,
        public_keys_at,
        signing_keys_from_settings,
    )

    if process_name == "identity-api":
        try:
            signing_keys_from_settings(settings).current()
        except KeyFileError as exc:
            raise SettingsError(f"{PREFIX}JWT_SIGNING_KEYS_FILE: {exc}") from None
        return  # it verifies with its own public keys
    try:
        public_keys_at(jwks_source(settings))
    except KeyFileError as exc:
        raise SettingsError(f"{PREFIX}JWT_JWKS: {exc}") from None


def _run_api(spec: ProcessSpec, settings: Settings, port: int) -> None:
    """An API on its public port, its metrics (and health) on its ops port."""
    try:
        _require_token_keys(spec.name, settings)
    except SettingsError as exc:
        _die(spec.name, str(exc), 2)
    registry = _registry()
    try:
        app = _APIS[spec.name](settings, registry=registry)
    except SettingsError as exc:  # e.g. no key-encryption key file (FLIGHTBOOK_KEK_FILE)
        _die(spec.name, str(exc), 2)
    ops_port = int(getattr(settings, spec.ops_port_setting)) if spec.ops_port_setting else 0
    ops = OpsServer(
        host=settings.host, port=ops_port, registry=registry, ready=_answers(settings.host, port)
    ).start()
    structlog.get_logger().info(
        "ops.listening", url=f"http://{settings.host}:{ops.port}", process=spec.name
    )
    try:
        serve_http(app, host=settings.host, port=port, process=spec.name)
    finally:
        ops.stop()


def _answers(host: str, port: int) -> Callable[[], bool]:
    """Whether the API's own ``/health/ready`` answers 200 (the ops port says the same)."""
    import urllib.error
    import urllib.request

    local = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)  # noqa: S104
    url = f"http://{f'[{local}]' if ':' in local else local}:{port}/health/ready"

    def ready() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=3) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    return ready


def run(process_name: str) -> None:
    """Run the process called ``process_name`` until SIGTERM/SIGINT (a composition root's job)."""
    spec = process(process_name)
    settings = load_settings(spec.name)
    port = int(getattr(settings, spec.port_setting)) if spec.port_setting else 0
    if spec.name in _VAULT_PROCESSES:
        _require_kek(spec.name, settings)
    if spec.name in _APIS:
        _run_api(spec, settings, port)
        return
    try:
        worker, close = _WORKERS[spec.name](settings)
    except SettingsError as exc:  # e.g. no key-encryption key file (FLIGHTBOOK_KEK_FILE)
        _die(spec.name, str(exc), 2)
    ops = OpsServer(host=settings.host, port=port, registry=worker.registry, ready=worker.ready)
    ops.start()
    try:
        run_until_signalled(spec.name, worker.run, worker.stop)
    finally:
        ops.stop()
        close()
