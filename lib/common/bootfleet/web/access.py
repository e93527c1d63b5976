"""Who a request's bearer token is, and whether its role may call the route (roles.py).

The one role check: `Api.dispatch` calls `authorize` for every route that names a role (and
cleanup's /run, which also takes the cron secret). The bootstrap admin token
(BOOTFLEET_ADMIN_TOKEN, made by `bootfleet serve` or Terraform at install) is checked first,
as before; any other token must be a live row of api_token (db/api_tokens.py): created with
`bootfleet token create`, not revoked, not expired. Only a token shaped like ours
(`bft_...`) is looked up, so a wrong admin token costs no query.

A wrong role is a 403 that names the role needed. The caller is kept on the request
(request.environ[PRINCIPAL]) for the audit log (web/audit.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import flask

from bootfleet import roles
from bootfleet.db import api_tokens, get_database
from bootfleet.boot.trust import client_address
from bootfleet.errors import TokenError, TooManyRequestsError
from bootfleet.settings import Settings, get_settings
from bootfleet.tokens import API_TOKEN_PREFIX, hash_secret, verify_admin_token
from bootfleet.web import audit
from bootfleet.web.audit import PRINCIPAL
from bootfleet.web.metrics import HANDLER
from bootfleet.web.ratelimit import admin_failures

BOOTSTRAP = "admin"  # the bootstrap admin token's name in the audit log


@dataclass(frozen=True)
class Principal:
    name: str
    role: str
    bootstrap: bool = False


def _bearer(request: flask.Request) -> str:
    scheme, _, token = (request.headers.get("Authorization") or "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def identify(request: flask.Request, settings: Settings) -> Principal:
    """The caller, or a TokenError (401 without a token, 403 with one that is not valid). A
    client address past BOOTFLEET_ADMIN_FAILURE_LIMIT wrong tokens a minute gets a 429
    instead, whatever token it sends, until its count refills (web/ratelimit.py), so no
    token can be guessed at speed."""
    cached = request.environ.get(PRINCIPAL)
    if cached is not None:
        return cached
    failures = admin_failures(settings)
    if failures is None:
        return _identify(request, settings)
    address = str(client_address(request.remote_addr, request.headers, settings))
    wait = failures.take(address, consume=False)
    if wait:
        seconds = max(1, math.ceil(wait))
        raise TooManyRequestsError(f"too many wrong tokens from this address; try again in {seconds} s", seconds)
    try:
        return _identify(request, settings)
    except TokenError as e:
        if e.status == 403 and _bearer(request):  # a token given, and wrong
            failures.take(address)
        raise


def _identify(request: flask.Request, settings: Settings) -> Principal:
    token = _bearer(request)
    if token.startswith(API_TOKEN_PREFIX) and token.isascii():
        with get_database().transaction() as tx:
            row = api_tokens.lookup(tx, hash_secret(token))
        if row is not None:
            if row["revoked_at"] is not None:
                raise TokenError(f"the API token {row['name']!r} was revoked", 403)
            if not row["live"]:
                raise TokenError(f"the API token {row['name']!r} has expired", 403)
            principal = Principal(row["name"], row["role"])
            request.environ[PRINCIPAL] = principal
            return principal
    try:
        verify_admin_token(settings.admin_token, request.headers.get("Authorization"))
    except TokenError as e:
        if e.status == 403 and token:
            raise TokenError("the token is not valid: neither the admin token nor a live API token"
                             " (bootfleet token list)", 403) from None
        raise
    principal = Principal(BOOTSTRAP, "admin", bootstrap=True)
    request.environ[PRINCIPAL] = principal
    return principal


def authorize(request: flask.Request, role: str, settings: Settings | None = None) -> Principal:
    """The caller, if its token's role may act as `role`; a 403 naming the role needed if not."""
    principal = identify(request, settings or get_settings())
    if not roles.allows(principal.role, role):
        error = TokenError(f"this needs the {role} role (or one above it: {', '.join(_above(role))});"
                           f" the token {principal.name!r} has the {principal.role} role", 403)
        if request.method not in roles.READ_METHODS:  # an attempt to change something: the audit log keeps it
            audit.record(request, principal, request.environ.get(HANDLER, "unmatched"), 403,
                         "denied: " + error.message)
        raise error
    return principal


def _above(role: str) -> list[str]:
    return [r for r in roles.ROLES[roles.ROLES.index(role) + 1:] if r != "metrics"]
