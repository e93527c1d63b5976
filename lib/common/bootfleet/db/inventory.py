"""A node's inventory and its requirement check (issue 22): stored, overridden, held nodes found."""

from __future__ import annotations

import json

from bootfleet.db.connection import Transaction


def store(tx: Transaction, node_id: str, inventory: dict, labels: dict) -> None:
    """The node's last inventory (now), and its labels with the `hw.*` ones it gives."""
    tx.run("UPDATE node SET inventory = CAST(:inv AS jsonb), inventory_at = now(), labels = CAST(:labels AS jsonb),"
           " updated_at = now() WHERE id = :id", inv=json.dumps(inventory), labels=json.dumps(labels), id=node_id)


def set_failures(tx: Transaction, node_id: str, reasons: list[str]) -> None:
    tx.run("UPDATE node SET requirement_failures = CAST(:r AS jsonb) WHERE id = :id", r=json.dumps(reasons), id=node_id)


def set_override(tx: Transaction, node_id: str, override: bool) -> None:
    tx.run("UPDATE node SET requirements_override = :o, updated_at = now() WHERE id = :id", o=override, id=node_id)


def held(tx: Transaction) -> list[str]:
    """The ids of the held nodes."""
    return [r["id"] for r in tx.all("SELECT id FROM node WHERE stage = 'held' ORDER BY stage_changed_at LIMIT 10000")]


def set_progress(tx: Transaction, node_id: str, done: int, total: int | None) -> dict:
    """How far the node's image write is (the agent's reports): bytes, total, percent, when.
    The node reported it: it is seen now too."""
    percent = round(100.0 * done / total, 1) if total else None
    progress = {"bytes": done, "total": total, "percent": percent}
    tx.run("UPDATE node SET install_progress = CAST(:p AS jsonb) || jsonb_build_object('at', now()),"
           " last_seen = now() WHERE id = :id", p=json.dumps(progress), id=node_id)
    return progress
