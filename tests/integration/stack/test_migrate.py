"""``flightbook migrate``: idempotent, and refuses to run against a database it does not know."""

from __future__ import annotations

import shutil
from pathlib import Path

import psycopg
import pymongo
import pymongo.database
import pytest

from flightbook.config.settings import Settings
from flightbook.stack.migrate import MigrationError, migrate_mongo, migrate_postgres

pytestmark = pytest.mark.integration

MIGRATIONS = Path(__file__).resolve().parents[3] / "migrations"


def _schema_snapshot(url: str) -> list[tuple[str, ...]]:
    with psycopg.connect(url) as conn:
        return [
            tuple(map(str, row))
            for row in conn.execute(
                "SELECT table_schema, table_name, column_name, data_type "
                "FROM information_schema.columns WHERE table_schema NOT IN "
                "('pg_catalog', 'information_schema') ORDER BY 1, 2, 3"
            )
        ]


def test_a_second_run_applies_nothing_and_changes_nothing(settings: Settings) -> None:
    assert settings.postgres_url is not None
    before = _schema_snapshot(settings.postgres_url)

    applied = migrate_postgres(settings.postgres_url, MIGRATIONS)

    assert applied == []
    assert _schema_snapshot(settings.postgres_url) == before


def test_a_database_with_an_unknown_migration_is_refused(settings: Settings) -> None:
    assert settings.postgres_url is not None
    with psycopg.connect(settings.postgres_url) as conn:
        conn.execute(
            "INSERT INTO public.flightbook_migrations (name, checksum) "
            "VALUES ('9999_from_the_future.sql', 'x')"
        )

    with pytest.raises(MigrationError, match=r"9999_from_the_future\.sql"):
        migrate_postgres(settings.postgres_url, MIGRATIONS)


def test_an_edited_migration_is_refused(settings: Settings, tmp_path: Path) -> None:
    assert settings.postgres_url is not None
    copy = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS, copy)
    first = sorted((copy / "postgres").glob("*.sql"))[0]
    first.write_text(first.read_text() + "\n-- edited\n")

    with pytest.raises(MigrationError, match="changed after it was applied"):
        migrate_postgres(settings.postgres_url, copy)


def test_a_new_migration_is_applied_once(settings: Settings, tmp_path: Path) -> None:
    assert settings.postgres_url is not None
    copy = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS, copy)
    (copy / "postgres" / "9000_probe.sql").write_text("CREATE TABLE public.probe (id int);")

    first = migrate_postgres(settings.postgres_url, copy)
    second = migrate_postgres(settings.postgres_url, copy)

    assert first == ["9000_probe.sql"]
    assert second == []


def test_mongo_indexes_are_created_once(settings: Settings) -> None:
    assert settings.mongo_url is not None
    client: pymongo.MongoClient[dict[str, object]]
    with pymongo.MongoClient(settings.mongo_url) as client:
        database: pymongo.database.Database[dict[str, object]] = client[settings.mongo_database]

        again = migrate_mongo(database, MIGRATIONS)
        indexes = database["bookings"].index_information()

    assert again == []
    # nx-27017 renames indexes and drops sort directions, so compare leading fields only
    assert any(index["key"][0][0] == "customer_id" for index in indexes.values())
