"""Bearer-token authentication and role checks for both HTTP APIs.

Put :func:`bearer_guard` on the router (or controller) whose routes need a token, and
declare on each route who may call it with ``opt=requires("ops")``. The guard runs
before the request body is read, so an anonymous caller learns nothing about the
body's validation. Handlers receive the caller as the ``principal`` dependency
(:func:`provide_principal`).

- no ``Authorization: Bearer`` header, or a bad, expired or foreign token: ``401`` with
  ``WWW-Authenticate: Bearer`` (RFC 6750: ``error="invalid_request"`` for a header that is
  not ``Bearer <token>``, ``error="invalid_token"`` for a token that fails a check, no
  error for a missing header). Every 401 body says the same ("a valid bearer token is
  required"): which check failed goes to the log (``auth.refused``), never the token;
- a token whose session was revoked (logout, a reused refresh token), or a token without a
  session off the local stack: ``401`` like a bad token;
- a good token without any role this system knows (``["admin"]``, none): ``403`` on
  every route;
- a good token without one of the route's roles: ``403``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import structlog
from litestar import Request  # noqa: TC002 - litestar reads the dependency's signature at runtime
from litestar.datastructures import Headers
from litestar.di import Provide
from litestar.openapi.spec import Components, SecurityScheme
from litestar.plugins import InitPlugin, ReceiveRoutePlugin

from flightbook.config.locality import on_local_stack
from flightbook.http.problems import Problem
from flightbook.http.sessions import SESSIONS_STATE_KEY, SessionCheck
from flightbook.http.tokens import InvalidTokenError, Principal, verify_token

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from litestar.config.app import AppConfig
    from litestar.connection import ASGIConnection
    from litestar.handlers import BaseRouteHandler
    from litestar.routes import BaseRoute
    from litestar.types import Guard, Scope

    from flightbook.config.settings import Settings

    PrincipalCheck = Callable[
        [ASGIConnection[Any, Any, Any, Any], str | None, frozenset[str]], Awaitable[Principal]
    ]

__all__ = (
    "BEARER_SECURITY",
    "PRINCIPAL_STATE_KEY",
    "PUBLIC_OPT_KEY",
    "ROLES_OPT_KEY",
    "UNAUTHORIZED_DETAIL",
    "VERIFIED_STATE_KEY",
    "BearerSecurityPlugin",
    "authenticate",
    "bearer_guard",
    "bearer_security_schemes",
    "bearer_token",
    "current_principal",
    "principal_check",
    "provide_principal",
    "public",
    "requires",
    "verified_principal",
)

PUBLIC_OPT_KEY = "flightbook_public"
"""Key of a route's ``opt`` that lets the guard through without a token (:func:`public`)."""
ROLES_OPT_KEY = "flightbook_roles"
"""Key of a route's ``opt`` holding the roles that may call it (any one of them)."""
PRINCIPAL_STATE_KEY = "flightbook_principal"
"""Key of ``scope["state"]`` where the guard leaves the authenticated :class:`Principal`."""
VERIFIED_STATE_KEY = "flightbook_verified_principal"
"""Key of ``scope["state"]`` where the rate limiter leaves the principal of a token it has
verified already (:func:`verified_principal`), so the guard does not verify it again."""
BEARER_SECURITY: list[dict[str, list[str]]] = [{"bearer": []}]
"""OpenAPI security requirement of the protected routes."""

_REALM = 'Bearer realm="flightbook"'
_HEADER = "Authorization"
UNAUTHORIZED_DETAIL = "a valid bearer token is required"
_log = structlog.get_logger("flightbook.auth")


def requires(*roles: str) -> dict[str, Any]:
    """A route's ``opt``: callers need one of ``roles`` (none given: any valid token)."""
    return {ROLES_OPT_KEY: frozenset(roles)}


def public() -> dict[str, Any]:
    """A route's ``opt``: anyone may call it, without a token (login, JWKS).

    It is still an API route (``ROLES_OPT_KEY`` present), so the rate limits apply.
    """
    return {PUBLIC_OPT_KEY: True, ROLES_OPT_KEY: frozenset()}


def bearer_security_schemes() -> dict[str, SecurityScheme]:
    """The OpenAPI security scheme that :data:`BEARER_SECURITY` refers to."""
    return {
        "bearer": SecurityScheme(
            type="http",
            scheme="bearer",
            bearer_format="JWT",
            description=(
                "A JWT (EdDSA or ES256, with kid) from the identity service's POST "
                "/auth/login: claims sub, roles, sid, exp, aud and iss. A token whose "
                "session was revoked (logout, a reused refresh token, a role change) is "
                "refused within seconds."
            ),
        )
    }


class BearerSecurityPlugin(InitPlugin, ReceiveRoutePlugin):
    """The ``bearer`` scheme in the OpenAPI components, required by every guarded route.

    Requirements add up across Litestar's layers, so a router-wide one could not be lifted
    for a :func:`public` route (login, JWKS); instead each guarded route gets its own here.
    """

    def on_app_init(self, app_config: AppConfig) -> AppConfig:
        config = app_config.openapi_config
        if config is not None:
            existing = config.components
            components = existing if isinstance(existing, list) else [existing]
            scheme = Components(security_schemes=dict(bearer_security_schemes()))
            config.components = [*components, scheme]
        return app_config

    def receive_route(self, route: BaseRoute) -> None:
        for handler in getattr(route, "route_handlers", ()):
            if ROLES_OPT_KEY in handler.opt and not handler.opt.get(PUBLIC_OPT_KEY):
                handler.security = BEARER_SECURITY


def _unauthorized(reason: str, *, error: str | None, why: str | None = None) -> Problem:
    """The one 401: the same body whatever failed; ``reason`` (and ``why``) go to the log."""
    _log.info("auth.refused", reason=reason, **({"error": why} if why else {}))
    challenge = _REALM if error is None else f'{_REALM}, error="{error}"'
    return Problem(
        401,
        "unauthorized",
        UNAUTHORIZED_DETAIL,
        field=_HEADER,
        headers={"WWW-Authenticate": challenge},
    )


def authenticate(authorization: str | None, settings: Settings) -> Principal:
    """The principal of an ``Authorization`` header value.

    Raises:
        Problem: ``401`` if the header is missing, not ``Bearer``, or its token is invalid.
    """
    if not authorization or not authorization.strip():
        raise _unauthorized("missing", error=None)
    token = bearer_token(authorization)
    if token is None:
        raise _unauthorized("not_bearer", error="invalid_request")
    try:
        return verify_token(settings, token)
    except InvalidTokenError as exc:
        # PyJWT's messages name the check ("Signature has expired"), never the token
        raise _unauthorized("invalid_token", error="invalid_token", why=str(exc)) from None


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` value; None for anything else."""
    scheme, _, token = (authorization or "").strip().partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def verified_principal(scope: Scope, settings: Settings) -> Principal | None:
    """The principal of the request's valid bearer token, or None; quiet (nothing logged).

    The principal is left in ``scope["state"]`` (:data:`VERIFIED_STATE_KEY`), where the
    guard finds it instead of verifying the token a second time.
    """
    token = bearer_token(Headers.from_scope(scope).get(_HEADER))
    if token is None:
        return None
    try:
        principal = verify_token(settings, token)
    except InvalidTokenError:
        return None
    scope.setdefault("state", {})[VERIFIED_STATE_KEY] = principal
    return principal


def principal_check(
    settings: Settings,
) -> PrincipalCheck:
    """What the guard checks, for a caller that cannot use it (``WebSocket /ws/bookings``).

    The returned ``check(connection, authorization, roles)`` authenticates the
    ``Authorization`` value, checks the token's session and its roles (any of ``roles``;
    none: any role this system knows) and returns the principal.

    Raises (from ``check``):
        Problem: ``401`` or ``403`` exactly as the guard would answer.
    """
    sessionless_allowed = on_local_stack(settings)

    async def check(
        connection: ASGIConnection[Any, Any, Any, Any],
        authorization: str | None,
        roles: frozenset[str],
    ) -> Principal:
        verified = connection.scope["state"].get(VERIFIED_STATE_KEY)
        principal = (
            verified if isinstance(verified, Principal) else authenticate(authorization, settings)
        )
        if principal.session_id is None:
            if not sessionless_allowed:
                raise _unauthorized("no_session", error="invalid_token")
        else:
            sessions = connection.app.state.get(SESSIONS_STATE_KEY)
            if not isinstance(sessions, SessionCheck):  # pragma: no cover - a wiring mistake
                raise RuntimeError("this app has no SessionCheckPlugin: sessions cannot be checked")
            if not await sessions.alive(principal.session_id):
                raise _unauthorized("session_revoked", error="invalid_token")
        if not principal.roles:  # signed, but for no one this system knows
            _log.info("auth.forbidden", reason="no_known_role")
            raise Problem(
                403,
                "forbidden",
                "the token has none of the roles this API knows",
                headers={"WWW-Authenticate": f'{_REALM}, error="insufficient_scope"'},
            )
        if roles and not principal.has(*roles):
            raise Problem(
                403,
                "forbidden",
                f"this needs one of the roles: {', '.join(sorted(roles))}",
                headers={"WWW-Authenticate": f'{_REALM}, error="insufficient_scope"'},
            )
        return principal

    return check


def bearer_guard(settings: Settings) -> Guard:
    """A guard that authenticates the caller and checks the route's roles (:func:`requires`).

    A token naming a session is refused once the session is revoked (the app needs the
    :class:`~flightbook.http.sessions.SessionCheckPlugin`); a token without one only on
    the local stack (``flightbook token``).
    """
    check = principal_check(settings)

    async def guard(
        connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler
    ) -> None:
        if handler.opt.get(PUBLIC_OPT_KEY):
            return
        roles: frozenset[str] = handler.opt.get(ROLES_OPT_KEY, frozenset())
        principal = await check(connection, connection.headers.get(_HEADER), roles)
        connection.scope["state"][PRINCIPAL_STATE_KEY] = principal

    return guard


def current_principal(request: Request[Any, Any, Any]) -> Principal:
    """The caller the guard authenticated (a dependency: ``principal: Principal``)."""
    principal = request.scope["state"].get(PRINCIPAL_STATE_KEY)
    if not isinstance(principal, Principal):  # pragma: no cover - a wiring mistake
        raise RuntimeError("this route has no bearer_guard: no principal to give")
    return principal


def provide_principal() -> Provide:
    """``Provide`` for the ``principal`` dependency."""
    return Provide(current_principal, sync_to_thread=False)
