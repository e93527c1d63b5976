"""Scoped API tokens (roles.py): stored by their SHA-256 only, shown once when created."""

from __future__ import annotations

from bootfleet.db import rows
from bootfleet.db.connection import Transaction
from bootfleet.errors import NotFoundError
from bootfleet.validation import is_uuid

PUBLIC = "id, name, role, created_by, created_at, expires_at, last_used_at, revoked_at"
TOUCH_SECONDS = 60  # last_used_at is written at most this often per token (not on every dashboard poll)


def create(tx: Transaction, name: str, role: str, token_hash: str, created_by: str, expires_in: int | None) -> dict:
    fields = {"name": name, "role": role, "token_hash": token_hash, "created_by": created_by}
    row = rows.insert(tx, "api_token", fields, f"a live token named {name!r}")
    if expires_in:
        row = tx.one("UPDATE api_token SET expires_at = created_at + make_interval(secs => :s) WHERE id = :id"
                     f" RETURNING {PUBLIC}", s=expires_in, id=row["id"])
    return {k: row[k] for k in PUBLIC.split(", ")}


def lookup(tx: Transaction, token_hash: str) -> dict | None:
    """The token with this hash (live or not: `live` says), noting its use; None if there is none."""
    return tx.one(
        "WITH t AS (SELECT id, name, role, revoked_at, expires_at,"
        " revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now()) AS live,"
        " last_used_at FROM api_token WHERE token_hash = :h),"
        " touched AS (UPDATE api_token SET last_used_at = now() WHERE id = (SELECT id FROM t WHERE live)"
        " AND (last_used_at IS NULL OR last_used_at < now() - make_interval(secs => :every)) RETURNING id)"
        " SELECT t.*, (SELECT count(*) FROM touched) AS touched FROM t",
        h=token_hash, every=TOUCH_SECONDS,
    )


def listing(tx: Transaction, include_revoked: bool = False) -> list[dict]:
    where = "" if include_revoked else " WHERE revoked_at IS NULL"
    return tx.all(f"SELECT {PUBLIC} FROM api_token{where} ORDER BY name, created_at")


def revoke(tx: Transaction, key: str) -> dict:
    """Revoke the live token with this name (or id); it stops working at once."""
    column = "id" if is_uuid(key) else "name"
    row = tx.one(f"UPDATE api_token SET revoked_at = now() WHERE {column} = :key AND revoked_at IS NULL"
                 f" RETURNING {PUBLIC}", key=key)
    if row is None:
        raise NotFoundError(f"no live token {key!r}")
    return row
