"""Shared fixtures: one local stack per test session, isolated names per test.

The session starts the local stack (``flightbook.stack``) under
``.flightbook/test-stack`` on free ports, unless ``FLIGHTBOOK_*_URL`` variables point
at servers already; it stops exactly what it started. Each test that asks for
``settings`` gets its own PostgreSQL database (copied from a migrated template),
MongoDB database, Redis key prefix and Kafka topic prefix, so tests cannot see each
other's data.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import msgspec
import psutil
import psycopg
import pymongo
import pytest
import redis

from flightbook.config.settings import Settings
from flightbook.eventstore.applications import EventStore
from flightbook.eventstore.keks import FileKeyEncryptionKeys
from flightbook.http.keys import SigningKeys
from flightbook.http.tokens import mint_token
from flightbook.stack.launcher import LocalStack, settings_urls
from flightbook.stack.migrate import migrate_all, migrate_postgres
from tests.support.api import Headers
from tests.support.writeside import WriteSide

ROOT = Path(__file__).resolve().parents[1]
TEST_STACKS = ROOT / ".flightbook" / "test-stack"
# one stack per test session, so sessions running side by side never stop each other's servers
TEST_STATE_DIR = TEST_STACKS / str(os.getpid())


def _base_settings() -> Settings:
    env = {k: v for k, v in os.environ.items() if k.endswith(("_URL", "_BOOTSTRAP"))}
    env = {k: v for k, v in env.items() if k.startswith("FLIGHTBOOK_")}
    return Settings.from_env(
        {
            **env,
            "FLIGHTBOOK_STATE_DIR": str(TEST_STATE_DIR),
            # the session's key-encryption key, outside every database (made by stack_settings)
            "FLIGHTBOOK_KEK_FILE": str(TEST_STATE_DIR / "kek.json"),
            # the session's token signing keys and their public half (made by stack_settings)
            "FLIGHTBOOK_JWT_SIGNING_KEYS_FILE": str(TEST_STATE_DIR / "signing-keys.json"),
            "FLIGHTBOOK_JWT_JWKS": str(TEST_STATE_DIR / "signing-keys.jwks.json"),
            "FLIGHTBOOK_STACK_POSTGRES_PORT": "0",
            "FLIGHTBOOK_STACK_REDIS_PORT": "0",
            "FLIGHTBOOK_STACK_KAFKA_PORT": "0",
            "FLIGHTBOOK_STACK_MONGO_PORT": "0",
            "FLIGHTBOOK_KAFKA_SESSION_TIMEOUT_MS": "2000",
            # the APIs' ops servers (/metrics) on any free port: sessions run side by side
            "FLIGHTBOOK_COMMAND_OPS_PORT": "0",
            "FLIGHTBOOK_QUERY_OPS_PORT": "0",
            "FLIGHTBOOK_PROJECT_DIR": str(ROOT),
            "FLIGHTBOOK_LOG_FORMAT": "json",
            # high enough never to refuse the suite; the rate-limit tests set their own
            "FLIGHTBOOK_RATE_LIMIT_WRITES": "100000/minute",
            "FLIGHTBOOK_RATE_LIMIT_READS": "100000/minute",
            "FLIGHTBOOK_RATE_LIMIT_ADDRESS": "100000/minute",
            "FLIGHTBOOK_RATE_LIMIT_REFUSED_TOKENS": "100000/minute",
        }
    )


@pytest.fixture(scope="session")
def stack_settings() -> Iterator[Settings]:
    """Settings whose URLs point at the session's servers (started here when not configured)."""
    _remove_abandoned_stacks()
    base = _base_settings()
    assert base.kek_file is not None
    FileKeyEncryptionKeys.create(base.kek_file)
    assert base.jwt_signing_keys_file is not None
    SigningKeys.create(base.jwt_signing_keys_file, keep_seconds=base.jwt_max_ttl_seconds)
    stack = LocalStack(base)
    states = stack.up()
    started = [name for name, state in states.items() if state.started]
    try:
        yield base.with_urls(**settings_urls(states))
    finally:
        if started:
            stack.down(started)
        shutil.rmtree(TEST_STATE_DIR, ignore_errors=True)


def _remove_abandoned_stacks() -> None:
    """Stop and delete the stacks of test sessions that died without cleaning up."""
    if not TEST_STACKS.is_dir():
        return
    for folder in TEST_STACKS.iterdir():
        if not folder.name.isdigit() or psutil.pid_exists(int(folder.name)):
            continue
        env = {"FLIGHTBOOK_STATE_DIR": str(folder)}
        LocalStack(Settings.from_env(env)).down()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def test_stack(stack_settings: Settings) -> LocalStack:
    """The session's stack, for fault tests that stop and start its servers."""
    return LocalStack(stack_settings)


@pytest.fixture(scope="session")
def postgres_url(stack_settings: Settings) -> str:
    """A migrated database shared by the session (prefer ``settings`` for isolation)."""
    assert stack_settings.postgres_url is not None
    url = _database_url(stack_settings.postgres_url, "flightbook_shared")
    _create_database(stack_settings.postgres_url, "flightbook_shared")
    migrate_postgres(url, ROOT / "migrations")
    return url


@pytest.fixture(scope="session")
def template_database(stack_settings: Settings) -> str:
    """Name of a migrated database that each test's database is copied from."""
    assert stack_settings.postgres_url is not None
    name = "flightbook_template"
    _create_database(stack_settings.postgres_url, name)
    migrate_postgres(_database_url(stack_settings.postgres_url, name), ROOT / "migrations")
    return name


@pytest.fixture
def settings(stack_settings: Settings, template_database: str) -> Iterator[Settings]:
    """Settings for one test: its own database, Mongo database, Redis prefix and topics."""
    assert stack_settings.postgres_url is not None
    tag = uuid.uuid4().hex[:10]
    database = f"t_{tag}"
    _create_database(stack_settings.postgres_url, database, template=template_database)
    isolated = msgspec.structs.replace(
        stack_settings,
        postgres_url=_database_url(stack_settings.postgres_url, database),
        gateway_postgres_url=None,  # the simulated provider's tables in the test's database too
        mongo_database=f"t_{tag}",
        redis_prefix=f"t_{tag}:",
        topic_prefix=f"t_{tag}",
    )
    migrate_all(isolated)  # Mongo indexes (PostgreSQL came migrated from the template)
    yield isolated
    with psycopg.connect(
        _database_url(stack_settings.postgres_url, "postgres"), autocommit=True
    ) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


@pytest.fixture
def isolated_schema(postgres_url: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL schema for one test, dropped afterwards."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{name}"')
    yield name
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA "{name}" CASCADE')


def _database_url(url: str, database: str) -> str:
    base, _, query = url.partition("?")
    return base.rsplit("/", 1)[0] + f"/{database}" + (f"?{query}" if query else "")


def _create_database(url: str, name: str, *, template: str | None = None) -> None:
    with psycopg.connect(_database_url(url, "postgres"), autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            return
        suffix = f' TEMPLATE "{template}"' if template else ""
        conn.execute(f'CREATE DATABASE "{name}"{suffix}')


@pytest.fixture
def write_side(settings: Settings) -> Iterator[WriteSide]:
    """The applications on the test's own database."""
    assert settings.postgres_url is not None
    apps = WriteSide(EventStore(settings))
    yield apps
    apps.store.close()


@pytest.fixture
def mongo(settings: Settings) -> Iterator[pymongo.database.Database[dict[str, object]]]:
    """The test's own MongoDB database, dropped afterwards."""
    client: pymongo.MongoClient[dict[str, object]] = pymongo.MongoClient(
        settings.mongo_url, tz_aware=True
    )
    with client:
        yield client[settings.mongo_database]
        client.drop_database(settings.mongo_database)


@pytest.fixture
def cache(settings: Settings) -> Iterator[redis.Redis]:
    """A Redis client; the test's own keys are deleted afterwards."""
    assert settings.redis_url is not None
    client = redis.Redis.from_url(settings.redis_url)
    with client:
        yield client
        for key in client.scan_iter(match=settings.redis_prefix + "*"):
            client.delete(key)


@pytest.fixture
def auth(settings: Settings) -> Headers:
    """``auth("alice", "customer")`` -> headers with a bearer token for alice as a customer."""

    def headers(subject: str, *roles: str, **extra: str) -> dict[str, str]:
        token = mint_token(settings, subject=subject, roles=roles)
        return {"Authorization": f"Bearer {token}", **extra}

    return headers
