"""Apply ``migrations/`` in order: PostgreSQL SQL files, then MongoDB index definitions.

Applied migrations are recorded (name and checksum) in the database they changed, so a
second run changes nothing, an edited migration is refused, and a database that has a
migration this code does not know is refused too (it was migrated by newer code).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

import psycopg
import pymongo

from flightbook.config.paths import project_dir
from flightbook.config.settings import require

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from flightbook.config.settings import Settings

__all__ = (
    "Migration",
    "MigrationError",
    "migrate_all",
    "migrate_mongo",
    "migrate_postgres",
    "mongo_client",
)

_PG_TABLE = "public.flightbook_migrations"
_MONGO_COLLECTION = "_migrations"
_LOCK_ID = 0x_F11_9B00C  # pg_advisory_xact_lock key: one migrator at a time


class MigrationError(RuntimeError):
    """The database and the code disagree about migrations, or a migration failed."""


@dataclass(frozen=True)
class Migration:
    name: str
    path: Path

    @property
    def text(self) -> str:
        return self.path.read_text()

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest()


def _load(folder: Path, suffix: str) -> list[Migration]:
    return sorted(
        (Migration(p.name, p) for p in folder.glob(f"*{suffix}") if p.is_file()),
        key=lambda m: m.name,
    )


def migrate_postgres(
    url: str, migrations_dir: Path, *, say: Callable[[str], None] | None = None
) -> list[str]:
    """Apply the PostgreSQL migrations not yet applied; return their names."""
    say = say or (lambda _line: None)
    known = _load(migrations_dir / "postgres", ".sql")
    applied_now: list[str] = []
    with psycopg.connect(url, autocommit=False) as conn:
        with conn.transaction():
            conn.execute(f"SELECT pg_advisory_xact_lock({_LOCK_ID})")
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {_PG_TABLE} (name text PRIMARY KEY, "
                "checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            select = f"SELECT name, checksum FROM {_PG_TABLE}"  # noqa: S608 - a constant
            rows = conn.execute(select).fetchall()
        applied: dict[str, str] = dict(rows)
        _check_agreement(applied, known, "PostgreSQL")
        for migration in known:
            if migration.name in applied:
                continue
            with conn.transaction():
                conn.execute(f"SELECT pg_advisory_xact_lock({_LOCK_ID})")
                already = conn.execute(
                    f"SELECT 1 FROM {_PG_TABLE} WHERE name = %s",  # noqa: S608 - a constant
                    (migration.name,),
                ).fetchone()
                if already:  # another migrator got there first
                    continue
                try:
                    conn.execute(migration.text.encode())
                except psycopg.Error as exc:
                    raise MigrationError(f"{migration.name}: {exc}".strip()) from exc
                conn.execute(
                    f"INSERT INTO {_PG_TABLE} (name, checksum) VALUES (%s, %s)",  # noqa: S608
                    (migration.name, migration.checksum),
                )
            applied_now.append(migration.name)
            say(f"applied postgres/{migration.name}")
    return applied_now


def migrate_mongo(
    database: pymongo.database.Database[dict[str, object]],
    migrations_dir: Path,
    *,
    say: Callable[[str], None] | None = None,
) -> list[str]:
    """Create the MongoDB indexes of migrations not yet applied; return their names."""
    say = say or (lambda _line: None)
    known = _load(migrations_dir / "mongo", ".json")
    record = database[_MONGO_COLLECTION]
    applied = {str(doc["_id"]): str(doc["checksum"]) for doc in record.find()}
    _check_agreement(applied, known, "MongoDB")
    applied_now: list[str] = []
    for migration in known:
        if migration.name in applied:
            continue
        spec = json.loads(migration.text)
        for index in spec["indexes"]:
            database[index["collection"]].create_index(
                [(field, direction) for field, direction in index["keys"]],
                name=index["name"],
                unique=bool(index.get("unique", False)),
            )
        record.update_one(
            {"_id": migration.name}, {"$set": {"checksum": migration.checksum}}, upsert=True
        )
        applied_now.append(migration.name)
        say(f"applied mongo/{migration.name}")
    return applied_now


def _check_agreement(applied: dict[str, str], known: list[Migration], where: str) -> None:
    by_name = {m.name: m for m in known}
    unknown = sorted(set(applied) - set(by_name))
    if unknown:
        raise MigrationError(
            f"{where} has migration {unknown[0]} that this code does not know: "
            "it was migrated by a newer flightbook; upgrade the code instead"
        )
    for name, checksum in applied.items():
        if by_name[name].checksum != checksum:
            raise MigrationError(f"{where} migration {name} was changed after it was applied")


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
