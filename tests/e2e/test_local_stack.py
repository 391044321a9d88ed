"""``flightbook stack`` and ``flightbook up`` as a newcomer runs them (own state dir)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import psycopg
import pymongo
import pytest
import redis

from tests.support.processes import free_port
from tests.support.supervised import SupervisedSystem

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
FLIGHTBOOK = [sys.executable, "-m", "flightbook.cli"]


def _env(state_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLIGHTBOOK_")}
    env.update(
        {
            "FLIGHTBOOK_STATE_DIR": str(state_dir),
            "FLIGHTBOOK_PROJECT_DIR": str(ROOT),
            "FLIGHTBOOK_STACK_POSTGRES_PORT": "0",
            "FLIGHTBOOK_STACK_REDIS_PORT": "0",
            "FLIGHTBOOK_STACK_KAFKA_PORT": "0",
            "FLIGHTBOOK_STACK_MONGO_PORT": "0",
            "FLIGHTBOOK_LOG_FORMAT": "json",
            **extra,
        }
    )
    return env


def _flightbook(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*FLIGHTBOOK, *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def _server_pids(state_dir: Path) -> dict[str, int]:
    return {p.stem: json.loads(p.read_text())["pid"] for p in (state_dir / "stack").glob("*.json")}


def _urls(stdout: str) -> dict[str, str]:
    return dict(
        line.split("=", 1) for line in stdout.splitlines() if line.startswith("FLIGHTBOOK_")
    )


def _alive(pid: int) -> bool:
    try:
        status: str = psutil.Process(pid).status()
        return bool(status != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


def _wait_gone(pids: set[int], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(_alive(pid) for pid in pids):
        time.sleep(0.2)


@pytest.fixture
def state_dir(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path
    _flightbook(_env(tmp_path), "stack", "down")  # whatever a failed test left behind


def test_stack_up_is_idempotent_and_down_keeps_the_data(state_dir: Path) -> None:
    """A second ``up`` starts nothing; after ``down`` and ``up`` the data is still there."""
    env = _env(state_dir)

    first = _flightbook(env, "stack", "up")
    assert first.returncode == 0, first.stderr
    pids = _server_pids(state_dir)
    urls = _urls(first.stdout)
    assert set(pids) == {"postgres", "redis", "kafka", "mongo"}

    second = _flightbook(env, "stack", "up")
    assert second.returncode == 0, second.stderr
    assert "started" not in second.stderr
    assert _server_pids(state_dir) == pids

    # the simulated payment provider's database, beside flightbook's on the same server
    assert urls["FLIGHTBOOK_GATEWAY_POSTGRES_URL"] != urls["FLIGHTBOOK_POSTGRES_URL"]
    with psycopg.connect(urls["FLIGHTBOOK_GATEWAY_POSTGRES_URL"]) as conn:
        assert conn.execute("SELECT current_database()").fetchone() == ("flightbook_gateway",)
    with psycopg.connect(urls["FLIGHTBOOK_POSTGRES_URL"], autocommit=True) as conn:
        conn.execute("CREATE TABLE kept (v text)")
        conn.execute("INSERT INTO kept VALUES ('postgres')")
    client: redis.Redis = redis.Redis.from_url(urls["FLIGHTBOOK_REDIS_URL"])
    with client:
        client.set("kept", "redis")
    mongo: pymongo.MongoClient[dict[str, object]]
    with pymongo.MongoClient(urls["FLIGHTBOOK_MONGO_URL"]) as mongo:
        mongo["kept"]["kept"].insert_one({"_id": "mongo"})  # type: ignore[arg-type]

    down = _flightbook(env, "stack", "down")
    assert down.returncode == 0, down.stderr
    assert not any(psutil.pid_exists(pid) for pid in pids.values())

    again = _flightbook(env, "stack", "up")
    assert again.returncode == 0, again.stderr
    urls = _urls(again.stdout)
    with psycopg.connect(urls["FLIGHTBOOK_POSTGRES_URL"]) as conn:
        assert conn.execute("SELECT v FROM kept").fetchall() == [("postgres",)]
    client = redis.Redis.from_url(urls["FLIGHTBOOK_REDIS_URL"])
    with client:
        assert client.get("kept") == b"redis"
    with pymongo.MongoClient(urls["FLIGHTBOOK_MONGO_URL"]) as mongo:
        assert mongo["kept"]["kept"].find_one({"_id": "mongo"}) == {"_id": "mongo"}


def _fixed_ports() -> dict[str, str]:
    return {
        f"FLIGHTBOOK_STACK_{name.upper()}_PORT": str(free_port())
        for name in ("postgres", "redis", "kafka", "mongo")
    }


def test_stack_up_right_after_a_server_was_killed_starts_it_again_on_its_port(
    state_dir: Path,
) -> None:
    """A killed server's connections leave its port in TIME-WAIT, which is not "taken"."""
    env = _env(state_dir, **_fixed_ports())
    first = _flightbook(env, "stack", "up")
    assert first.returncode == 0, first.stderr
    urls = _urls(first.stdout)
    pids = _server_pids(state_dir)
    connections = [psycopg.connect(urls["FLIGHTBOOK_POSTGRES_URL"]) for _ in range(3)]
    clients = [redis.Redis.from_url(urls["FLIGHTBOOK_REDIS_URL"]) for _ in range(3)]
    for client in clients:
        client.ping()
    mongo: pymongo.MongoClient[dict[str, object]]
    with pymongo.MongoClient(urls["FLIGHTBOOK_MONGO_URL"]) as mongo:
        mongo.admin.command("ping")

    for pid in pids.values():
        os.kill(pid, signal.SIGKILL)
    _wait_gone(set(pids.values()), 30)
    for conn in connections:
        conn.close()
    for client in clients:
        client.close()

    again = _flightbook(env, "stack", "up")

    assert again.returncode == 0, again.stderr
    assert _urls(again.stdout) == urls  # the same ports
    assert set(_server_pids(state_dir).values()).isdisjoint(pids.values())
    with psycopg.connect(urls["FLIGHTBOOK_POSTGRES_URL"]) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_a_server_started_again_never_takes_a_port_a_process_is_to_listen_on(
    state_dir: Path,
) -> None:
    """A stack server goes on a free port, but a port free only because the process it is
    promised to has not started yet is not free: that process would fail to bind."""
    first = _flightbook(_env(state_dir), "stack", "up")
    assert first.returncode == 0, first.stderr
    redis_pid = _server_pids(state_dir)["redis"]
    old_port = int(_urls(first.stdout)["FLIGHTBOOK_REDIS_URL"].rsplit(":", 1)[1].split("/")[0])
    os.kill(redis_pid, signal.SIGKILL)
    _wait_gone({redis_pid}, 30)

    # the killed server's port would be taken again (to keep its URL), but it is promised now
    again = _flightbook(_env(state_dir, FLIGHTBOOK_COMMAND_PORT=str(old_port)), "stack", "up")

    assert again.returncode == 0, again.stderr
    new_url = _urls(again.stdout)["FLIGHTBOOK_REDIS_URL"]
    assert f":{old_port}" not in new_url, new_url


def test_postgres_starts_under_a_state_folder_deeper_than_a_unix_socket_path_may_be(
    tmp_path: Path,
) -> None:
    """A Unix socket's path may have 107 bytes; the local PostgreSQL listens by TCP only."""
    deep = tmp_path / ("a-long-folder-name-" * 4) / ("and-another-one-" * 3)
    assert len(str(deep / "stack" / "postgres" / ".s.PGSQL.65535")) > 107
    env = _env(deep)
    try:
        up = _flightbook(env, "stack", "up")

        assert up.returncode == 0, up.stderr
        with psycopg.connect(_urls(up.stdout)["FLIGHTBOOK_POSTGRES_URL"]) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        _flightbook(env, "stack", "down")


def test_a_port_another_program_listens_on_is_refused_in_one_line(state_dir: Path) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        env = _env(state_dir, FLIGHTBOOK_STACK_REDIS_PORT=str(port))

        result = _flightbook(env, "stack", "up")

    assert result.returncode != 0
    assert f"redis: port {port} is taken by another program" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_a_configured_url_is_used_and_nothing_is_started_for_it(
    state_dir: Path, stack_settings: object
) -> None:
    from flightbook.config.settings import Settings

    assert isinstance(stack_settings, Settings)
    assert stack_settings.redis_url is not None
    env = _env(state_dir, FLIGHTBOOK_REDIS_URL=stack_settings.redis_url)

    result = _flightbook(env, "stack", "up")

    assert result.returncode == 0, result.stderr
    assert "redis" not in _server_pids(state_dir)
    assert _urls(result.stdout)["FLIGHTBOOK_REDIS_URL"] == stack_settings.redis_url
    status = _flightbook(env, "stack", "status")
    assert "redis    configured" in status.stdout


def test_a_bad_setting_is_one_line_naming_the_variable(state_dir: Path) -> None:
    result = _flightbook(_env(state_dir, FLIGHTBOOK_QUERY_PORT="abc"), "up")

    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "FLIGHTBOOK_QUERY_PORT" in result.stderr
    assert not (state_dir / "stack").exists()  # nothing was started


@pytest.mark.parametrize("ending", ["SIGINT", "SIGKILL"])
def test_up_serves_both_apis_until_stopped_then_leaves_nothing_running(
    state_dir: Path, ending: str
) -> None:
    """SIGINT stops processes and servers; even a SIGKILLed supervisor leaves no process."""
    system = SupervisedSystem(state_dir)
    try:
        system.start(timeout=120)
        assert system.said(f"listening on {system.commands}"), system.output()
        everything = {p.pid for p in psutil.Process(system.pid).children(recursive=True)}
        servers = set(_server_pids(state_dir).values())
        servers |= {c.pid for pid in servers for c in psutil.Process(pid).children(recursive=True)}
        everything |= servers

        # "running" is said once each answers /health/live; ready follows when each has
        # done its first unit of work
        system.wait_all_ready(within=60)
        assert system.said("exited with status") == [], system.output()

        if ending == "SIGINT":
            assert system.stop() == 0
        else:
            system.kill()
            everything -= servers  # the stack outlives it, by design
            _wait_gone(everything, 30)
    finally:
        system.stop()

    assert not [pid for pid in everything if _alive(pid)]
    if ending == "SIGINT":
        assert _server_pids(state_dir) == {}  # the servers this run started are stopped too
