"""What the query modules share: INSERT and UPDATE from a dict of fields (JSON columns
cast to jsonb), lookups by id or name, and database errors turned into `ConflictError`."""

from __future__ import annotations

import json
from typing import Any

import pg8000.exceptions

from bootfleet.db.connection import Transaction, error_code
from bootfleet.errors import ConflictError, NotFoundError
from bootfleet.validation import is_uuid

JSON_FIELDS = {"selectors", "metadata", "labels", "placement", "spec", "stage_times",
               "requirements", "inventory", "requirement_failures", "image", "install_progress"}


def assignments(fields: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """`a = :a, b = CAST(:b AS jsonb)` and its parameters."""
    parts, params = [], {}
    for key, value in fields.items():
        if key in JSON_FIELDS:
            parts.append(f"{key} = CAST(:{key} AS jsonb)")
            params[key] = json.dumps(value)
        else:
            parts.append(f"{key} = :{key}")
            params[key] = value
    return ", ".join(parts), params


def insert(tx: Transaction, table: str, fields: dict[str, Any], what: str) -> dict:
    names = ", ".join(fields)
    values = ", ".join(f"CAST(:{k} AS jsonb)" if k in JSON_FIELDS else f":{k}" for k in fields)
    params = {k: json.dumps(v) if k in JSON_FIELDS else v for k, v in fields.items()}
    try:
        return tx.one(f"INSERT INTO {table} ({names}) VALUES ({values}) RETURNING *", **params)
    except pg8000.exceptions.DatabaseError as e:
        raise conflict(e, what) from None


def update(tx: Transaction, table: str, row_id: str, fields: dict[str, Any], what: str) -> dict:
    sets, params = assignments(fields)
    try:
        return tx.one(
            f"UPDATE {table} SET {sets}, updated_at = now() WHERE id = :row_id RETURNING *", row_id=row_id, **params
        )
    except pg8000.exceptions.DatabaseError as e:
        raise conflict(e, what) from None


def conflict(e: pg8000.exceptions.DatabaseError, what: str) -> Exception:
    if error_code(e) == "23505":
        detail = e.args[0].get("D", "") if isinstance(e.args[0], dict) else ""
        return ConflictError(f"{what} already exists: {detail}".rstrip(": "))
    if error_code(e) == "23503":
        return ConflictError(f"{what} refers to something that does not exist, or is still referred to")
    return e


def page(tx: Transaction, select: str, table: str, where: str, order: str, limit: int, offset: int,
         **params: Any) -> tuple[list[dict], int]:
    """One page of `select ... where ORDER BY order`, and how many rows `where` matches in all
    (`table` is what to count in, with the alias `where` uses)."""
    total = tx.scalar(f"SELECT count(*) FROM {table} {where}", **params)
    items = tx.all(f"{select} {where} ORDER BY {order} LIMIT :limit OFFSET :offset", limit=limit, offset=offset,
                   **params)
    return items, total


def by_id_or_name(tx: Transaction, table: str, key: str, what: str, lock: bool | str = False) -> dict:
    """lock: True for FOR UPDATE, or the locking clause itself ("FOR SHARE")."""
    column = "id" if is_uuid(key) else "name"
    clause = " FOR UPDATE" if lock is True else f" {lock}" if lock else ""
    row = tx.one(f"SELECT * FROM {table} WHERE {column} = :key{clause}", key=key)
    if row is None:
        raise NotFoundError(f"{what} {key!r} not found")
    return row
