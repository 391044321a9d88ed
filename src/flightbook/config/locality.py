"""Whether this process runs on the local stack, where development conveniences are allowed.

The local stack: a process that listens on loopback only and whose every configured
server URL points at a loopback address (an unset URL means the local stack's own
server, also on loopback). Only there are key files made when their setting is unset
(the KEK, the token signing keys) and tokens without a session accepted.
"""

from __future__ import annotations

import ipaddress
import re
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from collections.abc import Iterator

    from flightbook.config.settings import Settings

__all__ = ("on_local_stack",)

_URL_SETTINGS = ("postgres_url", "audit_postgres_url", "mongo_url", "redis_url")


def _is_loopback(host: str) -> bool:
    host = host.strip().strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _hosts_of_url(url: str) -> Iterator[str]:
    """Every host a server URL names (MongoDB and PostgreSQL URLs may name several)."""
    parts = urlsplit(url)
    if parts.scheme in ("unix", "redis+unix") or (parts.scheme and not parts.netloc):
        yield "localhost"  # a unix socket is on this machine
        return
    hosts = parts.netloc.rpartition("@")[2]
    for host in hosts.split(","):
        yield _host_of_address(host)


def _host_of_address(address: str) -> str:
    """``host`` of ``host:port``, ``[::1]:port`` or ``host``."""
    address = address.strip()
    bracketed = re.match(r"^\[([^\]]*)\]", address)
    if bracketed:
        return bracketed.group(1)
    if address.count(":") > 1:  # a bare IPv6 address
        return address
    return address.partition(":")[0]


def _server_hosts(settings: Settings) -> Iterator[str]:
    for name in _URL_SETTINGS:
        url = getattr(settings, name)
        if url:
            yield from _hosts_of_url(url)
    if settings.kafka_bootstrap:
        for address in settings.kafka_bootstrap.split(","):
            yield _host_of_address(address.rpartition("://")[2])


def on_local_stack(settings: Settings) -> bool:
    """Listening on loopback only, with every configured server on a loopback address."""
    return _is_loopback(settings.host) and all(_is_loopback(h) for h in _server_hosts(settings))
