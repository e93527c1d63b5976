"""Webhooks and their outbox. Deliveries are written by a trigger on `event` (migration 0012),
in the transaction that writes the event; bootfleet/notify.py sends them."""

from __future__ import annotations

from bootfleet.db import rows
from bootfleet.db.connection import Transaction
from bootfleet.errors import NotFoundError
from bootfleet.validation import is_uuid

PUBLIC = "id, name, url, events, active, created_at, updated_at"  # never the secret


def _get(tx: Transaction, key: str, lock: bool = False) -> dict:
    column = "id" if is_uuid(key) else "name"
    row = tx.one(f"SELECT {PUBLIC} FROM webhook WHERE {column} = :key{' FOR UPDATE' if lock else ''}", key=key)
    if row is None:
        raise NotFoundError(f"webhook {key!r} not found")
    return row


def get(tx: Transaction, key: str) -> dict:
    return _get(tx, key)


def listing(tx: Transaction) -> list[dict]:
    return tx.all(f"SELECT {PUBLIC}, (SELECT count(*) FROM webhook_delivery d WHERE d.webhook_id = w.id"
                  " AND d.state = 'pending') AS pending FROM webhook w ORDER BY name")


def create(tx: Transaction, name: str, url: str, events: list[str], secret: str) -> dict:
    row = rows.insert(tx, "webhook", {"name": name, "url": url, "events": events, "secret": secret},
                      f"webhook {name!r}")
    return {k: row[k] for k in PUBLIC.split(", ")}


def update(tx: Transaction, key: str, fields: dict) -> dict:
    hook = _get(tx, key, lock=True)
    if fields:
        rows.update(tx, "webhook", hook["id"], fields, f"webhook {fields.get('name', hook['name'])!r}")
    return _get(tx, hook["id"])


def delete(tx: Transaction, key: str) -> dict:
    hook = _get(tx, key, lock=True)
    tx.run("DELETE FROM webhook WHERE id = :id", id=hook["id"])
    return hook


def claim_due(tx: Transaction, limit: int, lease_seconds: int) -> list[dict]:
    """Due deliveries, with their webhook's URL and secret, leased for `lease_seconds` (another
    sender skips them meanwhile; SKIP LOCKED: two senders never wait on each other)."""
    return tx.all(
        "WITH due AS (SELECT id FROM webhook_delivery WHERE state = 'pending' AND next_attempt_at <= now()"
        " ORDER BY next_attempt_at, event_id LIMIT :limit FOR UPDATE SKIP LOCKED),"
        " leased AS (UPDATE webhook_delivery d SET next_attempt_at = now() + make_interval(secs => :lease)"
        " FROM due WHERE d.id = due.id RETURNING d.*)"
        " SELECT leased.*, w.url, w.secret, w.name AS webhook FROM leased JOIN webhook w ON w.id = leased.webhook_id"
        " ORDER BY leased.event_id",
        limit=limit, lease=lease_seconds,
    )


def count_due(tx: Transaction) -> int:
    return tx.scalar("SELECT count(*) FROM webhook_delivery WHERE state = 'pending' AND next_attempt_at <= now()")


def attempted(tx: Transaction, delivery_id: str, status: int | None, error: str | None, duration_ms: int,
              delivered: bool, retry_in: float | None) -> None:
    """One attempt recorded; the delivery is delivered, due again in `retry_in` seconds, or failed (None)."""
    tx.run("INSERT INTO webhook_attempt (delivery_id, status, error, duration_ms)"
           " VALUES (:id, :status, :error, :ms)", id=delivery_id, status=status, error=error, ms=duration_ms)
    tx.run(
        "UPDATE webhook_delivery SET attempts = attempts + 1,"
        " state = CASE WHEN :delivered THEN 'delivered' WHEN CAST(:retry AS float8) IS NULL THEN 'failed'"
        " ELSE 'pending' END,"
        " delivered_at = CASE WHEN :delivered THEN now() END,"
        " next_attempt_at = now() + make_interval(secs => COALESCE(CAST(:retry AS float8), 0))"
        " WHERE id = :id",
        id=delivery_id, delivered=delivered, retry=retry_in,
    )


def deliveries(tx: Transaction, webhook_id: str, limit: int) -> list[dict]:
    """The newest deliveries of a webhook, each with every attempt."""
    return tx.all(
        "SELECT d.id, d.event_id, d.event, d.state, d.attempts, d.next_attempt_at, d.created_at, d.delivered_at,"
        " COALESCE((SELECT jsonb_agg(jsonb_build_object('at', a.at, 'status', a.status, 'error', a.error,"
        " 'duration_ms', a.duration_ms) ORDER BY a.id) FROM webhook_attempt a WHERE a.delivery_id = d.id),"
        " '[]'::jsonb) AS attempt_log"
        " FROM webhook_delivery d WHERE d.webhook_id = :id ORDER BY d.created_at DESC, d.event_id DESC LIMIT :limit",
        id=webhook_id, limit=limit,
    )


def prune_before(tx: Transaction, days: int, batch: int) -> int:
    """Finished deliveries (delivered or failed) older than `days`."""
    return len(tx.all(
        "DELETE FROM webhook_delivery WHERE id IN (SELECT id FROM webhook_delivery WHERE state <> 'pending'"
        " AND created_at < now() - make_interval(days => :d) LIMIT :n) RETURNING id", d=days, n=batch))
