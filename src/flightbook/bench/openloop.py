"""An open-loop booking load: ``POST /bookings`` at a fixed rate, whatever the answers.

Each booking starts at its time in the schedule (:func:`~flightbook.bench.capacity.
arrival_offsets`), on an idle keep-alive connection or a new one, so a slow answer never
delays the next booking: the generator opens as many connections as the answers need (up
to ``max_in_flight``) and reports how late each request left (``send_lags``) and the rate it
achieved. Every request is prepared before the clock starts, each from a customer of its
own (a token each), so the per-customer caps of bookings in progress never refuse one.
The step's verdict never depends on the clients: the phase asks the server for outcomes
(:mod:`flightbook.bench.pgstats`). With ``wait`` (``push`` or ``poll``, :mod:`flightbook.
bench.outcomes`) each accepted booking's customer also waits for its outcome on the query
API, as an app would, so that the step measures what telling them costs; ``told`` and
``told_end_to_end`` are what the customers learnt, and when.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from flightbook.bench.capacity import arrival_offsets
from flightbook.bench.client import HttpConnection
from flightbook.bench.outcomes import outcome
from flightbook.http.tokens import mint_token

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from flightbook.config.settings import Settings

__all__ = ("OpenLoad", "OpenLoopResult", "PreparedBooking", "prepare_bookings")

_PASSENGERS = [{"name": "Bench Passenger", "email": "bench@example.com"}]


@dataclass(frozen=True)
class PreparedBooking:
    """One ``POST /bookings``, ready to send."""

    body: bytes
    headers: dict[str, str]


def prepare_bookings(
    settings: Settings, targets: Sequence[tuple[str, str]], *, tag: str
) -> list[PreparedBooking]:
    """One booking per ``(flight_id, fare)`` of ``targets``, each by a customer of its own."""
    prepared = []
    for n, (flight_id, fare) in enumerate(targets):
        token = mint_token(
            settings, subject=f"bench-{tag}-{n}", roles=["customer"], ttl_seconds=7200
        )
        body = {
            "flight_id": flight_id,
            "fare": fare,
            "payment_token": "tok_ok",
            "passengers": _PASSENGERS,
        }
        prepared.append(
            PreparedBooking(
                body=json.dumps(body).encode(),
                headers={"Authorization": f"Bearer {token}", "Idempotency-Key": str(uuid.uuid4())},
            )
        )
    return prepared


@dataclass
class OpenLoopResult:
    """What one step of the open-loop load saw.

    Attributes:
        scheduled: Bookings in the schedule.
        sent: Requests that left (always all of them: the generator skips none).
        accepted: Answered ``202`` (the booking was requested).
        refused: Answered anything else (counted by status in ``statuses``).
        errors: Requests that got no answer (the connection failed).
        seconds: From the step's start to the last request, plus one interval.
        booking_ids: The bookings accepted.
        send_lags: Seconds each request left after its time in the schedule.
        latencies: Seconds from sending to the ``202``, for those accepted.
        statuses: Answers by HTTP status.
        peak_in_flight: Most requests awaiting their answer at once.
        told: Final statuses the waiting customers learnt, by status (``unknown``: none
            by the time they gave up).
        told_end_to_end: Seconds from sending to learning ``CONFIRMED``.
    """

    scheduled: int
    sent: int = 0
    accepted: int = 0
    refused: int = 0
    errors: int = 0
    seconds: float = 0.0
    booking_ids: list[str] = field(default_factory=list)
    send_lags: list[float] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    peak_in_flight: int = 0
    told: dict[str, int] = field(default_factory=dict)
    told_end_to_end: list[float] = field(default_factory=list)

    @property
    def offered_per_s(self) -> float:
        return self.sent / self.seconds if self.seconds else 0.0


class OpenLoad:
    """``rate`` bookings per second for ``seconds`` on the command API, open loop.

    Args:
        command_url: The command API.
        bookings: The requests, at least ``rate * seconds`` (:func:`prepare_bookings`).
        rate: Bookings per second.
        seconds: How long the schedule lasts.
        max_in_flight: A bound on concurrent requests (and so on connections): past it,
            requests leave late, and the lateness shows in ``send_lags``.
        query_url: The query API, where customers wait (with ``wait``).
        wait: ``none``, or how customers learn their outcome (``push``, ``poll``).
        wait_seconds: How long after the last request customers still wait.
        at_schedule_end: Called (in a thread) once every request has its answer, while
            customers may still wait: the phase notes its backlog then.
    """

    def __init__(
        self,
        *,
        command_url: str,
        bookings: Sequence[PreparedBooking],
        rate: float,
        seconds: float,
        max_in_flight: int = 1024,
        query_url: str | None = None,
        wait: str = "none",
        wait_seconds: float = 10.0,
        at_schedule_end: Callable[[], object] | None = None,
    ) -> None:
        if wait != "none" and query_url is None:
            raise ValueError("customers wait on the query API: give query_url")
        self._offsets = arrival_offsets(rate, seconds)
        if len(bookings) < len(self._offsets):
            raise ValueError(f"{len(self._offsets)} bookings scheduled, {len(bookings)} prepared")
        self._bookings = bookings
        self._interval = 1 / rate
        self._port = int(command_url.rsplit(":", 1)[1])
        self._max_in_flight = max_in_flight
        self._query_port = int(query_url.rsplit(":", 1)[1]) if query_url else 0
        self._wait = wait
        self._wait_seconds = wait_seconds
        self._at_schedule_end = at_schedule_end

    def run(self) -> OpenLoopResult:
        result = OpenLoopResult(scheduled=len(self._offsets))
        asyncio.run(self._run(result))
        return result

    async def _run(self, result: OpenLoopResult) -> None:
        idle: list[HttpConnection] = []
        idle_queries: list[HttpConnection] = []
        opened_queries: list[HttpConnection] = []
        waiting: list[asyncio.Task[None]] = []

        async def wait_for_outcome(
            auth: dict[str, str], booking_id: str, position: str, sent: float
        ) -> None:
            if idle_queries:
                queries = idle_queries.pop()
            else:
                queries = HttpConnection("127.0.0.1", self._query_port)
                opened_queries.append(queries)
            try:
                final = await outcome(
                    self._wait,
                    queries,
                    auth=auth,
                    booking_id=booking_id,
                    position=position,
                    give_up=time.perf_counter() + 3600,  # cut short at the schedule's end
                )
            except (OSError, asyncio.IncompleteReadError):
                await queries.close()
                final = None
            idle_queries.append(queries)
            key = final or "unknown"
            result.told[key] = result.told.get(key, 0) + 1
            if final == "CONFIRMED":
                result.told_end_to_end.append(time.perf_counter() - sent)

        slots = asyncio.Semaphore(self._max_in_flight)
        in_flight = 0
        start = time.perf_counter()
        last_sent = start

        async def send(booking: PreparedBooking, due: float) -> None:
            nonlocal in_flight, last_sent
            async with slots:
                connection = idle.pop() if idle else HttpConnection("127.0.0.1", self._port)
                sent = time.perf_counter()
                last_sent = max(last_sent, sent)
                result.send_lags.append(max(0.0, sent - due))
                result.sent += 1
                in_flight += 1
                result.peak_in_flight = max(result.peak_in_flight, in_flight)
                try:
                    response = await connection.request(
                        "POST", "/bookings", body=booking.body, headers=booking.headers
                    )
                except (OSError, asyncio.IncompleteReadError):
                    result.errors += 1
                    await connection.close()
                    return
                finally:
                    in_flight -= 1
                idle.append(connection)
                result.statuses[response.status] = result.statuses.get(response.status, 0) + 1
                if response.status != 202:
                    result.refused += 1
                    return
                result.latencies.append(time.perf_counter() - sent)
                result.accepted += 1
                booking_id = json.loads(response.body)["booking_id"]
                result.booking_ids.append(booking_id)
                if self._wait != "none":
                    auth = {"Authorization": booking.headers["Authorization"]}
                    position = response.headers.get("x-flightbook-position", "")
                    waiting.append(
                        asyncio.create_task(wait_for_outcome(auth, booking_id, position, sent))
                    )

        tasks = []
        try:
            for booking, offset in zip(self._bookings, self._offsets, strict=False):
                delay = start + offset - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(send(booking, start + offset)))
            await asyncio.gather(*tasks)
            give_up = time.perf_counter() + self._wait_seconds
            if self._at_schedule_end is not None:
                await asyncio.to_thread(self._at_schedule_end)
            if waiting:
                _, late = await asyncio.wait(waiting, timeout=give_up - time.perf_counter())
                for task in late:
                    task.cancel()
                result.told["unknown"] = result.told.get("unknown", 0) + len(late)
                await asyncio.gather(*late, return_exceptions=True)
        finally:
            for connection in (*idle, *opened_queries):
                await connection.close()
        result.seconds = max(last_sent - start, self._offsets[-1]) + self._interval
