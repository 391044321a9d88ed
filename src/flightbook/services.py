"""Connections to the four servers, built from settings (never at import time, STYLE G5)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pymongo

from flightbook.migrate import migrate_mongo, migrate_postgres
from flightbook.paths import project_dir

if TYPE_CHECKING:
    from collections.abc import Callable

    from flightbook.settings import Settings

__all__ = ("migrate_all", "mongo_client", "require")


def require(value: str | None, setting: str) -> str:
    """The configured URL, or a clear error naming the variable."""
    if not value:
        raise RuntimeError(f"FLIGHTBOOK_{setting.upper()} is not set and no local stack runs")
    return value


def mongo_client(settings: Settings) -> pymongo.MongoClient[dict[str, object]]:
    return pymongo.MongoClient(
        require(settings.mongo_url, "mongo_url"), serverSelectionTimeoutMS=5000, tz_aware=True
    )


def migrate_all(settings: Settings, *, say: Callable[[str], None] | None = None) -> list[str]:
    """Apply every migration to PostgreSQL and MongoDB; return the names applied now."""
    folder = project_dir(settings.project_dir) / "migrations"
    applied = migrate_postgres(require(settings.postgres_url, "postgres_url"), folder, say=say)
    with mongo_client(settings) as client:
        applied += migrate_mongo(client[settings.mongo_database], folder, say=say)
    return applied
