"""Deployments: a named group of nodes with one profile, a provider and a count."""

from __future__ import annotations

import time

from bootfleet.db import events, nodes, rows
from bootfleet.db.connection import Transaction
from bootfleet.errors import ConflictError, NotFoundError
from bootfleet.validation import is_uuid


def get(tx: Transaction, key: str, lock: bool | str = False) -> dict:
    """By id, or by name: the live deployment of that name, else the latest deleted one.
    lock: True (FOR UPDATE), or "FOR SHARE"."""
    if is_uuid(key):
        return rows.by_id_or_name(tx, "deployment", key, "deployment", lock)
    clause = " FOR UPDATE" if lock is True else f" {lock}" if lock else ""
    row = tx.one("SELECT * FROM deployment WHERE name = :key ORDER BY state = 'deleted', created_at DESC LIMIT 1"
                 + clause, key=key)
    if row is None:
        raise NotFoundError(f"deployment {key!r} not found")
    return row


def joinable(tx: Transaction, key: str) -> dict:
    """The deployment a node is put into, held (FOR SHARE) until the transaction ends: a
    delete (mark_deleted, force_delete: FOR UPDATE) waits for it, and one that went first is
    seen, so no node joins a deployment being torn down (a 409)."""
    deployment = get(tx, key, lock="FOR SHARE")
    if deployment["state"] != "active":
        raise ConflictError(f"deployment: {deployment['name']!r} is {deployment['state']}; no node can join it")
    return deployment


def listing(tx: Transaction, limit: int, offset: int, state: str | None = None) -> tuple[list[dict], int]:
    where, params = ("WHERE state = :state", {"state": state}) if state else ("", {})
    return rows.page(tx, "SELECT * FROM deployment", "deployment", where, "name", limit, offset, **params)


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


def force_delete(tx: Transaction, key: str, source: str) -> tuple[dict, list[dict]]:
    """Delete a deployment now, without waiting for its provider: every node not yet deleted
    becomes `deleted` (its MACs freed) and the deployment `deleted`. Returns the deployment
    and the servers that may be left behind ({node_id, hostname, instance_id}); the event
    names them, so an operator can remove them by hand."""
    deployment = get(tx, key, lock=True)
    if deployment["state"] == "deleted":
        return deployment, []
    left = tx.all(
        "SELECT id AS node_id, hostname, instance_id FROM node WHERE deployment_id = :id AND stage <> 'deleted'"
        " AND instance_id IS NOT NULL ORDER BY hostname, id", id=deployment["id"])
    for node in tx.all("SELECT id FROM node WHERE deployment_id = :id AND stage <> 'deleted'", id=deployment["id"]):
        nodes.set_stage(tx, node["id"], "deleted", source, "deployment deleted by force", deployment["id"])
    servers = ", ".join(f"{s['instance_id']} ({s['hostname'] or s['node_id']})" for s in left)
    message = "deployment deleted by force; " + (
        f"servers that may be left behind at provider {deployment['provider']}: {servers}" if left
        else "no node recorded a server")
    tx.run("UPDATE deployment SET state = 'deleted', deleted_at = COALESCE(deleted_at, now()), updated_at = now()"
           " WHERE id = :id", id=deployment["id"])
    events.add(tx, "deployment", message, source, deployment_id=deployment["id"])
    return get(tx, deployment["id"]), left


def set_deleted(tx: Transaction, deployment_id: str, message: str, source: str) -> None:
    """A deployment whose servers and nodes are all gone becomes `deleted` (and says so)."""
    tx.run("UPDATE deployment SET state = 'deleted', updated_at = now() WHERE id = :id", id=deployment_id)
    events.add(tx, "deployment", message, source, deployment_id=deployment_id)


def with_provider(tx: Transaction, live_only: bool = False) -> list[dict]:
    """Deployments whose servers a provider makes (not `none`); `live_only` leaves out deleted ones."""
    where = "provider <> 'none'" + (" AND state <> 'deleted'" if live_only else "")
    return tx.all(f"SELECT * FROM deployment WHERE {where} ORDER BY name")


def of_server(tx: Transaction, instance_id: str) -> dict | None:
    """The deployment of the node that records this server."""
    return tx.one("SELECT d.* FROM deployment d JOIN node n ON n.deployment_id = d.id"
                  " WHERE n.instance_id = :id LIMIT 1", id=instance_id)


def pending_deletions(tx: Transaction) -> list[dict]:
    """Live deployments with a provider, each with `pending`: how many of its deprovisioning
    nodes still have a server to delete."""
    return tx.all(
        "SELECT d.id, d.name, (SELECT count(*) FROM node n WHERE n.deployment_id = d.id"
        " AND n.stage = 'deprovisioning' AND n.instance_id IS NOT NULL) AS pending"
        " FROM deployment d WHERE d.provider <> 'none' AND d.state <> 'deleted' ORDER BY d.name"
    )


def finished_without_provider(tx: Transaction, counting_deprovisioning: bool = False) -> list[dict]:
    """`deleting` deployments without a provider whose nodes are all deleted (or, with
    `counting_deprovisioning`, all deleted or about to be: what a dry run reports)."""
    also = " AND n.stage <> 'deprovisioning'" if counting_deprovisioning else ""
    return tx.all(
        "SELECT d.id, d.name FROM deployment d WHERE d.state = 'deleting' AND d.provider = 'none'"
        f" AND NOT EXISTS (SELECT 1 FROM node n WHERE n.deployment_id = d.id AND n.stage <> 'deleted'{also})"
    )


def in_use(tx: Transaction) -> list[dict]:
    """What live deployments need: [{provider, zoned, n}] (zoned: a DNS zone is set)."""
    return tx.all("SELECT provider, dns_zone IS NOT NULL AS zoned, count(*) AS n FROM deployment"
                  " WHERE state <> 'deleted' GROUP BY provider, dns_zone IS NOT NULL ORDER BY provider")


def clock_skew(tx: Transaction) -> float:
    """Seconds the database's clock is ahead of this process's."""
    return tx.scalar("SELECT extract(epoch FROM clock_timestamp())::float8") - time.time()
