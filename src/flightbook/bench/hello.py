"""The "hello" app for the raw HTTP limit: Litestar + msgspec, nothing else."""

from __future__ import annotations

import msgspec
from litestar import Litestar, get


class Hello(msgspec.Struct, frozen=True):
    message: str


@get("/hello", sync_to_thread=False)
def hello() -> Hello:
    return Hello(message="hello")


app = Litestar(route_handlers=[hello])
