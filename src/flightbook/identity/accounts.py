"""Accounts in PostgreSQL (``identity.accounts``), each change recorded with its actor.

Every write here goes with a row of ``identity.account_changes`` in the same transaction
(what changed, on whose action, when; never personal data), so who changed what is
auditable: ``flightbook accounts history``. Personal data is stored sealed by the caller
(:class:`~flightbook.eventstore.pii.PersonalDataVault`); this module never sees it in the
clear.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime  # noqa: TC003 - a dataclass field's type
from typing import TYPE_CHECKING, Any

from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

if TYPE_CHECKING:
    from collections.abc import Iterable

    from psycopg import Cursor
    from psycopg_pool import ConnectionPool

__all__ = ("Account", "AccountChange", "EmailTakenError", "PostgresAccounts")


class EmailTakenError(Exception):
    """An account with this email exists already."""


@dataclass(frozen=True)
class Account:
    """One account as stored (email, name and TOTP secret sealed)."""

    account_id: str
    email_lookup: str
    email: str
    name: str
    password_hash: str
    roles: tuple[str, ...]
    totp_secret: str | None
    totp_enabled: bool
    totp_last_step: int
    created_at: datetime
    erased_at: datetime | None


@dataclass(frozen=True)
class AccountChange:
    """One row of the audit trail."""

    change_id: int
    account_id: str
    actor: str
    change: str
    detail: dict[str, Any]
    at: datetime


_COLUMNS = (
    "account_id, email_lookup, email, name, password_hash, roles, totp_secret, "
    "totp_enabled, totp_last_step, created_at, erased_at"
)


def _account(row: dict[str, Any]) -> Account:
    return Account(**{**row, "roles": tuple(row["roles"])})


def record_change(
    cursor: Cursor[Any], account_id: str, actor: str, change: str, **detail: Any
) -> None:
    """One row of the audit trail, in the caller's transaction."""
    cursor.execute(
        "INSERT INTO identity.account_changes (account_id, actor, change, detail)"
        " VALUES (%s, %s, %s, %s)",
        (account_id, actor, change, Jsonb(detail)),
    )


class PostgresAccounts:
    """The ``identity`` schema's accounts, recovery codes and audit trail."""

    def __init__(self, pool: ConnectionPool) -> None:
        self.pool = pool

    def create(self, account: Account, *, actor: str, recovery_hashes: Iterable[str] = ()) -> None:
        """Store a new account (and its recovery codes), recorded as ``registered``.

        Raises:
            EmailTakenError: the email's lookup key is taken.
        """
        import psycopg.errors

        try:
            with self.pool.connection() as conn, conn.transaction(), conn.cursor() as cursor:
                cursor.execute(
                    f"INSERT INTO identity.accounts ({_COLUMNS})"  # noqa: S608 - constant
                    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                    (
                        account.account_id,
                        account.email_lookup,
                        account.email,
                        account.name,
                        account.password_hash,
                        list(account.roles),
                        account.totp_secret,
                        account.totp_enabled,
                        account.totp_last_step,
                        account.created_at,
                        account.erased_at,
                    ),
                )
                for code_hash in recovery_hashes:
                    cursor.execute(
                        "INSERT INTO identity.recovery_codes (account_id, code_hash)"
                        " VALUES (%s, %s)",
                        (account.account_id, code_hash),
                    )
                record_change(
                    cursor,
                    account.account_id,
                    actor,
                    "registered",
                    roles=sorted(account.roles),
                    totp=account.totp_enabled,
                )
        except psycopg.errors.UniqueViolation:
            raise EmailTakenError from None

    def by_lookup(self, email_lookup: str) -> Account | None:
        return self._one("email_lookup = %s", email_lookup)

    def by_id(self, account_id: str) -> Account | None:
        return self._one("account_id = %s", account_id)

    def _one(self, where: str, value: str) -> Account | None:
        with self.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cursor:
            cursor.execute(
                f"SELECT {_COLUMNS} FROM identity.accounts WHERE {where}",  # noqa: S608 - constant
                (value,),
            )
            row = cursor.fetchone()
        return None if row is None else _account(row)

    def rehash(self, account_id: str, password_hash: str) -> None:
        """A new hash of the same password at the current cost.

        No audit row: nothing the account holder or an operator did.
        """
        with self.pool.connection() as conn:
            conn.execute(
                "UPDATE identity.accounts SET password_hash = %s WHERE account_id = %s",
                (password_hash, account_id),
            )

    def set_totp_secret(self, account_id: str, sealed_secret: str, *, actor: str) -> None:
        """A pending TOTP secret (not yet confirmed)."""
        with self.pool.connection() as conn, conn.transaction(), conn.cursor() as cursor:
            cursor.execute(
                "UPDATE identity.accounts SET totp_secret = %s"
                " WHERE account_id = %s AND NOT totp_enabled",
                (sealed_secret, account_id),
            )
            record_change(cursor, account_id, actor, "totp_enrolment_started")

    def enable_totp(
        self, account_id: str, step: int, recovery_hashes: Iterable[str], *, actor: str
    ) -> bool:
        """Turn TOTP on with the step just used and new recovery codes; False if it was on."""
        with self.pool.connection() as conn, conn.transaction(), conn.cursor() as cursor:
            cursor.execute(
                "UPDATE identity.accounts SET totp_enabled = true, totp_last_step = %s"
                " WHERE account_id = %s AND NOT totp_enabled AND totp_secret IS NOT NULL",
                (step, account_id),
            )
            if cursor.rowcount != 1:
                return False
            cursor.execute(
                "DELETE FROM identity.recovery_codes WHERE account_id = %s", (account_id,)
            )
            for code_hash in recovery_hashes:
                cursor.execute(
                    "INSERT INTO identity.recovery_codes (account_id, code_hash) VALUES (%s, %s)",
                    (account_id, code_hash),
                )
            record_change(cursor, account_id, actor, "totp_enabled")
        return True

    def use_totp_step(self, account_id: str, step: int) -> bool:
        """Record ``step`` as used, if no later one was: False means a replayed code."""
        with self.pool.connection() as conn:
            cursor = conn.execute(
                "UPDATE identity.accounts SET totp_last_step = %s"
                " WHERE account_id = %s AND totp_last_step < %s",
                (step, account_id, step),
            )
            return cursor.rowcount == 1

    def use_recovery_code(self, account_id: str, code_hash: str) -> bool:
        """Spend a recovery code; False if it is not one of the account's or was spent."""
        with self.pool.connection() as conn, conn.transaction(), conn.cursor() as cursor:
            cursor.execute(
                "UPDATE identity.recovery_codes SET used_at = now()"
                " WHERE account_id = %s AND code_hash = %s AND used_at IS NULL",
                (account_id, code_hash),
            )
            if cursor.rowcount != 1:
                return False
            record_change(cursor, account_id, account_id, "recovery_code_used")
        return True

    def set_roles(self, account_id: str, roles: Iterable[str], *, actor: str) -> Account | None:
        """Replace the account's roles, recorded with the actor; None if there is no account."""
        wanted = sorted(set(roles))
        with self.pool.connection() as conn, conn.transaction():
            with conn.cursor(row_factory=dict_row) as cursor:
                cursor.execute(
                    "SELECT roles FROM identity.accounts WHERE account_id = %s FOR UPDATE",
                    (account_id,),
                )
                row = cursor.fetchone()
                if row is None:
                    return None
                cursor.execute(
                    "UPDATE identity.accounts SET roles = %s WHERE account_id = %s",
                    (wanted, account_id),
                )
            with conn.cursor() as plain:
                record_change(
                    plain,
                    account_id,
                    actor,
                    "roles_changed",
                    before=sorted(row["roles"]),
                    after=wanted,
                )
        return self.by_id(account_id)

    def record(self, account_id: str, actor: str, change: str, **detail: Any) -> None:
        """A change made elsewhere (a lockout released, a session revoked by reuse)."""
        with self.pool.connection() as conn, conn.transaction(), conn.cursor() as cursor:
            record_change(cursor, account_id, actor, change, **detail)

    def history(self, account_id: str) -> list[AccountChange]:
        with self.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cursor:
            cursor.execute(
                "SELECT change_id, account_id, actor, change, detail, at"
                " FROM identity.account_changes WHERE account_id = %s ORDER BY change_id",
                (account_id,),
            )
            return [AccountChange(**row) for row in cursor.fetchall()]
