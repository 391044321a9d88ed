"""The identity use cases: register, log in, refresh, log out, MFA, roles (ADR 0019).

Synchronous (the HTTP layer runs them in worker threads: Argon2id is CPU work by
design). Each refusal is an :class:`RefusedError` carrying the HTTP status and
problem code it is answered with; what was refused and why is logged by the caller
without personal data.

The account id is the tokens' ``sub`` and the bookings' customer id, and the subject
whose data key seals the account's email, name and TOTP secret: erasing the customer
(``POST /customers/{id}/erasure``) shreds them too, and the account can no longer log in.
"""

from __future__ import annotations

import getpass
import hashlib
import unicodedata
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from flightbook.http.tokens import ROLES
from flightbook.identity import mfa
from flightbook.identity.accounts import Account, EmailTakenError
from flightbook.identity.passwords import PasswordHasher, WeakPasswordError, check_password

if TYPE_CHECKING:
    from collections.abc import Iterable

    from flightbook.eventstore.pii import PersonalDataVault
    from flightbook.http.tokens import Principal, TokenSigner
    from flightbook.identity.accounts import AccountChange, PostgresAccounts
    from flightbook.identity.sessions import SessionStore
    from flightbook.identity.throttle import LoginThrottle

__all__ = (
    "EMAIL_LOOKUP_SUBJECT",
    "MFA_ROLES",
    "AccountView",
    "Enrolment",
    "IdentityService",
    "NewAccount",
    "RefusedError",
    "TokenPair",
    "cli_actor",
    "normalise_email",
)

MFA_ROLES = frozenset({"ops", "agent", "auditor", "privacy"})
"""Roles whose accounts must log in with a second factor."""
EMAIL_LOOKUP_SUBJECT = "identity:email-lookup"
"""The vault subject whose key makes the email lookup keys (never erased)."""


class RefusedError(Exception):
    """A refused request: answered as a problem document with this status and code."""

    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        *,
        field: str | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.field = field
        self.retry_after = retry_after


def _bad_credentials() -> RefusedError:
    # the same answer whether the email is unknown or the password wrong
    return RefusedError(401, "invalid_credentials", "the email or the password is wrong")


def _code_hash(account_id: str, code: str) -> str:
    """A recovery code as stored: salted with the account, so one guess tests one account."""
    return hashlib.sha256(f"{account_id}:{mfa.recovery_code_hash(code)}".encode()).hexdigest()


def normalise_email(email: str) -> str:
    """The form the lookup key is made of: NFKC, trimmed, lower-case."""
    return unicodedata.normalize("NFKC", email).strip().lower()


def cli_actor() -> str:
    """Who acts from the command line: ``cli:<os user>``."""
    try:
        return f"cli:{getpass.getuser()}"
    except OSError:
        return "cli:unknown"


@dataclass(frozen=True)
class TokenPair:
    """An RFC 6749 §5.1 token response."""

    access_token: str
    expires_in: int
    refresh_token: str
    token_type: str = "Bearer"  # noqa: S105 - the RFC 6750 token type, not a secret


@dataclass(frozen=True)
class AccountView:
    """An account as its holder (``GET /me``) or an operator sees it."""

    account_id: str
    email: str
    name: str
    roles: tuple[str, ...]
    mfa: bool
    created_at: datetime


@dataclass(frozen=True)
class Enrolment:
    """A TOTP secret to put into an authenticator app."""

    secret: str
    otpauth_uri: str


@dataclass(frozen=True)
class NewAccount:
    """What ``flightbook accounts create`` shows once: the id and, with MFA, the secret."""

    account_id: str
    enrolment: Enrolment | None
    recovery_codes: tuple[str, ...]


class IdentityService:
    """The use cases over accounts, sessions, the throttle, the vault and the signer."""

    def __init__(
        self,
        *,
        accounts: PostgresAccounts,
        sessions: SessionStore,
        throttle: LoginThrottle,
        vault: PersonalDataVault,
        hasher: PasswordHasher,
        signer: TokenSigner,
        access_ttl_seconds: int,
    ) -> None:
        self.accounts = accounts
        self.sessions = sessions
        self.throttle = throttle
        self.vault = vault
        self.hasher = hasher
        self.signer = signer
        self.access_ttl = access_ttl_seconds

    # -- accounts -----------------------------------------------------------------------------

    def lookup_of(self, email: str) -> str:
        return self.vault.digest(EMAIL_LOOKUP_SUBJECT, normalise_email(email))

    def register(self, email: str, password: str, name: str) -> str:
        """A new customer account; its id."""
        return self._create(email, password, name, roles=("customer",), actor=None).account_id

    def create_account(
        self, email: str, password: str, name: str, *, roles: Iterable[str], actor: str
    ) -> NewAccount:
        """An account made by an operator's command (the first ``ops`` one, say).

        With a role that needs MFA, TOTP is enrolled at once and its secret shown once.
        """
        return self._create(email, password, name, roles=tuple(roles), actor=actor)

    def _create(
        self, email: str, password: str, name: str, *, roles: tuple[str, ...], actor: str | None
    ) -> NewAccount:
        unknown = sorted(set(roles) - ROLES)
        if unknown:
            raise RefusedError(422, "unknown_role", f"no such role: {', '.join(unknown)}")
        try:
            check_password(password, context=(email.partition("@")[0], name))
        except WeakPasswordError as exc:
            raise RefusedError(422, "weak_password", str(exc), field="password") from None
        account_id = uuid.uuid4().hex
        enrolment: Enrolment | None = None
        codes: tuple[str, ...] = ()
        secret: str | None = None
        if MFA_ROLES.intersection(roles):
            secret = mfa.new_secret()
            enrolment = Enrolment(secret, mfa.provisioning_uri(secret, account_label=email))
            codes = tuple(mfa.new_recovery_codes())
        account = Account(
            account_id=account_id,
            email_lookup=self.lookup_of(email),
            email=self.vault.seal(account_id, normalise_email(email)),
            name=self.vault.seal(account_id, name),
            password_hash=self.hasher.hash(password),
            roles=tuple(sorted(set(roles))),
            totp_secret=None if secret is None else self.vault.seal(account_id, secret),
            totp_enabled=secret is not None,
            totp_last_step=0,
            created_at=datetime.now(UTC),
            erased_at=None,
        )
        try:
            self.accounts.create(
                account,
                actor=actor or account_id,
                recovery_hashes=[_code_hash(account_id, code) for code in codes],
            )
        except EmailTakenError:
            raise RefusedError(
                409, "email_taken", "an account with this email exists", field="email"
            ) from None
        return NewAccount(account_id, enrolment, codes)

    def me(self, principal: Principal) -> AccountView:
        account = self._live_account(principal.subject)
        return self._view(account)

    def _view(self, account: Account) -> AccountView:
        return AccountView(
            account_id=account.account_id,
            email=self.vault.open(account.account_id, account.email),
            name=self.vault.open(account.account_id, account.name),
            roles=account.roles,
            mfa=account.totp_enabled,
            created_at=account.created_at,
        )

    def _live_account(self, account_id: str) -> Account:
        account = self.accounts.by_id(account_id)
        if account is None or self._erased(account):
            raise RefusedError(404, "not_found", "no such account")
        return account

    def _erased(self, account: Account) -> bool:
        return account.erased_at is not None or self.vault.is_erased(
            account.account_id, account.email
        )

    # -- login and sessions -------------------------------------------------------------------

    def login(
        self,
        email: str,
        password: str,
        *,
        address: str,
        totp: str | None = None,
        recovery_code: str | None = None,
    ) -> TokenPair:
        lookup = self.lookup_of(email)
        refusal = self.throttle.refusal(lookup, address)
        if refusal is not None:
            detail = (
                "too many failed logins from this address; try again later"
                if refusal.code == "address_throttled"
                else "too many failed logins for this account; try again later"
            )
            raise RefusedError(429, refusal.code, detail, retry_after=refusal.retry_after)
        account = self.accounts.by_lookup(lookup)
        if account is None:
            self.hasher.dummy_verify(password)
            self.throttle.failed(lookup, address)
            raise _bad_credentials()
        if not self.hasher.verify(account.password_hash, password) or self._erased(account):
            self.throttle.failed(lookup, address)
            raise _bad_credentials()
        self._second_factor(account, lookup, address, totp=totp, recovery_code=recovery_code)
        if self.hasher.needs_rehash(account.password_hash):
            self.accounts.rehash(account.account_id, self.hasher.hash(password))
        self.throttle.succeeded(lookup, address)
        session_id, refresh = self.sessions.open(account.account_id)
        return self._pair(account, session_id, refresh)

    def _second_factor(
        self,
        account: Account,
        lookup: str,
        address: str,
        *,
        totp: str | None,
        recovery_code: str | None,
    ) -> None:
        if not account.totp_enabled or account.totp_secret is None:
            if MFA_ROLES.intersection(account.roles):
                raise RefusedError(
                    403,
                    "mfa_enrollment_required",
                    "this account's roles need a second factor: enrol TOTP first",
                )
            return
        if recovery_code:
            if self.accounts.use_recovery_code(
                account.account_id, _code_hash(account.account_id, recovery_code)
            ):
                return
        elif totp:
            secret = self.vault.open(account.account_id, account.totp_secret)
            step = mfa.matching_step(secret, totp, after_step=account.totp_last_step)
            if step is not None and self.accounts.use_totp_step(account.account_id, step):
                return
        else:
            raise RefusedError(
                401,
                "totp_required",
                "this account needs its TOTP code (or a recovery code)",
                field="totp",
            )
        self.throttle.failed(lookup, address)
        raise RefusedError(
            401, "invalid_totp", "the code is wrong, expired or used already", field="totp"
        )

    def _pair(self, account: Account, session_id: str, refresh: str) -> TokenPair:
        amr = ["pwd", "otp"] if account.totp_enabled else ["pwd"]
        access = self.signer.sign(
            subject=account.account_id,
            roles=account.roles,
            ttl_seconds=self.access_ttl,
            session_id=session_id,
            extra={"amr": amr},
        )
        return TokenPair(access_token=access, expires_in=self.access_ttl, refresh_token=refresh)

    def refresh(self, refresh_token: str) -> TokenPair:
        refused = RefusedError(
            401,
            "invalid_grant",
            "the refresh token is not valid (spent, revoked or expired)",
            field="refresh_token",
        )
        outcome = self.sessions.refresh(refresh_token)
        if outcome.token is None or outcome.account_id is None or outcome.session_id is None:
            raise refused
        account = self.accounts.by_id(outcome.account_id)
        if account is None or self._erased(account):
            self.sessions.revoke(outcome.session_id, reason="account_erased", actor="identity")
            raise refused
        return self._pair(account, outcome.session_id, outcome.token)

    def logout(self, principal: Principal) -> None:
        if principal.session_id is None:
            raise RefusedError(
                403, "no_session", "this token has no session to end (a development token)"
            )
        self.sessions.revoke(principal.session_id, reason="logout", actor=principal.subject)

    # -- MFA ----------------------------------------------------------------------------------

    def begin_totp(self, principal: Principal) -> Enrolment:
        account = self._live_account(principal.subject)
        if account.totp_enabled:
            raise RefusedError(409, "mfa_enabled", "TOTP is on for this account already")
        secret = mfa.new_secret()
        self.accounts.set_totp_secret(
            account.account_id,
            self.vault.seal(account.account_id, secret),
            actor=principal.subject,
        )
        email = self.vault.open(account.account_id, account.email)
        return Enrolment(secret, mfa.provisioning_uri(secret, account_label=email))

    def confirm_totp(self, principal: Principal, code: str) -> tuple[str, ...]:
        """Turn TOTP on with a first code; the recovery codes, shown once."""
        account = self._live_account(principal.subject)
        if account.totp_enabled:
            raise RefusedError(409, "mfa_enabled", "TOTP is on for this account already")
        if account.totp_secret is None:
            raise RefusedError(
                409, "mfa_not_started", "start with POST /auth/mfa/totp to get a secret"
            )
        secret = self.vault.open(account.account_id, account.totp_secret)
        step = mfa.matching_step(secret, code)
        if step is None:
            raise RefusedError(422, "invalid_totp", "the code does not match", field="code")
        codes = tuple(mfa.new_recovery_codes())
        hashes = [_code_hash(account.account_id, c) for c in codes]
        if not self.accounts.enable_totp(account.account_id, step, hashes, actor=principal.subject):
            raise RefusedError(409, "mfa_enabled", "TOTP is on for this account already")
        return codes

    # -- operators ----------------------------------------------------------------------------

    def set_roles(self, actor: Principal, account_id: str, roles: Iterable[str]) -> AccountView:
        """An operator's grant or withdrawal of roles.

        The account's sessions end, so the new roles apply at its next login.
        """
        wanted = tuple(sorted(set(roles)))
        unknown = sorted(set(wanted) - ROLES)
        if unknown:
            raise RefusedError(
                422, "unknown_role", f"no such role: {', '.join(unknown)}", field="roles"
            )
        account = self._live_account(account_id)
        if account_id == actor.subject and "ops" not in wanted:
            raise RefusedError(
                409, "own_ops_role", "an operator cannot withdraw their own ops role"
            )
        if MFA_ROLES.intersection(wanted) and not account.totp_enabled:
            raise RefusedError(
                409,
                "mfa_required",
                "these roles need a second factor: the account must turn TOTP on first",
                field="roles",
            )
        changed = self.accounts.set_roles(account_id, wanted, actor=actor.subject)
        if changed is None:  # pragma: no cover - erased between the two reads
            raise RefusedError(404, "not_found", "no such account")
        if changed.roles != account.roles:
            self.sessions.revoke_all(account_id, reason="roles_changed", actor=actor.subject)
        return self._view(changed)

    def release_lockout(self, actor: str, account_id: str) -> bool:
        account = self._live_account(account_id)
        email = self.vault.open(account.account_id, account.email)
        released = self.throttle.release(self.lookup_of(email))
        self.accounts.record(account_id, actor, "lockout_released", was_locked=released)
        return released

    def history(self, account_id: str) -> list[AccountChange]:
        return self.accounts.history(account_id)

    def find(self, email: str) -> Account | None:
        """The account with this email (operators' commands)."""
        return self.accounts.by_lookup(self.lookup_of(email))
