"""One WSGI app for the whole system: each function's functions-framework app
mounted under its prefix, the dashboard at /, and local images at /images/.

Used by `bootfleet serve` (gunicorn) and the self-hosted setup; in the cloud
each function is its own Code Engine app and nginx does this routing.
Functions and the dashboard are found under BOOTFLEET_ROOT (default: the checkout).
"""

from __future__ import annotations

import json
from pathlib import Path

import flask
import functions_framework
from werkzeug.middleware.dispatcher import DispatcherMiddleware

from bootfleet.db import get_database
from bootfleet.errors import DatabaseUnavailableError
from bootfleet.log import setup_logging
from bootfleet.settings import Settings, get_settings
from bootfleet.web.bodylimit import limit_body
from bootfleet.web.ratelimit import limit_requests

FUNCTIONS = ("boot", "config", "status", "dns", "cleanup")
# What the gateway adds to every answer (infra/nginx/bootfleet.conf.j2, security_headers; HSTS
# only there, behind TLS); tests/functional/test_router.py checks they stay the same.
SECURITY_HEADERS = (
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"),
    ("Permissions-Policy", "camera=(), microphone=(), geolocation=()"),
    ("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none';"
                                " form-action 'self'; frame-ancestors 'none'"),
)


def function_source(name: str, root: Path | None = None) -> str:
    """functions/<name>/main.py under `root` (default: BOOTFLEET_ROOT)."""
    return str(Path(root or get_settings().root) / "functions" / name / "main.py")


def create_function_app(name: str, root: Path | None = None) -> flask.Flask:
    """The function exactly as Code Engine runs it (FUNCTION_TARGET=name)."""
    return functions_framework.create_app(name, function_source(name, root))


def _site(root: Path, settings: Settings) -> flask.Flask:
    """What is not a function: the dashboard, local images, a health check."""
    site = flask.Flask("bootfleet-site", static_folder=None)
    static = root / "static"

    @site.get("/healthz")
    def healthz():
        try:
            get_database().ping()
        except DatabaseUnavailableError as e:
            return flask.jsonify(status="unavailable", error=str(e)), 503
        return flask.jsonify(status="ok")

    @site.get("/images/<path:key>")
    def image(key):
        return flask.send_from_directory(Path(settings.images_dir).resolve(), key, mimetype="application/octet-stream")

    @site.get("/")
    def index():
        return flask.send_from_directory(static, "index.html")

    @site.get("/<path:name>")
    def static_file(name):
        return flask.send_from_directory(static, name)

    @site.errorhandler(404)
    def not_found(e):
        return flask.jsonify(error=f"not found: {flask.request.path}", status=404), 404

    @site.errorhandler(405)
    def not_allowed(e):
        return flask.jsonify(error=f"method {flask.request.method} not allowed here", status=405), 405

    site.wsgi_app = limit_body(site.wsgi_app, lambda status, message: flask.Response(
        json.dumps({"error": message, "status": status}) + "\n", status=status, mimetype="application/json"))
    return site


def _slash_root(app):
    """`/boot` and `/boot/` are the same place: no redirect for clients (iPXE) to trip on."""

    def wsgi(environ, start_response):
        if not environ.get("PATH_INFO"):
            environ["PATH_INFO"] = "/"
        return app(environ, start_response)

    return wsgi


def _security_headers(app):
    """Every answer gets SECURITY_HEADERS, as behind the gateway (an answer's own value wins)."""

    def wsgi(environ, start_response):
        def start(status, headers, exc_info=None):
            present = {name.lower() for name, _ in headers}
            headers = list(headers) + [(n, v) for n, v in SECURITY_HEADERS if n.lower() not in present]
            return start_response(status, headers, exc_info)

        return app(environ, start)

    return wsgi


def create_router(root: Path | None = None, settings: Settings | None = None):
    settings = settings or get_settings()
    root = Path(root or settings.root)
    setup_logging("bootfleet", settings.log_level)
    mounts = {f"/{name}": _slash_root(create_function_app(name, root)) for name in FUNCTIONS}
    mounts["/boot"] = limit_requests(mounts["/boot"], settings)
    return _security_headers(DispatcherMiddleware(_site(root, settings), mounts))
