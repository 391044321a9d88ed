"""Process configuration: every setting comes from a ``FLIGHTBOOK_*`` environment variable.

Read once, in a composition root, into a frozen :class:`Settings` (STYLE G4). A bad
value stops the process with one line naming the variable (:class:`SettingsError`).
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import limits
import msgspec

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ("PREFIX", "Settings", "SettingsError", "require")

PREFIX = "FLIGHTBOOK_"

Port = Annotated[int, msgspec.Meta(ge=0, le=65535)]
Positive = Annotated[int, msgspec.Meta(gt=0)]
Seconds = Annotated[float, msgspec.Meta(gt=0)]


class SettingsError(ValueError):
    """A ``FLIGHTBOOK_*`` variable is unknown or has a value that cannot be used."""


class Settings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Everything a flightbook process can be told from outside.

    A server URL left unset means "start a local one" (``flightbook stack up``/``up``).
    """

    # servers; None = the local stack provides it
    postgres_url: str | None = None
    kafka_bootstrap: str | None = None
    mongo_url: str | None = None
    redis_url: str | None = None
    # "memory": the applications run on the library's in-memory recorders (unit tests only:
    # nothing is shared between processes and nothing survives one)
    event_store: Literal["postgres", "memory"] = "postgres"

    # where the local stack keeps its data, pid files and logs
    state_dir: str = ".flightbook"
    stack_postgres_port: Port = 55432
    stack_redis_port: Port = 56379
    stack_kafka_port: Port = 59092
    stack_mongo_port: Port = 57017

    # where migrations/ and the composition roots are (default: found beside the source)
    project_dir: str | None = None

    # HTTP
    host: str = "127.0.0.1"
    command_port: Port = 8000
    query_port: Port = 8001
    max_body_bytes: Positive = 64 * 1024

    # names inside the servers (tests isolate themselves by changing these)
    postgres_schema_prefix: str = ""
    mongo_database: str = "flightbook"
    redis_prefix: str = "fb:"
    topic_prefix: str = "flightbook"
    kafka_partitions: Positive = 6
    kafka_session_timeout_ms: Positive = 6000

    # auth (ADR 0019): tokens are signed with the identity service's private keys and
    # verified with the public ones. Unset on the local stack: <state_dir>/signing-keys.json
    # (made if missing) and its public half beside it; elsewhere required
    jwt_signing_keys_file: str | None = None  # the signer's private keys (identity, CLI)
    jwt_jwks: str | None = None  # the verifiers' public keys: a JWKS URL or file
    jwt_issuer: str = "flightbook"
    jwt_audience: str = "flightbook"
    # the longest lifetime (exp - iat) a token may have; longer ones are refused
    jwt_max_ttl_seconds: Positive = 24 * 3600
    # how long an API trusts its last look at a session in Redis: a revoked session's
    # access token is refused within this
    session_cache_seconds: Annotated[float, msgspec.Meta(ge=0)] = 2.0

    # the identity service (accounts, login, sessions, MFA; ADR 0019)
    identity_port: Port = 8002
    identity_ops_port: Port = 8017
    identity_access_ttl_seconds: Positive = 300
    identity_session_ttl_seconds: Positive = 14 * 24 * 3600
    # Argon2id cost: passes and memory (KiB); OWASP's minimum is 2 passes of 19 MiB
    identity_argon2_time_cost: Positive = 2
    identity_argon2_memory_kib: Annotated[int, msgspec.Meta(ge=8)] = 19456
    # failed logins within identity_lockout_seconds before an account is locked (except from
    # addresses it logged in from before) and before an address is refused (any account)
    identity_failures_per_account: Positive = 5
    identity_failures_per_address: Positive = 20
    identity_lockout_seconds: Seconds = 900.0

    # personal data (ADR 0017): the key-encryption key file, never in the database. Unset:
    # on the local stack <state_dir>/kek.json (created if missing); elsewhere required
    kek_file: str | None = None

    # abuse protection (ADR 0016). Rate limits in the `limits` notation, several joined by
    # ";" ("5/second;60/minute"); the state is in Redis, shared by every API process
    rate_limit_enabled: bool = True
    rate_limit_writes: str = "5/second;60/minute"  # per customer: POST, DELETE
    rate_limit_reads: str = "20/second;600/minute"  # per customer: GET
    rate_limit_address: str = "50/second;1200/minute"  # per client address, every route
    rate_limit_refused_tokens: str = "20/minute"  # per client address: 401s
    # the longest a request waits for the limiter's Redis before it is served unchecked
    rate_limit_timeout_seconds: Seconds = 0.25
    # the longest a command waits for a PostgreSQL connection before it answers 503 (ADR 0018)
    api_postgres_wait_seconds: Seconds = 3.0
    # the longest a command takes before it answers 503 (send it again, same Idempotency-Key)
    command_deadline_seconds: Seconds = 5.0
    # addresses of reverse proxies whose X-Forwarded-For names the client (comma-separated)
    trusted_proxies: str = ""
    # business-flow caps: a customer's bookings in REQUESTED/HELD, and the seats they hold
    cap_bookings_in_progress: Positive = 5
    cap_seats_held: Positive = 18
    cap_seats_held_per_flight: Positive = 9
    # one customer's payment timeouts within the window before their payments stop reaching
    # the shared gateway breaker (declines never count)
    payment_timeouts_per_customer: Positive = 5
    payment_timeout_window_seconds: Seconds = 300.0

    # exposure: /metrics on the APIs' public ports too (default: on their ops ports only)
    public_metrics: bool = False
    command_ops_port: Port = 8015
    query_ops_port: Port = 8016

    # booking rules
    hold_seconds: Seconds = 600.0

    # auditors: a read-only role for the audit commands, and the hash-chain sealer
    audit_postgres_url: str | None = None
    audit_http_port: Port = 8012
    audit_seal_seconds: Seconds = 1.0

    # the saga and the (simulated) payment gateway
    saga_workers: Positive = 8
    saga_poll_seconds: Seconds = 0.5
    # woken by new work, the saga waits this long for more before a round or a store, so
    # that a moderate load is answered in batches too (ADR 0022); 0 answers at once
    saga_linger_seconds: Annotated[float, msgspec.Meta(ge=0, le=1)] = 0.02
    saga_http_port: Port = 8010
    # the simulated provider's own database (default: postgres_url's; the local stack gives it
    # one of its own, as a real provider's records are not in flightbook's database)
    gateway_postgres_url: str | None = None
    gateway_latency_seconds: Annotated[float, msgspec.Meta(ge=0)] = 0.0
    gateway_timeout_seconds: Seconds = 2.0
    gateway_max_elapsed_seconds: Seconds = 6.0

    # the relay (event store -> Kafka)
    relay_http_port: Port = 8011
    relay_batch_size: Positive = 5000
    relay_poll_seconds: Seconds = 0.5

    # the query API: how long a read-your-writes query waits for its read model
    query_wait_seconds: Seconds = 2.0

    # the projection workers (Kafka -> MongoDB and Redis)
    projection_bookings_http_port: Port = 8013
    projection_flights_http_port: Port = 8014
    projection_batch_size: Positive = 500
    projection_poll_seconds: Seconds = 0.5
    projection_broker_check_seconds: Seconds = 5.0
    projection_stall_seconds: Seconds = 30.0
    # longest wait, under load, before sales_daily/funnel_daily follow the bookings (ADR 0014)
    projection_analytics_seconds: Seconds = 1.0

    # logging
    log_format: Literal["auto", "json", "console"] = "auto"
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    def __post_init__(self) -> None:
        # what msgspec cannot check by type; a ValueError here becomes a SettingsError
        for name in _RATE_LIMIT_SETTINGS:
            _check_rate_limits(name, getattr(self, name))
        try:
            _ = self.trusted_proxy_networks
        except ValueError:
            raise ValueError(
                f"{PREFIX}TRUSTED_PROXIES={self.trusted_proxies!r}: "
                "not comma-separated IP addresses or networks"
            ) from None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read the ``FLIGHTBOOK_*`` variables of ``environ`` (default: the process's).

        Raises:
            SettingsError: one line naming the variable that is unknown or bad.
        """
        env = os.environ if environ is None else environ
        values = {
            key.removeprefix(PREFIX).lower(): value
            for key, value in env.items()
            if key.startswith(PREFIX) and value != ""
        }
        try:
            return msgspec.convert(values, cls, strict=False)
        except msgspec.ValidationError as exc:
            raise SettingsError(_explain(exc, values)) from None

    @property
    def state_path(self) -> Path:
        return Path(self.state_dir).resolve()

    @property
    def trusted_proxy_networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        """The networks of :attr:`trusted_proxies` (an address is a network of one)."""
        parts = (part.strip() for part in self.trusted_proxies.split(","))
        return tuple(ipaddress.ip_network(part, strict=False) for part in parts if part)

    def with_urls(
        self,
        *,
        postgres_url: str | None = None,
        kafka_bootstrap: str | None = None,
        mongo_url: str | None = None,
        redis_url: str | None = None,
        gateway_postgres_url: str | None = None,
    ) -> Settings:
        """A copy with the given server URLs filled in (the stack's, for unset ones).

        The gateway's database comes with the local PostgreSQL only: with a configured
        ``postgres_url`` and no ``gateway_postgres_url`` the gateway shares that database.
        """
        own_postgres = not self.postgres_url
        return msgspec.structs.replace(
            self,
            gateway_postgres_url=self.gateway_postgres_url
            or (gateway_postgres_url if own_postgres else None),
            postgres_url=self.postgres_url or postgres_url,
            kafka_bootstrap=self.kafka_bootstrap or kafka_bootstrap,
            mongo_url=self.mongo_url or mongo_url,
            redis_url=self.redis_url or redis_url,
        )

    def gateway_database(self) -> str | None:
        """Where the simulated payment provider keeps its ledger."""
        return self.gateway_postgres_url or self.postgres_url

    def to_env(self) -> dict[str, str]:
        """The settings as ``FLIGHTBOOK_*`` variables, to hand to a child process."""
        env: dict[str, str] = {}
        for name, value in msgspec.structs.asdict(self).items():
            if value is not None:
                env[PREFIX + name.upper()] = str(value)
        return env


_RATE_LIMIT_SETTINGS = (
    "rate_limit_writes",
    "rate_limit_reads",
    "rate_limit_address",
    "rate_limit_refused_tokens",
)
"""The settings that hold rate limits in the `limits` notation."""


def _check_rate_limits(name: str, value: str) -> None:
    try:
        items = limits.parse_many(value)
    except ValueError:
        items = []
    if not items or any(item.amount < 1 for item in items):
        raise ValueError(
            f"{PREFIX}{name.upper()}={value!r}: not rate limits such as '5/second;60/minute'"
        )


def _explain(exc: msgspec.ValidationError, values: Mapping[str, str]) -> str:
    # msgspec says e.g. "Expected `int`, got `str` - at `$.query_port`"
    # or "Object contains unknown field `query_prt`"
    message = str(exc)
    if "unknown field" in message:
        name = message.split("`")[1]
        return f"{PREFIX}{name.upper()}: unknown setting"
    if " - at `$." in message:
        reason, _, where = message.rpartition(" - at `$.")
        name = where.rstrip("`").split(".")[0].split("[")[0]
        given = values.get(name)
        shown = f"={given!r}" if given is not None else ""
        return f"{PREFIX}{name.upper()}{shown}: {reason[0].lower()}{reason[1:]}"
    return message


def require(value: str | None, setting: str) -> str:
    """The configured URL, or a clear error naming the variable."""
    if not value:
        raise RuntimeError(f"FLIGHTBOOK_{setting.upper()} is not set and no local stack runs")
    return value
