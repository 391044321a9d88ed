"""Load phases over HTTP: bookings to CONFIRMED, a hot flight, and the read path."""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import psutil

from flightbook.bench.client import HttpConnection
from flightbook.bench.outcomes import outcome
from flightbook.http.tokens import mint_token

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from flightbook.bench.system import SystemUnderTest
    from flightbook.config.settings import Settings

__all__ = ("BookingLoad", "LoadResult", "ReadLoad", "fare_code", "schedule_flights")

_DEPARTURE = "2031-06-0{day}T10:00:00Z"


@dataclass
class LoadResult:
    """What one phase saw."""

    completed: int = 0
    failed: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)  # command (or request) latency
    end_to_end: list[float] = field(default_factory=list)  # request -> visible CONFIRMED
    booking_ids: list[str] = field(default_factory=list)
    positions: list[str] = field(default_factory=list)
    loadgen_cpu_percent: float = 0.0
    extra: dict[str, list[float]] = field(default_factory=dict)


def _drive(
    client: Callable[[int, float, LoadResult], Awaitable[None]],
    clients: int,
    seconds: float,
    result: LoadResult,
) -> LoadResult:
    """Run ``clients`` copies of ``client`` for ``seconds``; note the load generator's CPU."""

    async def run() -> None:
        deadline = time.perf_counter() + seconds
        await asyncio.gather(*(client(n, deadline, result) for n in range(clients)))

    me = psutil.Process()
    me.cpu_percent(None)
    started = time.perf_counter()
    asyncio.run(run())
    result.seconds = time.perf_counter() - started
    result.loadgen_cpu_percent = me.cpu_percent(None)
    return result


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def fare_code(n: int) -> str:
    """The code of a bench flight's ``n``-th fare: ``Y``, then ``Y1``, ``Y2``, ..."""
    return f"Y{n}" if n else "Y"


async def _schedule(
    command_url: str, settings: Settings, count: int, seats: int, fares: int
) -> list[str]:
    ops = mint_token(settings, subject="bench-ops", roles=["ops"], ttl_seconds=7200)
    connection = HttpConnection("127.0.0.1", _port(command_url))
    flights = []
    try:
        for n in range(count):
            body = {
                "flight_number": f"FB{100 + n}",
                "origin": "LHR",
                "destination": "JFK",
                "departure": _DEPARTURE.format(day=1 + n % 9),
                "arrival": _DEPARTURE.format(day=1 + n % 9).replace("10:00", "18:00"),
                "fares": [
                    {
                        "code": fare_code(f),
                        "cabin": "economy",
                        "price": {"amount": 45000, "currency": "EUR"},
                        "seats": seats,
                        "refundable": True,
                    }
                    for f in range(fares)
                ],
            }
            response = await connection.request(
                "POST",
                "/flights",
                body=json.dumps(body).encode(),
                headers={"Authorization": f"Bearer {ops}"},
            )
            if response.status != 201:
                raise RuntimeError(f"POST /flights answered {response.status}: {response.body!r}")
            flights.append(json.loads(response.body)["flight_id"])
    finally:
        await connection.close()
    return flights


def schedule_flights(
    command_url: str, settings: Settings, count: int, seats: int, *, fares: int = 1
) -> list[str]:
    """Schedule ``count`` flights; return their ids.

    Each has ``fares`` economy fares (named by :func:`fare_code`) of ``seats`` seats.
    """
    return asyncio.run(_schedule(command_url, settings, count, seats, fares))


class BookingLoad:
    """``clients`` customers booking in a loop, each waiting for its outcome on the query API.

    ``wait`` is how a client learns it (:mod:`flightbook.bench.outcomes`): pushed, or polled.
    """

    def __init__(
        self,
        *,
        settings: Settings,
        command_url: str,
        query_url: str,
        flights: list[str],
        clients: int,
        seconds: float,
        wait: str = "push",
    ) -> None:
        self._settings = settings
        self._wait = wait
        self._command_port = _port(command_url)
        self._query_port = _port(query_url)
        self._flights = flights
        self._clients = clients
        self._seconds = seconds

    @classmethod
    def against(
        cls,
        system: SystemUnderTest,
        *,
        flights: list[str],
        clients: int,
        seconds: float,
        wait: str = "push",
    ) -> BookingLoad:
        """The load on the command and query API of a running system."""
        return cls(
            settings=system.settings,
            command_url=system.url("command-api"),
            query_url=system.url("query-api"),
            flights=flights,
            clients=clients,
            seconds=seconds,
            wait=wait,
        )

    def run(self) -> LoadResult:
        return _drive(self._client, self._clients, self._seconds, LoadResult())

    async def _client(self, number: int, deadline: float, result: LoadResult) -> None:
        token = mint_token(
            self._settings, subject=f"bench-customer-{number}", roles=["customer"], ttl_seconds=7200
        )
        auth = {"Authorization": f"Bearer {token}"}
        commands = HttpConnection("127.0.0.1", self._command_port)
        queries = HttpConnection("127.0.0.1", self._query_port)
        rng = random.Random(number)
        try:
            while time.perf_counter() < deadline:
                body = json.dumps(
                    {
                        "flight_id": rng.choice(self._flights),
                        "fare": "Y",
                        "payment_token": "tok_ok",
                        "passengers": [{"name": "Bench Passenger", "email": "bench@example.com"}],
                    }
                ).encode()
                sent = time.perf_counter()
                response = await commands.request(
                    "POST",
                    "/bookings",
                    body=body,
                    headers={**auth, "Idempotency-Key": str(uuid.uuid4())},
                )
                if response.status != 202:
                    result.failed += 1
                    continue
                result.latencies.append(time.perf_counter() - sent)
                booking_id = json.loads(response.body)["booking_id"]
                position = response.headers.get("x-flightbook-position", "")
                result.booking_ids.append(booking_id)
                result.positions.append(position)
                final = await outcome(
                    self._wait,
                    queries,
                    auth=auth,
                    booking_id=booking_id,
                    position=position,
                    give_up=deadline + 60,
                )
                if final == "CONFIRMED":
                    result.end_to_end.append(time.perf_counter() - sent)
                    result.completed += 1
                else:
                    result.failed += 1
        finally:
            await commands.close()
            await queries.close()


class ReadLoad:
    """Look-to-book: ``searches_per_booking`` searches for each GET /bookings/{id}."""

    def __init__(
        self,
        *,
        settings: Settings,
        query_url: str,
        booking_ids: list[str],
        clients: int,
        seconds: float,
        searches_per_booking: int = 100,
    ) -> None:
        self._settings = settings
        self._port = _port(query_url)
        self._bookings = booking_ids
        self._clients = clients
        self._seconds = seconds
        self._ratio = searches_per_booking

    def run(self) -> LoadResult:
        result = LoadResult(extra={"search": [], "booking": []})
        return _drive(self._client, self._clients, self._seconds, result)

    async def _client(self, number: int, deadline: float, result: LoadResult) -> None:
        agent = mint_token(
            self._settings, subject=f"bench-agent-{number}", roles=["agent"], ttl_seconds=7200
        )
        auth = {"Authorization": f"Bearer {agent}"}
        connection = HttpConnection("127.0.0.1", self._port)
        rng = random.Random(number)
        count = 0
        try:
            while time.perf_counter() < deadline:
                count += 1
                # a booking first, then ``ratio`` searches: short runs read bookings too
                if count % (self._ratio + 1) == 1 and self._bookings:
                    kind, path = "booking", f"/bookings/{rng.choice(self._bookings)}"
                else:
                    day = 1 + rng.randrange(9)
                    kind, path = (
                        "search",
                        f"/flights?origin=LHR&destination=JFK&date=2031-06-0{day}",
                    )
                sent = time.perf_counter()
                response = await connection.request("GET", path, headers=auth)
                if response.status != 200:
                    result.failed += 1
                    continue
                took = time.perf_counter() - sent
                result.extra[kind].append(took)
                result.latencies.append(took)
                result.completed += 1
        finally:
            await connection.close()
