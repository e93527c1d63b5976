"""JSON logs, one object a line, with a `service` field and request keys.

No secret is logged: `redact()` blanks node tokens, enrolment secrets and passwords in
URLs wherever they appear (query strings, the NoCloud `/t/<token>/` path, a database
URL's password), and the formatter runs every line through it; the access logs
(web/accesslog.py for gunicorn, infra/nginx for the gateway) do the same.
"""

from __future__ import annotations

import json
import logging
import re
import string
import sys
import time

_RESERVED = set(vars(logging.makeLogRecord({})))
REDACTED = "[redacted]"
_SECRETS = (
    # ?token=..., &secret=..., cron_secret=..., password=... (query strings and forms)
    (re.compile(r"(?i)\b(\w*(?:token|secret|password|api_key|apikey)=)[^&\s\"']+"), rf"\1{REDACTED}"),
    # cloud-init NoCloud's seed path /config/nodes/<id>/t/<token>/
    (re.compile(r"(/t/)[^/\s\"'?]+"), rf"\1{REDACTED}"),
    # scheme://user:password@host
    (re.compile(r"(\b[a-z][a-z0-9+.-]*://[^:/@\s\"']*:)[^@\s\"']+(@)", re.IGNORECASE), rf"\1{REDACTED}\2"),
    # Authorization: Bearer <token>
    (re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+"), rf"\1{REDACTED}"),
)


# Cheap to look for: a line without any of these has nothing to redact (most lines).
_HINTS = re.compile(r"(?i)token|secret|password|api_?key|/t/|bearer|@")


# Percent-escapes of what names and values are made of are read as what they stand for first:
# `?token%3D...` and `?%74oken=...` are a token too (to the client who sent them, and to Flask).
_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")
_PLAIN = frozenset(string.ascii_letters + string.digits + "_-.~=/ %")


def _unescape(text: str) -> str:
    for _ in range(3):  # %253D is %3D is =
        decoded = _ESCAPE.sub(lambda m: chr(int(m[1], 16)) if chr(int(m[1], 16)) in _PLAIN else m[0], text)
        if decoded == text:
            break
        text = decoded
    return text


def redact(text: str) -> str:
    """`text` with every token, secret and password in it blanked (percent-escaped or not)."""
    if "%" in text:
        text = _unescape(text)
    if not _HINTS.search(text):
        return text
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return text


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str):
        super().__init__()
        self.service = service

    _second: tuple[int, str] = (-1, "")  # the last second formatted, and how

    def format(self, record: logging.LogRecord) -> str:
        second = int(record.created)
        if second != self._second[0]:
            self._second = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
        entry = {
            "time": f"{self._second[1]}.{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in sorted(record.__dict__.keys() - _RESERVED):  # what the call added (extra=...)
            if not key.startswith("_"):
                entry[key] = record.__dict__[key]
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return redact(json.dumps(entry, default=str))


def setup_logging(service: str, level: str | None = None) -> None:
    """Send this process's logs to stderr as JSON (idempotent)."""
    from bootfleet.settings import get_settings

    level = level or get_settings().log_level
    logging.getLogger("pgserver").setLevel(logging.WARNING)
    root = logging.getLogger()
    if any(isinstance(h.formatter, JsonFormatter) for h in root.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service))
    root.addHandler(handler)
    root.setLevel(level)
