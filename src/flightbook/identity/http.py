"""The identity HTTP API (port 8002): accounts, login, sessions, MFA, public keys.

=====================================  =============  ============================================
route                                  who            answer
=====================================  =============  ============================================
``POST /auth/register``                anyone         ``201 {"account_id"}`` (role customer)
``POST /auth/login``                   anyone         ``200`` tokens (RFC 6749 §5.1)
``POST /auth/refresh``                 anyone         ``200`` a new pair; the old refresh is spent
``POST /auth/logout``                  bearer         ``204``; the session is revoked
``POST /auth/mfa/totp``                bearer         ``200 {"secret", "otpauth_uri"}``
``POST /auth/mfa/totp/confirm``        bearer         ``200 {"recovery_codes"}``; TOTP is on
``GET /me``                            bearer         ``200`` the caller's account
``GET /.well-known/jwks.json``         anyone         ``200`` the public keys (RFC 7517)
``PUT /accounts/{id}/roles``           ops            ``200`` the account; its sessions end
``POST /accounts/{id}/unlock``         ops            ``200 {"released"}``: a login lockout ends
=====================================  =============  ============================================

Every refusal is a problem document; each request is counted, timed and logged once
(``identity.handled``) with the account id where there is one, never an email, a
password, a code or a token.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import anyio.to_thread
import msgspec
from litestar import Controller, Request, Response, get, post, put
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, JSONBody

from flightbook.config.settings import Settings
from flightbook.domain.values import EMAIL_PATTERN, MAX_EMAIL_LENGTH, MAX_NAME_LENGTH, NAME_PATTERN
from flightbook.http.app import create_app
from flightbook.http.auth import public, requires
from flightbook.http.openapi import problem_responses
from flightbook.http.problems import problem_response
from flightbook.http.ratelimit import client_address
from flightbook.http.routes import api_router
from flightbook.http.telemetry import TelemetrySpec, trace_of
from flightbook.http.tokens import ROLES, Principal
from flightbook.identity.passwords import MAX_LENGTH
from flightbook.identity.service import IdentityService, RefusedError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping, Sequence

    from litestar import Litestar
    from litestar.types import ExceptionHandlersMap, LifespanHook
    from prometheus_client import CollectorRegistry

    from flightbook.identity.service import AccountView, TokenPair

__all__ = ("TELEMETRY", "create_identity_app")

Email = Annotated[
    str, msgspec.Meta(min_length=3, max_length=MAX_EMAIL_LENGTH, pattern=EMAIL_PATTERN)
]
Password = Annotated[str, msgspec.Meta(min_length=1, max_length=4 * MAX_LENGTH)]
Code = Annotated[str, msgspec.Meta(min_length=1, max_length=32)]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_NAME_LENGTH, pattern=NAME_PATTERN)]


class RegisterRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    email: Email
    password: Password
    name: Name


class LoginRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    email: Email
    password: Password
    totp: Code | None = None
    recovery_code: Code | None = None


class RefreshRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    refresh_token: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]


class TotpConfirmRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    code: Code


class RolesRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    roles: Annotated[list[str], msgspec.Meta(max_length=len(ROLES))]


class Registered(msgspec.Struct, frozen=True):
    account_id: str


class Tokens(msgspec.Struct, frozen=True):
    """RFC 6749 §5.1."""

    access_token: str
    token_type: str
    expires_in: int
    refresh_token: str


class TotpEnrolment(msgspec.Struct, frozen=True):
    secret: str
    otpauth_uri: str


class RecoveryCodes(msgspec.Struct, frozen=True):
    recovery_codes: list[str]


class AccountBody(msgspec.Struct, frozen=True):
    account_id: str
    email: str
    name: str
    roles: list[str]
    mfa: bool
    created_at: datetime


class Released(msgspec.Struct, frozen=True):
    account_id: str
    released: bool


_problems = problem_responses(
    {
        400: "Malformed request: bad JSON, wrong type, missing or unknown field, bad header",
        401: "Bad credentials, a bad code, or no valid bearer token",
        403: "The token lacks the role this needs, or has no session (a development token)",
        404: "No such account",
        409: "The account's state refuses this (email taken, MFA on already)",
        413: "The body is larger than the server accepts",
        422: "A value breaks a rule (a weak password, an unknown role)",
        429: "Too many failed logins from this address or for this account (Retry-After)",
    }
)


def _tokens(pair: TokenPair) -> Tokens:
    return Tokens(
        access_token=pair.access_token,
        token_type=pair.token_type,
        expires_in=pair.expires_in,
        refresh_token=pair.refresh_token,
    )


def _account(view: AccountView) -> AccountBody:
    return AccountBody(
        account_id=view.account_id,
        email=view.email,
        name=view.name,
        roles=list(view.roles),
        mfa=view.mfa,
        created_at=view.created_at,
    )


_NO_STORE = {"Cache-Control": "no-store"}  # RFC 6749 §5.1: token responses are not cached


class AuthController(Controller):
    path = "/auth"
    tags = ("auth",)

    @post(
        "/register",
        name="register",
        status_code=201,
        opt=public(),
        summary="Open a customer account",
        description="Passwords: at least 12 characters, not a common or breached one.",
        responses=_problems(400, 409, 413, 422, 429),
    )
    async def register(
        self,
        data: JSONBody[RegisterRequest],
        request: Request[Any, Any, Any],
        service: NamedDependency[IdentityService],
    ) -> Registered:
        account_id = await anyio.to_thread.run_sync(
            lambda: service.register(data.email, data.password, data.name)
        )
        trace_of(request).ids["account_id"] = account_id
        return Registered(account_id=account_id)

    @post(
        "/login",
        name="login",
        status_code=200,
        opt=public(),
        summary="Log in: an access token (minutes) and a refresh token (rotates on use)",
        description=(
            "Accounts with TOTP on need `totp` (or a `recovery_code`); accounts with the "
            "roles ops, agent, auditor or privacy always do. A code works once. After "
            "repeated failures the account is locked for a while, except from addresses "
            "it logged in from before (429 `account_locked`); an address with many "
            "failures is refused for a while (429 `address_throttled`)."
        ),
        responses=_problems(400, 401, 403, 413, 429),
    )
    async def login(
        self,
        data: JSONBody[LoginRequest],
        request: Request[Any, Any, Any],
        service: NamedDependency[IdentityService],
        settings: NamedDependency[Settings],
    ) -> Response[Tokens]:
        address = client_address(request.scope, settings.trusted_proxy_networks)
        pair = await anyio.to_thread.run_sync(
            lambda: service.login(
                data.email,
                data.password,
                address=address,
                totp=data.totp,
                recovery_code=data.recovery_code,
            )
        )
        return Response(_tokens(pair), headers=_NO_STORE)

    @post(
        "/refresh",
        name="refresh",
        status_code=200,
        opt=public(),
        summary="A new token pair for a refresh token, which is then spent",
        description=(
            "Presenting a spent refresh token again revokes its whole session: it was "
            "copied, and either copy may be the thief's."
        ),
        responses=_problems(400, 401, 413),
    )
    async def refresh(
        self,
        data: JSONBody[RefreshRequest],
        service: NamedDependency[IdentityService],
    ) -> Response[Tokens]:
        pair = await anyio.to_thread.run_sync(lambda: service.refresh(data.refresh_token))
        return Response(_tokens(pair), headers=_NO_STORE)

    @post(
        "/logout",
        name="logout",
        status_code=204,
        opt=requires(),
        summary="End the session: its access and refresh tokens are refused from now on",
        responses=_problems(400, 401, 403),
    )
    async def logout(
        self,
        request: Request[Any, Any, Any],
        service: NamedDependency[IdentityService],
        principal: NamedDependency[Principal],
    ) -> None:
        trace_of(request).ids["account_id"] = principal.subject
        await anyio.to_thread.run_sync(lambda: service.logout(principal))

    @post(
        "/mfa/totp",
        name="begin_totp",
        status_code=200,
        opt=requires(),
        summary="Start TOTP enrolment: a secret and an otpauth:// URI for an authenticator",
        responses=_problems(400, 401, 404, 409),
    )
    async def begin_totp(
        self,
        request: Request[Any, Any, Any],
        service: NamedDependency[IdentityService],
        principal: NamedDependency[Principal],
    ) -> Response[TotpEnrolment]:
        trace_of(request).ids["account_id"] = principal.subject
        enrolment = await anyio.to_thread.run_sync(lambda: service.begin_totp(principal))
        body = TotpEnrolment(secret=enrolment.secret, otpauth_uri=enrolment.otpauth_uri)
        return Response(body, headers=_NO_STORE)

    @post(
        "/mfa/totp/confirm",
        name="confirm_totp",
        status_code=200,
        opt=requires(),
        summary="Turn TOTP on with a first code; answers ten recovery codes, shown once",
        responses=_problems(400, 401, 404, 409, 413, 422),
    )
    async def confirm_totp(
        self,
        data: JSONBody[TotpConfirmRequest],
        request: Request[Any, Any, Any],
        service: NamedDependency[IdentityService],
        principal: NamedDependency[Principal],
    ) -> Response[RecoveryCodes]:
        trace_of(request).ids["account_id"] = principal.subject
        codes = await anyio.to_thread.run_sync(lambda: service.confirm_totp(principal, data.code))
        return Response(RecoveryCodes(recovery_codes=list(codes)), headers=_NO_STORE)


class AccountController(Controller):
    path = "/"
    tags = ("accounts",)

    @get(
        "/me",
        name="me",
        opt=requires(),
        summary="The caller's account",
        responses=_problems(400, 401, 404),
    )
    async def me(
        self,
        request: Request[Any, Any, Any],
        service: NamedDependency[IdentityService],
        principal: NamedDependency[Principal],
    ) -> AccountBody:
        trace_of(request).ids["account_id"] = principal.subject
        return _account(await anyio.to_thread.run_sync(lambda: service.me(principal)))

    @get(
        "/.well-known/jwks.json",
        name="jwks",
        opt=public(),
        summary="The public keys that verify this service's tokens (RFC 7517)",
        responses=_problems(400),
        cache_control=None,
    )
    async def jwks(self, service: NamedDependency[IdentityService]) -> Response[dict[str, Any]]:
        keys = service.signer.keys.jwks()
        return Response(keys, headers={"Cache-Control": "public, max-age=60"})

    @put(
        "/accounts/{account_id:str}/roles",
        name="set_roles",
        opt=requires("ops"),
        summary="Grant or withdraw roles (operators); recorded with who did it",
        description=(
            "The roles ops, agent, auditor and privacy need the account to have TOTP on "
            "(409 `mfa_required`). The account's sessions end, so the new roles apply at "
            "its next login."
        ),
        responses=_problems(400, 401, 403, 404, 409, 413, 422),
    )
    async def set_roles(
        self,
        account_id: FromPath[str],
        data: JSONBody[RolesRequest],
        request: Request[Any, Any, Any],
        service: NamedDependency[IdentityService],
        principal: NamedDependency[Principal],
    ) -> AccountBody:
        trace_of(request).ids["account_id"] = account_id
        view = await anyio.to_thread.run_sync(
            lambda: service.set_roles(principal, account_id, data.roles)
        )
        return _account(view)

    @post(
        "/accounts/{account_id:str}/unlock",
        name="release_lockout",
        status_code=200,
        opt=requires("ops"),
        summary="End a login lockout now (operators); recorded with who did it",
        responses=_problems(400, 401, 403, 404),
    )
    async def release_lockout(
        self,
        account_id: FromPath[str],
        request: Request[Any, Any, Any],
        service: NamedDependency[IdentityService],
        principal: NamedDependency[Principal],
    ) -> Released:
        trace_of(request).ids["account_id"] = account_id
        released = await anyio.to_thread.run_sync(
            lambda: service.release_lockout(principal.subject, account_id)
        )
        return Released(account_id=account_id, released=released)


def _on_refusal(_request: Request[Any, Any, Any], exc: RefusedError) -> Response[Any]:
    headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after is not None else None
    if exc.status == 401:
        headers = {**(headers or {}), "WWW-Authenticate": 'Bearer realm="flightbook"'}
    return problem_response(exc.status, exc.code, exc.detail, field=exc.field, headers=headers)


def _exception_handlers() -> ExceptionHandlersMap:
    return {RefusedError: _on_refusal}


TELEMETRY = TelemetrySpec(
    log_event="identity.handled",
    logger="flightbook.identity",
    counter="flightbook_identity_requests",
    counter_help="Identity requests handled, by endpoint and status",
    histogram="flightbook_identity_duration_seconds",
    histogram_help="Time to handle an identity request, by endpoint",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
    label="status",
    label_of=lambda status, _trace: str(status),
    log_label=False,
)


def create_identity_app(
    settings: Settings,
    *,
    checks: Mapping[str, Callable[[], Awaitable[bool]]],
    registry: CollectorRegistry,
    service: IdentityService,
    on_startup: Sequence[LifespanHook] = (),
    on_shutdown: Sequence[LifespanHook] = (),
) -> Litestar:
    """The identity API with its dependencies passed in (STYLE G5)."""
    router = api_router(
        settings,
        route_handlers=[AuthController, AccountController],
        service=Provide(lambda: service, sync_to_thread=False),
        telemetry=TELEMETRY,
        registry=registry,
        request_id="Echoed back, and logged with the request (else a new one)",
        exception_handlers=_exception_handlers(),
    )
    router.dependencies["settings"] = Provide(lambda: settings, sync_to_thread=False)
    return create_app(
        "flightbook identity API",
        settings,
        route_handlers=[router],
        checks=checks,
        registry=registry,
        on_startup=list(on_startup),
        on_shutdown=list(on_shutdown),
    )
