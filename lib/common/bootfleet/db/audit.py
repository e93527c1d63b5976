"""The audit log: one row per change an operator asked for through the API (web/audit.py)."""

from __future__ import annotations

import json
from typing import Any

from bootfleet.db.connection import Transaction

FIELDS = ("actor", "role", "action", "target", "outcome", "status", "client_address", "request_id", "method", "path")


def add(tx: Transaction, entry: dict[str, Any]) -> int:
    return tx.scalar(
        f"INSERT INTO audit_log ({', '.join(FIELDS)}, changes)"
        f" VALUES ({', '.join(':' + f for f in FIELDS)}, CAST(:changes AS jsonb)) RETURNING id",
        changes=json.dumps(entry.get("changes") or {}, default=str), **{f: entry.get(f) for f in FIELDS},
    )


def finish(tx: Transaction, entry_id: int, status: int, outcome: str) -> bool:
    """The answer's status (and, for a failure after the change committed, the outcome) on an entry
    written in the change's own transaction; False if there is no such entry (it was rolled back)."""
    return tx.scalar(
        "UPDATE audit_log SET status = :status, outcome = CASE WHEN :status < 400 THEN outcome ELSE :outcome END"
        " WHERE id = :id RETURNING id", id=entry_id, status=status, outcome=outcome) is not None


def listing(tx: Transaction, since: Any = None, after_id: int = 0, actor: str | None = None,
            target: str | None = None, limit: int = 100, offset: int = 0) -> tuple[list[dict], int]:
    """Entries, newest first; `target`: that target, or every target under it (`node` matches `node/...`)."""
    where, params = ["id > :after_id"], {"after_id": after_id}
    if since is not None:
        where.append("at > :since")
        params["since"] = since
    if actor:
        where.append("actor = :actor")
        params["actor"] = actor
    if target:
        where.append("(target = :target OR starts_with(target, :target || '/'))")
        params["target"] = target
    clause = " WHERE " + " AND ".join(where)
    total = tx.scalar(f"SELECT count(*) FROM audit_log{clause}", **params)
    items = tx.all(f"SELECT * FROM audit_log{clause} ORDER BY id DESC LIMIT :limit OFFSET :offset",
                   limit=limit, offset=offset, **params)
    return items, total


def count_before(tx: Transaction, days: int) -> int:
    return tx.scalar("SELECT count(*) FROM audit_log WHERE at < now() - make_interval(days => :d)", d=days)


def prune_before(tx: Transaction, days: int, batch: int) -> int:
    """Delete up to `batch` entries older than `days`; returns how many went."""
    return len(tx.all(
        "DELETE FROM audit_log WHERE id IN (SELECT id FROM audit_log"
        " WHERE at < now() - make_interval(days => :d) ORDER BY id LIMIT :n) RETURNING id",
        d=days, n=batch,
    ))
