"""``flightbook accounts …`` and ``flightbook keys …``: identity from the command line.

- ``accounts create --email E --name N --role ops``: an account made by whoever runs the
  command (recorded as ``cli:<login>``), the way the first operator comes to exist. The
  password is read from the terminal twice (or one line of stdin with
  ``--password-stdin``). With a role that needs MFA, TOTP is enrolled at once: the
  secret, its ``otpauth://`` URI and ten recovery codes are printed once.
- ``accounts unlock --email E``: end a login lockout now.
- ``accounts history --email E``: every change to the account, with who made it.
- ``keys rotate [--alg EdDSA|ES256]``: a new signing key; the old one keeps verifying
  until its last token expires. ``keys list``: the keys and their state.

Roles of existing accounts change only by an operator's ``PUT /accounts/{id}/roles``.
"""

from __future__ import annotations

import getpass
import sys
import time
from typing import TYPE_CHECKING, Any

from flightbook.http.keys import ALGORITHMS, signing_keys_from_settings
from flightbook.http.tokens import ROLES
from flightbook.identity.service import RefusedError, cli_actor

if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable

    from flightbook.config.settings import Settings
    from flightbook.identity.service import IdentityService

__all__ = ("add_identity_commands",)


def add_identity_commands(
    sub: argparse._SubParsersAction[Any],
    *,
    service: Callable[[Settings], tuple[IdentityService, Callable[[], None]]],
) -> None:
    """Add ``accounts`` and ``keys`` to the console script.

    Args:
        sub: the script's sub-commands.
        service: makes the identity service for these settings, and its closer.
    """
    accounts = sub.add_parser("accounts", help="identity: create operators, unlock, history")
    verbs = accounts.add_subparsers(dest="accounts_command", required=True, metavar="VERB")

    create = verbs.add_parser("create", help="make an account (the first operator, say)")
    create.add_argument("--email", required=True)
    create.add_argument("--name", required=True)
    create.add_argument(
        "--role", action="append", required=True, choices=sorted(ROLES), help="repeat for several"
    )
    create.add_argument(
        "--password-stdin", action="store_true", help="read the password from one line of stdin"
    )
    create.set_defaults(handler=lambda s, a: _create(service, s, a))

    unlock = verbs.add_parser("unlock", help="end an account's login lockout now")
    unlock.add_argument("--email", required=True)
    unlock.set_defaults(handler=lambda s, a: _unlock(service, s, a))

    history = verbs.add_parser("history", help="every change to an account, with its actor")
    history.add_argument("--email", required=True)
    history.set_defaults(handler=lambda s, a: _history(service, s, a))

    keys = sub.add_parser("keys", help="the token signing keys: rotate, list")
    key_verbs = keys.add_subparsers(dest="keys_command", required=True, metavar="VERB")
    rotate = key_verbs.add_parser("rotate", help="sign with a new key from now on")
    rotate.add_argument("--alg", choices=list(ALGORITHMS), default="EdDSA")
    rotate.set_defaults(handler=_rotate)
    listing = key_verbs.add_parser("list", help="the keys, which signs, which still verify")
    listing.set_defaults(handler=_list_keys)


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n")
    if not sys.stdin.isatty():
        raise RefusedError(
            2, "no_terminal", "no terminal to ask for the password: use --password-stdin"
        )
    first = getpass.getpass("password: ")
    if getpass.getpass("again: ") != first:
        raise RefusedError(2, "mismatch", "the two passwords differ")
    return first


def _create(
    factory: Callable[[Settings], tuple[IdentityService, Callable[[], None]]],
    settings: Settings,
    args: argparse.Namespace,
) -> int:
    password = _password(args)  # a refusal is one line from the CLI's main: its detail
    service, close = factory(settings)
    try:
        made = service.create_account(
            args.email, password, args.name, roles=args.role, actor=cli_actor()
        )
    finally:
        close()
    print(f"account_id: {made.account_id}")
    if made.enrolment is not None:
        print(f"totp_secret: {made.enrolment.secret}")
        print(f"otpauth_uri: {made.enrolment.otpauth_uri}")
        print("recovery_codes: " + " ".join(made.recovery_codes))
        _say("put the secret into an authenticator app now: it is not shown again")
    return 0


def _account_id(service: IdentityService, email: str) -> str:
    account = service.find(email)
    if account is None:
        raise RefusedError(404, "no_account", "no account has this email")
    return account.account_id


def _unlock(
    factory: Callable[[Settings], tuple[IdentityService, Callable[[], None]]],
    settings: Settings,
    args: argparse.Namespace,
) -> int:
    service, close = factory(settings)
    try:
        released = service.release_lockout(cli_actor(), _account_id(service, args.email))
    finally:
        close()
    _say("lockout released" if released else "the account was not locked")
    return 0


def _history(
    factory: Callable[[Settings], tuple[IdentityService, Callable[[], None]]],
    settings: Settings,
    args: argparse.Namespace,
) -> int:
    service, close = factory(settings)
    try:
        for change in service.history(_account_id(service, args.email)):
            detail = " ".join(f"{k}={v}" for k, v in sorted(change.detail.items()))
            print(f"{change.at.isoformat()}  {change.change:<24} by {change.actor}  {detail}")
    finally:
        close()
    return 0


def _rotate(settings: Settings, args: argparse.Namespace) -> int:
    keys = signing_keys_from_settings(settings)
    new, dropped = keys.rotate(alg=args.alg)
    print(f"signing with {new.kid} ({new.alg}) from now on")
    for kid in dropped:
        _say(f"dropped {kid}: no token it signed can still be valid")
    return 0


def _list_keys(settings: Settings, _args: argparse.Namespace) -> int:
    keys = signing_keys_from_settings(settings)
    current = keys.current().kid
    published = {key["kid"] for key in keys.jwks()["keys"]}
    for key in keys.keys():  # noqa: SIM118 - SigningKeys.keys(), not a dict
        state = "signs" if key.kid == current else "verifies" if key.kid in published else "done"
        made = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(key.created))
        print(f"{key.kid}  {key.alg:<6} {state:<9} made {made}")
    return 0
