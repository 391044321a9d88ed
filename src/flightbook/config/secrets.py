"""Whether the token signing secret may be used here: real secrets off the local stack.

The default ``FLIGHTBOOK_JWT_SECRET`` is in the source, so anyone can sign tokens with it;
a short one can be guessed. Both are accepted only on the local stack: a process that
listens on loopback only and whose every configured server URL points at a loopback
address (an unset URL means the local stack's own server, also on loopback). Anywhere
else the APIs refuse to start (:func:`require_signing_secret`).
"""

from __future__ import annotations

import ipaddress
import re
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from flightbook.config.settings import PREFIX, Settings, SettingsError

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = (
    "DEVELOPMENT_SECRET",
    "MIN_SECRET_BYTES",
    "on_local_stack",
    "require_signing_secret",
    "signing_secret_problem",
)

MIN_SECRET_BYTES = 32
"""The shortest signing secret accepted off the local stack (HS256: RFC 7518 §3.2)."""
DEVELOPMENT_SECRET = Settings().jwt_secret
"""The default from the source: never a secret."""

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


def signing_secret_problem(settings: Settings) -> str | None:
    """Why ``settings.jwt_secret`` may not sign tokens here, or None if it may."""
    if on_local_stack(settings):
        return None
    where = "not on the local stack (listening beyond loopback, or servers elsewhere)"
    if settings.jwt_secret == DEVELOPMENT_SECRET:
        return f"{PREFIX}JWT_SECRET is not set: the development default is public; {where}"
    if len(settings.jwt_secret.encode()) < MIN_SECRET_BYTES:
        return f"{PREFIX}JWT_SECRET is shorter than {MIN_SECRET_BYTES} bytes; {where}"
    return None


def require_signing_secret(settings: Settings) -> None:
    """Refuse a public or short signing secret off the local stack.

    Raises:
        SettingsError: one line naming ``FLIGHTBOOK_JWT_SECRET`` and how to fix it.
    """
    problem = signing_secret_problem(settings)
    if problem is not None:
        raise SettingsError(
            f"{problem}; set it to a random value of at least {MIN_SECRET_BYTES} bytes"
            " (python -c 'import secrets; print(secrets.token_urlsafe(32))')"
        )
