"""A minimal keep-alive HTTP/1.1 client on asyncio streams, so the load is not the bottleneck.

General clients (httpx) spend milliseconds per request in Python; this one writes the
request bytes and reads exactly Content-Length bytes back, nothing more. A chunked body (a
``text/event-stream`` the server ends, say) is read to its last chunk, so ``request``
returns when the stream is over.
"""

from __future__ import annotations

import asyncio
import contextlib

__all__ = ("HttpConnection", "Response")


class Response:
    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body


class HttpConnection:
    """One persistent connection to ``host:port``; reconnects when the server closes it."""

    def __init__(self, host: str, port: int) -> None:
        self._host = host
        self._port = port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def close(self) -> None:
        if self._writer is not None:
            writer, self._writer = self._writer, None
            writer.close()
            with contextlib.suppress(ConnectionError):  # the server may have gone first
                await writer.wait_closed()

    async def request(
        self, method: str, path: str, *, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> Response:
        for attempt in (1, 2):
            try:
                return await self._exchange(method, path, body, headers or {})
            except (ConnectionError, asyncio.IncompleteReadError):
                await self.close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    async def _exchange(
        self, method: str, path: str, body: bytes, headers: dict[str, str]
    ) -> Response:
        if self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(self._host, self._port)
        if self._reader is None:  # pragma: no cover - set together with the writer
            raise ConnectionError("not connected")
        lines = [
            f"{method} {path} HTTP/1.1",
            f"Host: {self._host}:{self._port}",
            f"Content-Length: {len(body)}",
        ]
        if body:
            lines.append("Content-Type: application/json")
        lines += [f"{k}: {v}" for k, v in headers.items()]
        self._writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        head = await self._reader.readuntil(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        status = int(status_line.split(" ", 2)[1])
        response_headers = {}
        for line in header_lines:
            if ":" in line:
                key, _, value = line.partition(":")
                response_headers[key.strip().lower()] = value.strip()
        if response_headers.get("transfer-encoding", "").lower() == "chunked":
            payload = await self._read_chunked(self._reader)
        else:
            length = int(response_headers.get("content-length", "0"))
            payload = await self._reader.readexactly(length) if length else b""
        if response_headers.get("connection", "").lower() == "close":
            await self.close()
        return Response(status, response_headers, payload)

    @staticmethod
    async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
        """A ``Transfer-Encoding: chunked`` body, up to and including its last (empty) chunk."""
        parts: list[bytes] = []
        while True:
            size_line = await reader.readuntil(b"\r\n")
            size = int(size_line.split(b";", 1)[0].strip(), 16)
            if size == 0:
                while await reader.readuntil(b"\r\n") != b"\r\n":  # trailers, if any
                    pass
                return b"".join(parts)
            parts.append(await reader.readexactly(size))
            await reader.readexactly(2)  # the chunk's CRLF
