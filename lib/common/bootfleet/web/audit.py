"""The audit log's writer: every change an operator asks for through the API (issue 23).

`Api.route` wraps each handler whose role is needed to change something (operator or admin,
a method other than GET) in `audited`: after the handler, one row in audit_log (db/audit.py)
with the token's name and role, the action (`profile.create`, `deployment.scale`,
`node.reinstall`, `token.revoke`, ...), its target, the fields' old and new values, the
outcome (`ok`, or the error the caller got), the client address (boot/trust.py) and the
request id (the caller's `X-Request-Id` if it is a plain one, else a new one; the answer
carries it back). A token whose role is too low is recorded too (`denied`), from
web/access.py. Handlers say what they changed with `note(request, ...)`, and pass the change's
transaction (`tx=`) on the last call: the entry is written in it, so it commits with the change
or not at all, and the answer's status is added after. A request that fails is recorded in a
transaction of its own; a handler that says nothing is recorded with the target from its path.

Never a secret: values of fields whose names hold token, secret, password or hash are
written as [redacted], and a created token is never in the answer's copy that is recorded.
"""

from __future__ import annotations

import functools
import logging
import re
import uuid
from collections.abc import Callable
from typing import Any

import flask

from bootfleet.boot.trust import client_address
from bootfleet.db import audit, get_database
from bootfleet.db.connection import Transaction
from bootfleet.errors import BootfleetError, RetryableDatabaseError
from bootfleet.settings import get_settings

log = logging.getLogger(__name__)
NOTE = "bootfleet.audit"  # request.environ key: what the handler said it changed
WRITTEN = "bootfleet.audit.id"  # request.environ key: the entry written in the change's own transaction
CALL = "bootfleet.audit.call"  # request.environ key: (handler name, path arguments)
PRINCIPAL = "bootfleet.principal"  # request.environ key: who the caller is (web/access.py puts it there)
REDACTED = "[redacted]"
_SECRET_FIELD = re.compile(r"(?i)(token|secret|password|hash|api_key)$")  # not token_version
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
ACTIONS = {"node_import_all": "node.import", "reconcile": "dns.reconcile", "unknown_forget": "unknown.forget",
           "deployment_reconcile": "deployment.reconcile"}
MAX_VALUE = 2000  # characters of one value kept (a template can be long)


def request_id(request: flask.Request) -> str:
    rid = request.environ.get("bootfleet.request_id")
    if rid is None:
        given = request.headers.get("X-Request-Id", "")
        rid = given if _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
        request.environ["bootfleet.request_id"] = rid
    return rid


def _clean(name: str, value: Any) -> Any:
    if _SECRET_FIELD.search(name):
        return REDACTED
    if isinstance(value, str) and len(value) > MAX_VALUE:
        return value[:MAX_VALUE] + "…"
    return value


def changes(old: dict | None, new: dict | None, fields=None) -> dict:
    """{field: {"old": ..., "new": ...}} for the fields whose values differ (`fields`: only these)."""
    old, new = old or {}, new or {}
    names = fields if fields is not None else sorted(set(old) | set(new))
    out = {}
    for name in names:
        if name in ("id", "created_at", "updated_at", "stage_changed_at", "last_seen"):
            continue
        before, after = old.get(name), new.get(name)
        if before != after:
            out[name] = {"old": _clean(name, before), "new": _clean(name, after)}
    return out


def note(request: flask.Request, target: str | None = None, old: dict | None = None, new: dict | None = None,
         fields=None, action: str | None = None, tx: Transaction | None = None) -> None:
    """What this request changes, for its audit entry: the target (`profile/web`), the old and
    new rows (only differing fields are kept; `fields`: only these), or the action's own name.
    With `tx`, the change's transaction, the entry is written in it: it commits with the change
    or not at all (the answer's status is added once the answer is ready)."""
    entry = request.environ.setdefault(NOTE, {})
    if target is not None:
        entry["target"] = target
    if action is not None:
        entry["action"] = action
    if old is not None or new is not None:
        entry["changes"] = changes(old, new, fields)
    if tx is not None and CALL in request.environ:
        name, args = request.environ[CALL]
        request.environ[WRITTEN] = audit.add(tx, _entry(request, request.environ.get(PRINCIPAL), name, None, "ok",
                                                        args))


def _action(handler_name: str) -> str:
    return ACTIONS.get(handler_name) or handler_name.replace("_", ".", 1)


def _entry(request: flask.Request, principal, handler_name: str, status: int | None, outcome: str,
           args: dict | None) -> dict:
    noted = request.environ.get(NOTE, {})
    settings = get_settings()
    address = client_address(request.remote_addr, request.headers, settings)
    default_target = "/".join(str(v) for v in (args or {}).values())
    noun = _action(handler_name).split(".")[0]
    entry = {
        "actor": principal.name if principal else "-", "role": principal.role if principal else "-",
        "action": noted.get("action") or _action(handler_name),
        "target": noted.get("target") or (f"{noun}/{default_target}" if default_target else noun),
        "changes": noted.get("changes") or {}, "outcome": outcome[:500], "status": status,
        "client_address": str(address) if address else None, "request_id": request_id(request),
        "method": request.method, "path": ((request.script_root or "") + request.path)[:500],
    }
    return entry


def record(request: flask.Request, principal, handler_name: str, status: int, outcome: str,
           args: dict | None = None) -> None:
    """Finish the entry the change's transaction wrote (its status; or, if the request failed after
    that transaction committed, its outcome), else write one (its own transaction: a failed change is
    recorded too). A failure to write it is logged, and the answer goes out as it is."""
    entry = _entry(request, principal, handler_name, status, outcome, args)
    try:
        with get_database().transaction() as tx:
            written = request.environ.get(WRITTEN)
            if written is None or not audit.finish(tx, written, status, outcome[:500]):
                audit.add(tx, entry)
    except BootfleetError as e:
        log.error("audit entry not written: %s", e.message, extra={"audit": {k: entry[k] for k in (
            "actor", "action", "target", "status", "request_id")}})


def audited(handler: Callable) -> Callable:
    """The handler, with its audit entry written after it, whatever its outcome."""

    @functools.wraps(handler)
    def run(request: flask.Request, **args) -> flask.Response:
        rid = request_id(request)
        request.environ.pop(NOTE, None)  # a retried attempt starts afresh
        request.environ.pop(WRITTEN, None)
        request.environ[CALL] = (handler.__name__, args)
        try:
            response = handler(request, **args)
        except RetryableDatabaseError:
            raise  # run again (web/api.py); the last attempt is recorded
        except BootfleetError as e:
            record(request, request.environ.get(PRINCIPAL), handler.__name__, e.status, e.public, args)
            raise
        except Exception:
            record(request, request.environ.get(PRINCIPAL), handler.__name__, 500, "internal error", args)
            raise
        if response.status_code < 400:
            _target_from_answer(request, handler.__name__, response)
        record(request, request.environ.get(PRINCIPAL), handler.__name__, response.status_code,
               "ok" if response.status_code < 400 else "error", args)
        response.headers["X-Request-Id"] = rid
        return response

    return run


def _target_from_answer(request: flask.Request, handler_name: str, response: flask.Response) -> None:
    """A create's target is what it created (its name, else its id)."""
    noted = request.environ.setdefault(NOTE, {})
    if "target" in noted or response.mimetype != "application/json":
        return
    body = response.get_json(silent=True)
    if isinstance(body, dict) and (body.get("name") or body.get("id")):
        noted["target"] = f"{_action(handler_name).split('.')[0]}/{body.get('name') or body.get('id')}"


def should_audit(methods, role: str | None) -> bool:
    return role in ("operator", "admin") and not set(methods) <= {"GET", "HEAD"}
