"""The local stack: where key files are made when unset; elsewhere they must be named."""

from __future__ import annotations

import pytest

from flightbook.config.locality import on_local_stack
from flightbook.config.settings import Settings, SettingsError
from flightbook.http.keys import jwks_source, signing_keys_path

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    "env",
    [
        {},
        {"FLIGHTBOOK_HOST": "::1"},
        {"FLIGHTBOOK_HOST": "localhost"},
        {"FLIGHTBOOK_POSTGRES_URL": "postgresql://postgres@127.0.0.1:5432/db"},
        {"FLIGHTBOOK_MONGO_URL": "mongodb://127.0.0.1:27017,localhost:27018/?replicaSet=r"},
        {"FLIGHTBOOK_KAFKA_BOOTSTRAP": "127.0.0.1:9092,[::1]:9093"},
        {"FLIGHTBOOK_REDIS_URL": "redis://localhost:6379/0"},
        {"FLIGHTBOOK_REDIS_URL": "unix:///run/redis.sock"},
    ],
)
def test_these_are_the_local_stack(env: dict[str, str]) -> None:
    settings = Settings.from_env(env)

    assert on_local_stack(settings)
    assert signing_keys_path(settings) == settings.state_path / "signing-keys.json"


@pytest.mark.parametrize(
    "env",
    [
        {"FLIGHTBOOK_HOST": "0.0.0.0"},  # noqa: S104
        {"FLIGHTBOOK_HOST": "10.0.0.5"},
        {"FLIGHTBOOK_POSTGRES_URL": "postgresql://u:p@db:5432/flightbook"},
        {"FLIGHTBOOK_AUDIT_POSTGRES_URL": "postgresql://db.internal/flightbook"},
        {"FLIGHTBOOK_MONGO_URL": "mongodb://127.0.0.1:27017,mongo2:27017/"},
        {"FLIGHTBOOK_MONGO_URL": "mongodb+srv://cluster.example.net/"},
        {"FLIGHTBOOK_KAFKA_BOOTSTRAP": "127.0.0.1:9092,kafka:9092"},
        {"FLIGHTBOOK_REDIS_URL": "redis://cache.internal:6379/0"},
    ],
)
def test_off_the_local_stack_the_key_files_must_be_named(env: dict[str, str]) -> None:
    settings = Settings.from_env(env)

    assert not on_local_stack(settings)
    with pytest.raises(SettingsError, match=r"^FLIGHTBOOK_JWT_JWKS is not set") as refused:
        jwks_source(settings)
    assert "\n" not in str(refused.value)
    with pytest.raises(SettingsError, match=r"^FLIGHTBOOK_JWT_SIGNING_KEYS_FILE is not set"):
        signing_keys_path(settings)
    named = Settings.from_env({**env, "FLIGHTBOOK_JWT_JWKS": "https://id.example/jwks.json"})
    assert jwks_source(named) == "https://id.example/jwks.json"
