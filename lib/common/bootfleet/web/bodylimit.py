"""BOOTFLEET_MAX_BODY_BYTES for every framing, before the application reads a byte.

A WSGI middleware around each function's app (web/api.py installs it when the function
loads, so it holds under functions-framework alone and in the router alike) and the
router's own site:

- a Content-Length over the limit: a 413 at once, the body unread (the application, and
  functions-framework's after-request hook that reads every body, never run);
- a body without a Content-Length (chunked): read here, up to one byte past the limit,
  before anything else; past it a 413, else the application gets it as a body of known
  length. A framing that cannot be read (a malformed chunk size) is a 400.

The refusal has the function's own error shape: `refuse(status, message)` is its
Api.error (a text line for boot, JSON for the others).
"""

from __future__ import annotations

import io
from collections.abc import Callable

from bootfleet.errors import SettingsError
from bootfleet.settings import get_settings

READ_SIZE = 64 * 1024


def too_large(limit: int) -> str:
    return f"the request body is larger than {limit} bytes"


def _content_length(environ: dict) -> int | None:
    raw = environ.get("CONTENT_LENGTH") or ""
    return int(raw) if raw.strip().isdigit() else None


def _read_upto(stream, size: int) -> bytes:
    parts, total = [], 0
    while total < size:
        data = stream.read(min(READ_SIZE, size - total))
        if not data:
            break
        parts.append(data)
        total += len(data)
    return b"".join(parts)


def limit_body(app, refuse: Callable[[int, str], Callable]):
    """`app` behind the body limit; `refuse(status, message)` makes the WSGI answer of a refusal."""

    def wsgi(environ, start_response):
        try:
            limit = get_settings().max_body_bytes
        except SettingsError:  # the application answers that the server is misconfigured
            return app(environ, start_response)
        length = _content_length(environ)
        if length is not None:
            if length > limit:
                return refuse(413, too_large(limit))(environ, start_response)
            return app(environ, start_response)
        chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
        if not (chunked or environ.get("wsgi.input_terminated")):
            return app(environ, start_response)  # no body (reading would wait for the client to close)
        try:
            data = _read_upto(environ["wsgi.input"], limit + 1)
        except Exception as e:  # noqa: BLE001 - gunicorn's InvalidChunkSize and kin, a client gone
            reason = type(e).__name__ if not str(e) else f"{type(e).__name__}: {str(e)[:80]}"
            return refuse(400, f"the request body cannot be read (malformed chunked framing?): {reason}")(
                environ, start_response)
        if len(data) > limit:
            return refuse(413, too_large(limit))(environ, start_response)
        environ["wsgi.input"] = io.BytesIO(data)
        environ["CONTENT_LENGTH"] = str(len(data))
        environ.pop("HTTP_TRANSFER_ENCODING", None)
        return app(environ, start_response)

    return wsgi
