"""``flightbook privacy erase <customer id>``: the erasure use case from the command line.

The same use case as ``POST /customers/{id}/erasure``
(:meth:`~flightbook.commands.service.CommandService.erase_personal_data`), run on the
event store directly, for a data-protection officer at a terminal. It asks for
confirmation on a terminal unless ``--yes``, refuses without a terminal unless ``--yes``,
and prints what it erased. The actor recorded is ``--actor``, by default ``cli:<login>``.
"""

from __future__ import annotations

import getpass
import sys
from typing import TYPE_CHECKING, Any, TextIO

import msgspec

from flightbook.domain.subject import ErasureReason

if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable

    from flightbook.config.settings import Settings

__all__ = ("ErasureNotConfirmedError", "add_privacy_erase")


class ErasureNotConfirmedError(Exception):
    """The erasure was not confirmed: nothing was erased."""


def add_privacy_erase(
    verbs: argparse._SubParsersAction[Any], *, postgres_url: Callable[[Settings], str]
) -> None:
    """Add ``erase`` to the ``privacy`` group.

    Args:
        verbs: the group's sub-commands.
        postgres_url: the event store's URL for these settings (configured, or the stack's).
    """
    erase = verbs.add_parser(
        "erase",
        help="erase a customer's personal data (crypto-shredding; recorded with who and why)",
    )
    erase.add_argument("customer_id", help="the customer (the 'sub' of their tokens)")
    erase.add_argument(
        "--reason",
        choices=[reason.value for reason in ErasureReason],
        default=ErasureReason.CUSTOMER_REQUEST.value,
        help="why (a code, stored in the log): default customer_request",
    )
    erase.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    erase.add_argument(
        "--actor", help="who is recorded as erasing (default: cli:<your login name>)"
    )

    def handler(settings: Settings, args: argparse.Namespace) -> int:
        return erase_command(
            settings,
            postgres_url=postgres_url(settings),
            customer_id=args.customer_id,
            reason=ErasureReason(args.reason),
            actor=args.actor or f"cli:{getpass.getuser()}",
            confirmed=args.yes,
        )

    erase.set_defaults(handler=handler)


def erase_command(
    settings: Settings,
    *,
    postgres_url: str,
    customer_id: str,
    reason: ErasureReason,
    actor: str,
    confirmed: bool,
    stdin: TextIO | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """Confirm, erase, print what was erased; return the exit code (0).

    Raises:
        ErasureNotConfirmedError: not confirmed (refused at the prompt, or no terminal).
        BookingsInProgressError: the customer has bookings in progress (nothing erased).
    """
    stdin = stdin or sys.stdin
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    if not confirmed:
        _confirm(customer_id, reason, stdin, stderr)
    from psycopg_pool import ConnectionPool

    from flightbook.commands.idempotency import PostgresIdempotencyKeys
    from flightbook.commands.service import CommandService
    from flightbook.eventstore.applications import EventStore
    from flightbook.eventstore.pii import build_vault

    settings = msgspec.structs.replace(settings, postgres_url=postgres_url)
    print(f"erasing the personal data of customer {customer_id}...", file=stderr, flush=True)
    store = EventStore(settings, pool_size=2)
    try:
        with ConnectionPool(postgres_url, min_size=1, max_size=2, name="privacy-erase") as pool:
            service = CommandService(
                store=store,
                keys=PostgresIdempotencyKeys(pool),
                vault=build_vault(settings, pool),
                settings=settings,
            )
            result = service.erase_personal_data(customer_id, reason=reason, actor=actor)
    finally:
        store.close()
    if result.already:
        print(f"customer {customer_id}: erased before, nothing more to erase", file=stdout)
    else:
        print(
            f"customer {customer_id}: personal data erased (every key; "
            f"{result.bookings} booking(s) marked erased; reason {reason.value}; "
            f"recorded as {actor})",
            file=stdout,
        )
    return 0


def _confirm(customer_id: str, reason: ErasureReason, stdin: TextIO, stderr: TextIO) -> None:
    if not stdin.isatty():
        raise ErasureNotConfirmedError(
            "not erased: confirm with --yes (there is no terminal to ask on)"
        )
    print(
        f"Erase the personal data of customer {customer_id} for good (reason "
        f"{reason.value})? Type 'yes' to erase: ",
        end="",
        file=stderr,
        flush=True,
    )
    if stdin.readline().strip().lower() != "yes":
        raise ErasureNotConfirmedError("not erased: the erasure was not confirmed")
