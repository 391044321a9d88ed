"""The ``flightbook`` console script: one entry point for operators and auditors.

Errors are one line on stderr and a non-zero exit; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, NoReturn

from flightbook.config.settings import Settings, SettingsError

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from flightbook.identity.service import IdentityService

__all__ = ("main",)


class CliError(Exception):
    """A failure to report as one line and exit code 1."""


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _fail(message: str, code: int = 1) -> NoReturn:
    print(f"flightbook: error: {message}", file=sys.stderr, flush=True)
    raise SystemExit(code)


def _cmd_stack(settings: Settings, args: argparse.Namespace) -> int:
    from flightbook.stack.launcher import LocalStack, settings_urls

    stack = LocalStack(settings, say=_say)
    if args.action == "up":
        for setting, url in settings_urls(stack.up()).items():
            print(f"FLIGHTBOOK_{setting.upper()}={url}")
    elif args.action == "down":
        if not stack.down():
            _say("nothing to stop")
    else:
        for name, state in stack.status().items():
            if state is None:
                print(f"{name:<8} stopped")
            elif state.external:
                print(f"{name:<8} configured  {state.url}")
            else:
                print(f"{name:<8} running     {state.url}  pid {state.pid}")
    return 0


def _cmd_migrate(settings: Settings, _args: argparse.Namespace) -> int:
    from flightbook.stack.migrate import migrate_all

    if not (settings.postgres_url and settings.mongo_url):
        from flightbook.stack.launcher import LocalStack, settings_urls

        settings = settings.with_urls(**settings_urls(LocalStack(settings, say=_say).up()))
    applied = migrate_all(settings, say=_say)
    _say(f"{len(applied)} migration(s) applied" if applied else "database is up to date")
    return 0


def _cmd_up(settings: Settings, _args: argparse.Namespace) -> int:
    import msgspec

    from flightbook.eventstore.keks import keks_from_settings
    from flightbook.http.keys import jwks_source, signing_keys_from_settings
    from flightbook.stack.supervisor import run_system

    # the key-encryption key file and the token signing keys (made on the local stack if
    # unset), one path each for every child
    kek_file = str(keks_from_settings(settings).path)
    signing = str(signing_keys_from_settings(settings).path)
    changed = msgspec.structs.replace(
        settings, kek_file=kek_file, jwt_signing_keys_file=signing, jwt_jwks=jwks_source(settings)
    )
    return run_system(changed, say=_say)


def _cmd_privacy_rotate_kek(settings: Settings, args: argparse.Namespace) -> int:
    from flightbook.eventstore.rotation import run_rotation
    from flightbook.stack.launcher import postgres_url

    if args.batch_size < 1:
        _fail("--batch-size must be at least 1", 2)
    return run_rotation(
        settings,
        postgres_url(settings),
        retire_old=args.retire_old,
        batch_size=args.batch_size,
        say=_say,
    )


def _cmd_token(settings: Settings, args: argparse.Namespace) -> int:
    from flightbook.http.tokens import mint_token

    longest = settings.jwt_max_ttl_seconds
    if not 1 <= args.ttl <= longest:
        # the APIs would refuse it (a token lives at most jwt_max_ttl_seconds)
        _fail(f"--ttl must be between 1 and {longest} seconds (FLIGHTBOOK_JWT_MAX_TTL_SECONDS)", 2)
    print(mint_token(settings, subject=args.sub, roles=args.role, ttl_seconds=args.ttl))
    return 0


def _identity_service(settings: Settings) -> tuple[IdentityService, Callable[[], None]]:
    """The identity service on the configured servers, else the running local stack's."""
    from flightbook.bootstrap import build_identity_service
    from flightbook.stack.launcher import LocalStack, settings_urls

    urls = settings_urls(LocalStack(settings).status())
    return build_identity_service(settings.with_urls(**urls))


class _OneLineParser(argparse.ArgumentParser):
    """Usage errors are one line and exit status 2, like every other CLI error."""

    def error(self, message: str) -> NoReturn:
        _fail(f"{self.prog}: {message} (see --help)", 2)


def _cmd_bench(settings: Settings, args: argparse.Namespace) -> int:
    from pathlib import Path

    import msgspec

    from flightbook.bench.capacity import parse_rates
    from flightbook.bench.runner import PHASES, BenchOptions, render_table, run_bench

    output = Path(args.output)
    options = BenchOptions.quick_run(output) if args.quick else BenchOptions(output=output)
    try:
        rates = parse_rates(args.rates) if args.rates else options.rates
    except ValueError as exc:
        _fail(f"flightbook bench: --rates: {exc}", 2)
    options = BenchOptions(
        seconds=args.seconds or options.seconds,
        clients=args.clients or options.clients,
        raw_seconds=options.raw_seconds,
        backlog=args.backlog or options.backlog,
        output=output,
        quick=args.quick,
        phases=_phases(args.phases, PHASES),
        rates=rates,
        drain_seconds=options.drain_seconds,
        settle_seconds=options.settle_seconds,
        wait=args.wait,
    )
    closed_loop = [name for name in ("bookings", "hot_flight") if name in options.phases]
    if options.wait == "none" and closed_loop:
        _fail(
            f"flightbook bench: --wait none: the {closed_loop[0]} phase's clients wait for each "
            "outcome before the next booking; run --phases capacity,hot_capacity with it",
            2,
        )
    if settings.state_dir == ".flightbook":  # a stack of its own, beside a running system
        settings = msgspec.structs.replace(
            settings,
            state_dir=".flightbook/bench",
            stack_postgres_port=0,
            stack_redis_port=0,
            stack_kafka_port=0,
            stack_mongo_port=0,
        )
    from flightbook.stack.launcher import LocalStack

    if not any(LocalStack(settings).status().values()):
        import shutil

        shutil.rmtree(settings.state_path / "stack", ignore_errors=True)  # start from empty servers

    def on_term(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt  # run the clean-up of the servers and processes

    import signal

    signal.signal(signal.SIGTERM, on_term)
    results = run_bench(settings, options, say=_say)
    print(render_table(results))
    _say(f"figures written to {results['json_file']}")
    return 0


def _phases(chosen: str | None, known: tuple[str, ...]) -> tuple[str, ...]:
    if not chosen:
        return known
    names = tuple(name.strip() for name in chosen.split(",") if name.strip())
    unknown = [name for name in names if name not in known]
    if unknown:
        _fail(f"flightbook bench: unknown phase {unknown[0]!r}; phases: {', '.join(known)}", 2)
    return tuple(name for name in known if name in names)


def _parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(
        prog="flightbook", description="flightbook: event-sourced flight booking backend"
    )
    sub = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=_OneLineParser
    )

    up = sub.add_parser("up", help="start the local stack, migrate, and run every process")
    up.set_defaults(handler=_cmd_up)

    stack = sub.add_parser("stack", help="manage only the local servers")
    stack.add_argument("action", choices=["up", "down", "status"])
    stack.set_defaults(handler=_cmd_stack)

    migrate = sub.add_parser("migrate", help="apply migrations/ (idempotent)")
    migrate.set_defaults(handler=_cmd_migrate)

    token = sub.add_parser(
        "token",
        help="print a JWT for local development, signed with the local private key "
        "(no session: accepted on the local stack only)",
    )
    token.add_argument("--sub", required=True, help="the subject (user id)")
    token.add_argument(
        "--role",
        action="append",
        required=True,
        choices=["customer", "agent", "ops", "analyst", "auditor", "privacy"],
        help="repeat for several",
    )
    token.add_argument(
        "--ttl",
        type=int,
        default=3600,
        help="seconds until it expires (at most FLIGHTBOOK_JWT_MAX_TTL_SECONDS)",
    )
    token.set_defaults(handler=_cmd_token)

    bench = sub.add_parser("bench", help="measure the pipeline and the raw limits (BENCHMARKS.md)")
    bench.add_argument("--quick", action="store_true", help="a short run (about a minute)")
    bench.add_argument(
        "--seconds", type=float, help="length of each load phase, and of each capacity step"
    )
    bench.add_argument("--clients", type=int, help="concurrent HTTP clients (default 32)")
    bench.add_argument("--backlog", type=int, help="events for the relay and rebuild phases")
    bench.add_argument("--output", default="bench/results", help="folder for the JSON file")
    bench.add_argument(
        "--phases",
        help="comma-separated load phases to run (default: all; read_path needs bookings): "
        "bookings, hot_flight, read_path, capacity, hot_capacity, identity, relay, replay",
    )
    bench.add_argument(
        "--rates",
        help="comma-separated bookings/s of the open-loop steps of capacity and hot_capacity "
        "(default 10,25,50,100,200,400; --quick 5,10)",
    )
    bench.add_argument(
        "--wait",
        choices=["push", "poll", "none"],
        default="push",
        help="how the clients learn their booking's outcome: pushed (Server-Sent Events, the "
        "default), by polling (to compare), or, in the capacity phases, not at all",
    )
    bench.set_defaults(handler=_cmd_bench)

    from flightbook.identity.cli import add_identity_commands

    add_identity_commands(sub, service=_identity_service)

    from flightbook.audit.cli import add_audit_commands

    add_audit_commands(sub)

    from flightbook.projections.tools.cli import add_projection_commands

    add_projection_commands(sub)

    # personal data (ADR 0017): rotate-kek here; erase and export join this group
    privacy = sub.add_parser("privacy", help="personal data: erasure, export, key rotation")
    privacy_verbs = privacy.add_subparsers(
        dest="privacy_command", required=True, metavar="VERB", parser_class=_OneLineParser
    )
    rotate = privacy_verbs.add_parser(
        "rotate-kek", help="make a new key-encryption key current and rewrap every data key"
    )
    rotate.add_argument(
        "--retire-old",
        action="store_true",
        help="instead: drop the old key-encryption keys (refused while a key still uses one)",
    )
    rotate.add_argument("--batch-size", type=int, default=500, help="keys per transaction")
    rotate.set_defaults(handler=_cmd_privacy_rotate_kek)

    from flightbook.audit.cli import add_privacy_export

    add_privacy_export(privacy_verbs)

    from flightbook.commands.erasure_cli import add_privacy_erase
    from flightbook.stack.launcher import postgres_url

    add_privacy_erase(privacy_verbs, postgres_url=postgres_url)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``flightbook`` command line; return the exit code."""
    args = _parser().parse_args(argv)
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        _fail(str(exc), 2)
    handler: Callable[[Settings, argparse.Namespace], int] = args.handler
    try:
        return handler(settings, args)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        _fail(_one_line(exc))


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) < 400 else text[:397] + "..."


if __name__ == "__main__":
    sys.exit(main())
