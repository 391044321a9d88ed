"""The denominators: what this machine's servers allow, measured with the same clients."""

from __future__ import annotations

import asyncio
import datetime as dt
import subprocess
import sys
import threading
import time
import uuid
from typing import TYPE_CHECKING

import psycopg
import redis

from flightbook.bench.measure import wait_http
from flightbook.stack.ports import free_port

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = (
    "broker_produce_rate",
    "event_store_save_rate",
    "http_hello_rate",
    "postgres_insert_rate",
    "redis_get_rate",
)


def _threads(count: int, seconds: float, work: Callable[[], Callable[[], None]]) -> float:
    """Run ``work()``'s operation in ``count`` threads for ``seconds``; return ops/s."""
    done = [0] * count
    stop = threading.Event()

    def run(slot: int) -> None:
        operation = work()
        while not stop.is_set():
            operation()
            done[slot] += 1

    threads = [threading.Thread(target=run, args=(n,)) for n in range(count)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    time.sleep(seconds)
    stop.set()
    for thread in threads:
        thread.join()
    return sum(done) / (time.perf_counter() - started)


def postgres_insert_rate(url: str, clients: int, seconds: float) -> float:
    """Single-row INSERT commits per second from ``clients`` connections."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS public.bench_insert (id bigserial, v text)")
    connections: list[psycopg.Connection[tuple[object, ...]]] = []

    def work() -> Callable[[], None]:
        conn = psycopg.connect(url, autocommit=True)
        connections.append(conn)

        def insert() -> None:
            conn.execute("INSERT INTO public.bench_insert (v) VALUES ('x')")

        return insert

    try:
        return _threads(clients, seconds, work)
    finally:
        for conn in connections:
            conn.close()
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("DROP TABLE IF EXISTS public.bench_insert")


def event_store_save_rate(url: str, threads: int, seconds: float) -> float:
    """Eventsourcing ``save()`` of a one-event aggregate per second (Inventory context)."""
    from flightbook.bench.flights import bench_flight
    from flightbook.config.settings import Settings
    from flightbook.eventstore.applications import Inventory

    app = Inventory(Settings(postgres_url=url), pool_size=threads + 1)
    departure = dt.datetime(2031, 1, 1, 10, tzinfo=dt.UTC)

    def work() -> Callable[[], None]:
        def save() -> None:
            app.save(bench_flight(departure, hours=1))

        return save

    try:
        return _threads(threads, seconds, work)
    finally:
        app.close()


def redis_get_rate(url: str, seconds: float) -> float:
    """GETs per second from one redis-py client, one call at a time."""
    client: redis.Redis = redis.Redis.from_url(url)
    client.set("bench:key", "x" * 100)
    try:

        def get() -> None:
            client.get("bench:key")

        return _threads(1, seconds, lambda: get)
    finally:
        client.delete("bench:key")
        client.close()


def broker_produce_rate(bootstrap: str, messages: int, size: int = 500) -> float:
    """Idempotent, acknowledged produce rate of ``size``-byte messages."""
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient
    from confluent_kafka.cimpl import NewTopic

    topic = f"bench.raw.{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=6, replication_factor=1)])[topic].result(30)
    producer = Producer(
        {"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all", "linger.ms": 5}
    )
    value = b"x" * size
    started = time.perf_counter()
    for n in range(messages):
        while True:
            try:
                producer.produce(topic, key=str(n % 64).encode(), value=value)
                break
            except BufferError:
                producer.poll(0.05)
    remaining = producer.flush(60)
    took = time.perf_counter() - started
    admin.delete_topics([topic])
    if remaining:
        raise RuntimeError(f"the broker did not acknowledge {remaining} messages")
    return messages / took


def http_hello_rate(seconds: float, concurrency: int = 64) -> tuple[float, float]:
    """Requests/s of a Litestar+msgspec "hello" on one uvicorn worker; and the load's CPU %.

    The server runs as the APIs do: uvloop (where installed) and httptools.
    """
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "flightbook.bench.hello:app",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
            "--http",
            "httptools",  # the APIs' own server stack (ADR 0021)
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}/hello"
        wait_http(url)
        return asyncio.run(_hammer(url, seconds, concurrency))
    finally:
        server.terminate()
        server.wait(10)


async def _hammer(url: str, seconds: float, concurrency: int) -> tuple[float, float]:
    import psutil

    from flightbook.bench.client import HttpConnection

    me = psutil.Process()
    me.cpu_percent(None)
    port = int(url.split(":")[2].split("/", maxsplit=1)[0])
    path = "/" + url.split("/", 3)[3]
    count = 0
    deadline = time.perf_counter() + seconds
    started = time.perf_counter()

    async def worker() -> None:
        nonlocal count
        connection = HttpConnection("127.0.0.1", port)
        try:
            while time.perf_counter() < deadline:
                response = await connection.request("GET", path)
                if response.status != 200:
                    raise RuntimeError(f"hello answered {response.status}")
                count += 1
        finally:
            await connection.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    took = time.perf_counter() - started
    return count / took, me.cpu_percent(None)
