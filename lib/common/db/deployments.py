"""Deployments: a named group of nodes with one profile, a provider and a count."""

from __future__ import annotations

from bootfleet.db import events, nodes, rows
from bootfleet.db.connection import Transaction
from bootfleet.errors import ConflictError


def get(tx: Transaction, key: str, lock: bool = False) -> dict:
    return rows.by_id_or_name(tx, "deployment", key, "deployment", lock)


def listing(tx: Transaction, limit: int, offset: int, state: str | None = None) -> tuple[list[dict], int]:
    where, params = ("WHERE state = :state", {"state": state}) if state else ("", {})
    total = tx.scalar(f"SELECT count(*) FROM deployment {where}", **params)
    items = tx.all(
        f"SELECT * FROM deployment {where} ORDER BY name LIMIT :limit OFFSET :offset",
        limit=limit,
        offset=offset,
        **params,
    )
    return items, total


def create(tx: Transaction, fields: dict) -> dict:
    return rows.insert(tx, "deployment", fields, f"deployment {fields.get('name')!r}")


def update(tx: Transaction, key: str, fields: dict) -> dict:
    deployment = get(tx, key, lock=True)
    if deployment["state"] != "active":
        raise ConflictError(f"deployment {deployment['name']!r} is {deployment['state']}; it cannot be changed")
    if not fields:
        return deployment
    return rows.update(tx, "deployment", deployment["id"], fields, "deployment")


def mark_deleted(tx: Transaction, key: str, source: str) -> dict:
    """Mark a deployment for teardown; cleanup removes its servers and records."""
    deployment = get(tx, key, lock=True)
    if deployment["state"] != "active":
        return deployment
    deployment = tx.one(
        "UPDATE deployment SET state = 'deleting', deleted_at = now(), updated_at = now() WHERE id = :id RETURNING *",
        id=deployment["id"],
    )
    for node in tx.all(
        "SELECT id, stage FROM node WHERE deployment_id = :id AND stage NOT IN ('deprovisioning', 'deleted')",
        id=deployment["id"],
    ):
        nodes.set_stage(tx, node["id"], "deprovisioning", source, "deployment deleted", deployment["id"])
    events.add(tx, "deployment", "deployment marked for deletion", source, deployment_id=deployment["id"])
    return deployment
