"""The identity phase: logins and refreshes per second, and what a session check costs.

Logins run at the configured Argon2id cost; the session check is what an authenticated
request pays for it (ADR 0019).

Each client registers an account of its own (not timed), then logs in over and over
(Argon2id verifies: CPU-bound by design), then refreshes over and over (no hash: a
database round trip and a signature). The session-check cost is the same search read
twice, once with a token that names a session (checked in Redis at most every
``session_cache_seconds`` per session) and once with a sessionless development token.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import TYPE_CHECKING, Any

from flightbook.bench.client import HttpConnection
from flightbook.bench.load import LoadResult, _drive, _port
from flightbook.http.tokens import mint_token

if TYPE_CHECKING:
    from flightbook.config.settings import Settings

__all__ = ("IdentityLoad",)

_PASSWORD = "benchmark passphrase of the harbour"  # noqa: S105 - a throwaway account's
_SEARCH = "/flights?origin=LHR&destination=JFK&date=2031-06-01"


class IdentityLoad:
    """Login, refresh and session-checked reads, ``clients`` at a time."""

    def __init__(
        self, *, settings: Settings, identity_url: str, query_url: str, clients: int, seconds: float
    ) -> None:
        self._settings = settings
        self._identity = _port(identity_url)
        self._query = _port(query_url)
        self._clients = clients
        self._seconds = seconds
        self._emails = [f"bench-{uuid.uuid4().hex[:10]}@example.com" for _ in range(clients)]
        self._refresh: dict[int, str] = {}
        self._access: dict[int, str] = {}

    def register(self) -> LoadResult:
        result = LoadResult()
        return _drive(self._register, self._clients, self._seconds, result)

    async def _register(self, number: int, _deadline: float, result: LoadResult) -> None:
        connection = HttpConnection("127.0.0.1", self._identity)
        body = {"email": self._emails[number], "password": _PASSWORD, "name": "Bench Client"}
        try:
            answer = await connection.request(
                "POST", "/auth/register", body=json.dumps(body).encode()
            )
            if answer.status == 201:
                result.completed += 1
            else:
                result.failed += 1
        finally:
            await connection.close()

    def logins(self) -> LoadResult:
        return _drive(self._login, self._clients, self._seconds, LoadResult())

    async def _login(self, number: int, deadline: float, result: LoadResult) -> None:
        connection = HttpConnection("127.0.0.1", self._identity)
        body = json.dumps({"email": self._emails[number], "password": _PASSWORD}).encode()
        try:
            while time.perf_counter() < deadline:
                sent = time.perf_counter()
                answer = await connection.request("POST", "/auth/login", body=body)
                if answer.status != 200:
                    result.failed += 1
                    continue
                result.latencies.append(time.perf_counter() - sent)
                result.completed += 1
                tokens: dict[str, Any] = json.loads(answer.body)
                self._refresh[number] = tokens["refresh_token"]
                self._access[number] = tokens["access_token"]
        finally:
            await connection.close()

    def refreshes(self) -> LoadResult:
        return _drive(self._refresh_loop, self._clients, self._seconds, LoadResult())

    async def _refresh_loop(self, number: int, deadline: float, result: LoadResult) -> None:
        connection = HttpConnection("127.0.0.1", self._identity)
        try:
            while time.perf_counter() < deadline and number in self._refresh:
                body = json.dumps({"refresh_token": self._refresh[number]}).encode()
                sent = time.perf_counter()
                answer = await connection.request("POST", "/auth/refresh", body=body)
                if answer.status != 200:
                    result.failed += 1
                    break  # a failed refresh has no next token
                result.latencies.append(time.perf_counter() - sent)
                result.completed += 1
                tokens: dict[str, Any] = json.loads(answer.body)
                self._refresh[number] = tokens["refresh_token"]
                self._access[number] = tokens["access_token"]
        finally:
            await connection.close()

    def reads(self, *, sessions: bool) -> LoadResult:
        """Searches with session tokens (``sessions``) or with sessionless ones."""

        async def client(number: int, deadline: float, result: LoadResult) -> None:
            token = (
                self._access.get(number, "")
                if sessions
                else mint_token(self._settings, subject=f"bench-{number}", roles=["customer"])
            )
            headers = {"Authorization": f"Bearer {token}"}
            connection = HttpConnection("127.0.0.1", self._query)
            try:
                while time.perf_counter() < deadline:
                    sent = time.perf_counter()
                    answer = await connection.request("GET", _SEARCH, headers=headers)
                    if answer.status != 200:
                        result.failed += 1
                        continue
                    result.latencies.append(time.perf_counter() - sent)
                    result.completed += 1
            finally:
                await connection.close()

        return _drive(client, self._clients, self._seconds, LoadResult())
