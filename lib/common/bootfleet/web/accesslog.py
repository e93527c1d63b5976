"""gunicorn's access log without secrets: node tokens, enrolment secrets and the
NoCloud `/t/<token>/` path are blanked in the request line, path and query
(`--logger-class bootfleet.web.accesslog.RedactingLogger`; `bootfleet serve` sets it)."""

from __future__ import annotations

from gunicorn.glogging import Logger

from bootfleet.log import redact


class RedactingLogger(Logger):
    def atoms(self, resp, req, environ, request_time):
        atoms = super().atoms(resp, req, environ, request_time)
        for key in ("r", "U", "q", "f"):
            if isinstance(atoms.get(key), str):
                atoms[key] = redact(atoms[key])
        return atoms
