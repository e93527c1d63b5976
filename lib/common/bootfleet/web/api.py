"""The small HTTP layer every function shares: routing, typed errors, JSON.

A function module builds one `Api`, registers handlers with `@api.route`, and
exposes `api` as its functions-framework entry point:

    api = Api("boot", errors="text")

    @api.route("/ipxe")
    def node_script(request): ...

    def boot(request):          # FUNCTION_TARGET=boot
        return api(request)
"""

from __future__ import annotations

import datetime
import json
import logging
import re
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import flask
from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map, Rule

from bootfleet.db.connection import commits
from bootfleet.errors import (
    BadRequestError,
    BootfleetError,
    PayloadTooLargeError,
    RetryableDatabaseError,
    SettingsError,
)
from bootfleet.roles import default_role
from bootfleet.settings import Settings, get_settings
from bootfleet.tokens import verify_admin_token
from bootfleet.web.audit import audited, should_audit
from bootfleet.web.bodylimit import limit_body, too_large
from bootfleet.web.metrics import HANDLER, metrics_endpoint, timed

if TYPE_CHECKING:  # pydantic is imported by parse(), off the cold start of functions that parse no body
    import pydantic

log = logging.getLogger(__name__)
RETRIES = 3  # times a request is run again after a retryable database error


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime.datetime):
        return value.isoformat()
    if isinstance(value, (set, tuple)):
        return list(value)
    raise TypeError(f"cannot serialise {type(value).__name__}")


def json_response(data: Any, status: int = 200, headers: dict | None = None) -> flask.Response:
    body = json.dumps(data, default=_json_default, separators=(",", ":"))
    return flask.Response(body + "\n", status=status, mimetype="application/json", headers=headers)


def text_response(text: str, status: int = 200, headers: dict | None = None) -> flask.Response:
    return flask.Response(text, status=status, content_type="text/plain; charset=utf-8", headers=headers)


def pydantic_message(error: pydantic.ValidationError) -> str:
    """`field.sub: what was wrong` for each problem, joined."""
    parts = []
    for item in error.errors():
        field = ".".join(str(x) for x in item["loc"]) or "body"
        message = item["msg"]
        if message.startswith("Value error, "):
            message = message.removeprefix("Value error, ")
        parts.append(f"{field}: {message}")
    return "; ".join(parts)


def check_no_nul(request: flask.Request) -> None:
    """PostgreSQL text cannot hold NUL; say so instead of failing deep in a query."""
    values = [request.path, *request.args.values()]
    if request.mimetype in ("application/x-www-form-urlencoded", "multipart/form-data"):
        values += request.form.values()
    if any("\x00" in v for v in values):
        raise BadRequestError("NUL characters are not allowed in paths, parameters or forms")


def check_body_size(request: flask.Request, settings: Settings | None = None) -> None:
    limit = (settings or get_settings()).max_body_bytes
    if (request.content_length or 0) > limit:
        raise PayloadTooLargeError(too_large(limit))


def json_body(request: flask.Request, settings: Settings | None = None) -> dict:
    """The request's JSON object, or a 400 that says why not."""
    data = request.get_data(cache=True)
    limit = (settings or get_settings()).max_body_bytes
    if len(data) > limit:
        raise PayloadTooLargeError(too_large(limit))
    if b"\x00" in data or b"\\u0000" in data:
        raise BadRequestError("the request body must not contain NUL characters")
    if not data:
        raise BadRequestError("the request body must be a JSON object")
    try:
        body = json.loads(data, parse_constant=_no_constant, parse_float=_finite_float)
        # Lone surrogates (\ud800) parse, but no UTF-8 column can hold them.
        json.dumps(body, ensure_ascii=False).encode("utf-8")
    except RecursionError:
        raise BadRequestError("the request body is nested too deeply") from None
    except UnicodeEncodeError:
        raise BadRequestError("the request body must not contain lone surrogates (\\ud800-\\udfff)") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise BadRequestError(f"the request body is not valid JSON: {e}") from None
    if not isinstance(body, dict):
        raise BadRequestError("the request body must be a JSON object")
    return body


def _no_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"the number {text[:40]} is too large")
    return value


def parse(model: type[pydantic.BaseModel], data: Any) -> Any:
    import pydantic

    try:
        return model.model_validate(data)
    except pydantic.ValidationError as e:
        raise BadRequestError(pydantic_message(e)) from None


def require_admin(request: flask.Request, settings: Settings | None = None) -> None:
    verify_admin_token((settings or get_settings()).admin_token, request.headers.get("Authorization"))


class Routes:
    """Handlers registered apart from any Api (a group of endpoints in a module of its own);
    `Api.include(routes, prefix)` adds them to a function's Api."""

    def __init__(self):
        self.entries: list[tuple[str, tuple[str, ...], str | None, Callable]] = []

    def route(self, rule: str, methods: tuple[str, ...] = ("GET",), admin: bool = False, role: str | None = None):
        def register(handler: Callable) -> Callable:
            self.entries.append((rule, methods, role or (default_role(methods) if admin else None), handler))
            return handler

        return register


class Api:
    """Routes for one function; turns every error into a clear answer."""

    def __init__(self, service: str, errors: str = "json", cors: bool = False):
        self.service = service
        self.errors = errors
        self.cors = cors  # browsers on BOOTFLEET_CORS_ORIGIN may call it (the dashboard)
        self.url_map = Map(strict_slashes=False, merge_slashes=False)
        self.handlers: dict[str, tuple[Callable, str | None]] = {}
        self.static: dict[tuple[str, str], str] = {}  # (path, method) -> endpoint, for rules without variables
        self.route("/metrics", role="metrics")(metrics_endpoint)  # Prometheus (web/metrics.py)
        if flask.has_app_context() and not flask.has_request_context():
            # functions-framework loads the function inside its Flask app's context. What that app
            # answers itself (a path its `/<path:path>` rule does not match, e.g. one holding a
            # newline; /favicon.ico) is answered like every other error, not as an HTML page.
            app = flask.current_app._get_current_object()
            app.register_error_handler(HTTPException, lambda e: self.answer_error(flask.request, e))
            # BOOTFLEET_MAX_BODY_BYTES for every framing, before the app (or functions-framework's
            # after-request hook, which reads every body) reads a byte: web/bodylimit.py.
            app.wsgi_app = limit_body(app.wsgi_app, self.error)

    def route(self, rule: str, methods: tuple[str, ...] = ("GET",), admin: bool = False, role: str | None = None):
        """Register a handler; `role` (roles.py) requires a bearer token with that role or one above it;
        `admin=True` without a role: viewer to read (GET), operator to change."""
        role = role or (default_role(methods) if admin else None)

        def register(handler: Callable) -> Callable:
            endpoint = f"{handler.__name__}:{rule}:{','.join(methods)}"
            self.url_map.add(Rule(rule, endpoint=endpoint, methods=list(methods)))
            if "<" not in rule:
                self.static.update({(rule, method): endpoint for method in methods})
            self.handlers[endpoint] = (audited(handler) if should_audit(methods, role) else handler, role)
            return handler

        return register

    def include(self, routes: Routes, prefix: str = "") -> None:
        for rule, methods, role, handler in routes.entries:
            self.route(prefix + rule, methods, role=role)(handler)

    def error(self, status: int, message: str) -> flask.Response:
        if self.errors == "text":
            return text_response(f"{self.service}: {message}\n", status)
        return json_response({"error": message, "status": status}, status)

    @timed  # request counts and latency by endpoint (web/metrics.py)
    def __call__(self, request: flask.Request) -> flask.Response:
        if not self.cors:
            return self.dispatch(request)
        answer = self.preflight(request) if request.method == "OPTIONS" else self.dispatch(request)
        return add_cors_headers(request, answer)

    def preflight(self, request: flask.Request) -> flask.Response:
        """OPTIONS: the methods this path takes (what a browser asks before a cross-origin call)."""
        methods = self.url_map.bind("localhost").allowed_methods(request.path or "/")
        if not methods:
            return self.error(404, f"no such endpoint: OPTIONS {request.path}")
        return flask.Response(status=204, headers={"Allow": ", ".join(sorted({*methods, "OPTIONS"}))})

    def dispatch(self, request: flask.Request) -> flask.Response:
        settings = None
        try:
            settings = get_settings()  # once per request; a SettingsError is answered like any error
            check_body_size(request, settings)
            check_no_nul(request)
            path = request.path or "/"
            endpoint = self.static.get((path, request.method))  # a node script: no rule to match
            if endpoint is not None:
                args = {}
            else:
                endpoint, args = self.url_map.bind("localhost", path_info=path).match(path, method=request.method)
            handler, role = self.handlers[endpoint]
            request.environ[HANDLER] = handler.__name__
            if role:  # imported here: a node's request (the boot function's every one) names no role
                from bootfleet.web.access import authorize

                authorize(request, role, settings)
            return self.run_retrying(handler, request, args)
        except Exception as e:  # noqa: BLE001 - every error becomes an answer
            return self.answer_error(request, e, settings)

    @staticmethod
    def run_retrying(handler: Callable, request: flask.Request, args: dict) -> flask.Response:
        """The handler; run again (up to RETRIES times, after a short pause) when its transaction
        was rolled back for a deadlock, a serialization failure or a lost connection, and no
        other transaction of this attempt had committed (so nothing is done twice)."""
        for attempt in range(RETRIES + 1):
            committed = commits()
            try:
                return handler(request, **args)
            except RetryableDatabaseError as e:
                if attempt == RETRIES or commits() != committed:
                    raise
                log.info("retrying %s %s: %s", request.method, request.path, e.message)
                time.sleep(0.05 * 4**attempt)
        raise AssertionError("unreachable")

    def answer_error(self, request: flask.Request, e: Exception, settings: Settings | None = None) -> flask.Response:
        """The one place errors become answers: bootfleet's own errors carry their status."""
        if isinstance(e, BootfleetError):
            if e.status >= 500:  # the server's side: the log gets the whole story
                level = logging.WARNING if e.status == 503 else logging.ERROR
                log.log(level, "%s: %s", type(e).__name__, e.message, extra={"path": request.path})
            answer = self.error(e.status, e.public)
            answer.headers.update(getattr(e, "headers", {}))
            return answer
        if isinstance(e, HTTPException):
            if e.code == 405:
                allowed = ", ".join(sorted(e.valid_methods or []))
                return self.error(405, f"method {request.method} not allowed here; allowed: {allowed}")
            if e.code == 404:
                return self.error(404, f"no such endpoint: {request.method} {request.path}")
            if e.code == 413:
                limit = (settings or get_settings()).max_body_bytes
                return self.error(413, too_large(limit))
            return self.error(e.code or 500, e.description or e.name)
        log.exception("unhandled error", extra={"path": request.path, "method": request.method})
        return self.error(500, "internal error; see the server log")


def add_cors_headers(request: flask.Request, response: flask.Response,
                     settings: Settings | None = None) -> flask.Response:
    """Let the browser read this answer if the page's origin is BOOTFLEET_CORS_ORIGIN; others get no CORS header."""
    response.vary.add("Origin")
    origin = (request.headers.get("Origin") or "").rstrip("/").lower()
    try:
        allowed = (settings or get_settings()).cors_origins
    except SettingsError:  # the answer already says the server is misconfigured
        return response
    if not origin or origin not in allowed:
        return response
    response.headers["Access-Control-Allow-Origin"] = request.headers["Origin"]
    if request.method == "OPTIONS" and "Allow" in response.headers:
        response.headers["Access-Control-Allow-Methods"] = response.headers["Allow"]
        response.headers["Access-Control-Allow-Headers"] = "Authorization, Content-Type"
        response.headers["Access-Control-Max-Age"] = "600"
    return response


# A Host header as it may appear in a URL handed to nodes: a DNS name or an address, and a port.
_HOST = re.compile(r"([A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*\.?|\[[0-9A-Fa-f:.]+\])(:[0-9]{1,5})?")
# The largest offset or event id accepted: PostgreSQL's bigint.
MAX_BIGINT = 2**63 - 1


def base_url(request: flask.Request, settings: Settings | None = None) -> str:
    """The public URL of the routed domain: BOOTFLEET_BASE_URL, else the scheme and host
    this request came to (a Host header that is not a host name is a 400: it would go
    into boot scripts and configs as it is)."""
    configured = (settings or get_settings()).base_url
    if configured:
        return configured
    host = request.host or ""
    if not _HOST.fullmatch(host):
        raise BadRequestError(f"the Host header {host[:60]!r} is not a host name")
    # As the client wrote it (werkzeug's host_url would decode an xn-- name, which iPXE cannot resolve).
    return f"{request.scheme}://{host}"


def whole_number(raw: str | None, field: str, default: int, low: int, high: int) -> int:
    """A query parameter that is a whole number from `low` to `high` (ASCII digits only:
    `²` passes str.isdigit but not int()), or a 400 that says so."""
    if raw is None or raw == "":
        return default
    if not re.fullmatch(r"[0-9]{1,19}", raw) or not low <= int(raw) <= high:
        raise BadRequestError(f"{field}: a whole number from {low} to {high}, got {raw[:40]!r}")
    return int(raw)


def since_cursor(raw: str, what: str) -> tuple[int, datetime.datetime | None]:
    """A `since` parameter: an id (`what`s after it) or an ISO 8601 time (in UTC; no zone: UTC)."""
    if not raw:
        return 0, None
    if raw.isascii() and raw.isdigit():
        return whole_number(raw, "since", 0, 0, MAX_BIGINT), None
    try:
        when = datetime.datetime.fromisoformat(raw.replace("Z", "+00:00"))
        when = (when if when.tzinfo else when.replace(tzinfo=datetime.timezone.utc)).astimezone(datetime.timezone.utc)
    except (ValueError, OverflowError):
        raise BadRequestError(f"since: an {what} id or an ISO 8601 time, got {raw[:40]!r}") from None
    return 0, when


def page(request: flask.Request, default: int = 100, maximum: int = 1000) -> tuple[int, int]:
    """`?limit=&offset=` as numbers, or a 400 that says what is allowed."""
    limit = whole_number(request.args.get("limit"), "limit", default, 1, maximum)
    offset = whole_number(request.args.get("offset"), "offset", 0, 0, MAX_BIGINT)
    return limit, offset
