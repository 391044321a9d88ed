"""The signing secret: the public default or a short one only on the local stack."""

from __future__ import annotations

import pytest

from flightbook.config.secrets import (
    DEVELOPMENT_SECRET,
    on_local_stack,
    require_signing_secret,
)
from flightbook.config.settings import Settings, SettingsError

pytestmark = pytest.mark.unit

REAL = "r" * 32


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
def test_on_the_local_stack_the_default_secret_is_accepted(env: dict[str, str]) -> None:
    settings = Settings.from_env(env)

    assert on_local_stack(settings)
    require_signing_secret(settings)


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
def test_off_the_local_stack_the_default_or_a_short_secret_is_refused(
    env: dict[str, str],
) -> None:
    for secret in (DEVELOPMENT_SECRET, "x", "y" * 31):
        settings = Settings.from_env({**env, "FLIGHTBOOK_JWT_SECRET": secret})

        with pytest.raises(SettingsError, match=r"^FLIGHTBOOK_JWT_SECRET ") as refused:
            require_signing_secret(settings)
        assert "\n" not in str(refused.value)
        assert secret not in str(refused.value)  # the message never shows the secret

    require_signing_secret(Settings.from_env({**env, "FLIGHTBOOK_JWT_SECRET": REAL}))
