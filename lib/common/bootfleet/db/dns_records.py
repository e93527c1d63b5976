"""DNS records: the `dns_record` rows bootfleet owns (with the provider's record id), and
what the DNS reconcile reads from deployments and nodes to know which records should exist.

A record here is anything with `zone`, `name`, `type` and `value` (a
`bootfleet.providers.dns.base.Record`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

from bootfleet.db import rows
from bootfleet.db.connection import Transaction

if TYPE_CHECKING:
    from bootfleet.providers.dns.base import Record

COLUMNS = "zone, name, type, value, provider_id, node_id, deployment_id, created_at, updated_at"


def listing(tx: Transaction, deployment_id: str | None, limit: int, offset: int) -> tuple[list[dict], int]:
    where, params = ("WHERE deployment_id = :d", {"d": deployment_id}) if deployment_id else ("", {})
    return rows.page(tx, f"SELECT {COLUMNS} FROM dns_record", "dns_record", where, "zone, name, type, value",
                     limit, offset, **params)


def owned(tx: Transaction, names: set[str] | None = None, deployment_id: str | None = None) -> list[dict]:
    """The rows at these names and/or of this deployment (every row without either)."""
    where, params = [], {}
    if names is not None:
        where.append("name = ANY(:names)")
        params["names"] = sorted(names)
    if deployment_id:
        where.append("deployment_id = :deployment_id")
        params["deployment_id"] = deployment_id
    clause = ("WHERE " + " AND ".join(where)) if where else ""
    return tx.all(f"SELECT * FROM dns_record {clause} ORDER BY id", **params)


def provider_ids(tx: Transaction) -> set[str]:
    """The provider's ids of every record bootfleet owns (for providers that tell ownership by id)."""
    return {r["provider_id"] for r in tx.all("SELECT provider_id FROM dns_record WHERE provider_id IS NOT NULL")}


def node_names(tx: Transaction, node_id: str) -> set[str]:
    """The names of the records a node has."""
    return {r["name"] for r in tx.all("SELECT name FROM dns_record WHERE node_id = :id", id=node_id)}


def deployment_names(tx: Transaction, deployment_id: str) -> set[str]:
    """The names of a deployment's own records (not one node's)."""
    return {r["name"] for r in tx.all(
        "SELECT DISTINCT name FROM dns_record WHERE deployment_id = :d AND node_id IS NULL", d=deployment_id)}


def save(tx: Transaction, record: Record, provider_id: str | None, node_id: str | None,
         deployment_id: str | None) -> None:
    """Insert the row for `record`, or update its provider id and owners."""
    tx.run(
        "INSERT INTO dns_record (zone, name, type, value, provider_id, node_id, deployment_id)"
        " VALUES (:zone, :name, :type, :value, :provider_id, :node_id, :deployment_id)"
        " ON CONFLICT (zone, name, type, value) DO UPDATE SET provider_id = EXCLUDED.provider_id,"
        " node_id = EXCLUDED.node_id, deployment_id = EXCLUDED.deployment_id, updated_at = now()",
        zone=record.zone,
        name=record.name,
        type=record.type,
        value=record.value,
        provider_id=provider_id,
        node_id=node_id,
        deployment_id=deployment_id,
    )


def delete(tx: Transaction, record: Record) -> None:
    tx.run(
        "DELETE FROM dns_record WHERE zone = :zone AND name = :name AND type = :type AND value = :value",
        zone=record.zone,
        name=record.name,
        type=record.type,
        value=record.value,
    )


# --- what should exist: deployments and nodes ---------------------------------------------


def active_deployments(tx: Transaction, deployment_id: str | None = None) -> list[dict]:
    """Active deployments ({id, name, dns_zone, spec}), all or one."""
    where, params = ["d.state = 'active'"], {}
    if deployment_id:
        where.append("d.id = :deployment_id")
        params["deployment_id"] = deployment_id
    return tx.all(f"SELECT id, name, dns_zone, spec FROM deployment d WHERE {' AND '.join(where)}", **params)


def ready_nodes(tx: Transaction, deployment_id: str | None = None, node_id: str | None = None) -> list[dict]:
    """Ready nodes with a hostname and an IP, outside any deployment or in an active one
    ({id, hostname, ip, labels, deployment_id, dns_zone}); all, a deployment's, or one."""
    where, params = ["n.stage = 'ready'", "n.hostname IS NOT NULL", "n.ip IS NOT NULL",
                     "(d.id IS NULL OR d.state = 'active')"], {}
    if node_id:
        where.append("n.id = :node_id")
        params["node_id"] = node_id
    if deployment_id:
        where.append("n.deployment_id = :deployment_id")
        params["deployment_id"] = deployment_id
    return tx.all(
        "SELECT n.id, n.hostname, n.ip, n.labels, n.deployment_id, d.dns_zone FROM node n"
        f" LEFT JOIN deployment d ON d.id = n.deployment_id WHERE {' AND '.join(where)} ORDER BY n.id",
        **params,
    )


def node_deployment(tx: Transaction, node_id: str) -> dict | None:
    """A node's deployment as {deployment_id, name, dns_zone, spec} (all None outside one);
    None when there is no such node."""
    return tx.one(
        "SELECT n.deployment_id, d.name, d.dns_zone, d.spec FROM node n"
        " LEFT JOIN deployment d ON d.id = n.deployment_id WHERE n.id = :id",
        id=node_id,
    )


# --- a failure that must not fail the caller's transaction --------------------------------


@contextlib.contextmanager
def savepoint(tx: Transaction, name: str) -> Iterator[None]:
    """Run the block under SAVEPOINT `name`: an exception rolls back only the block (and
    goes on), the caller's transaction stays usable."""
    tx.run(f"SAVEPOINT {name}")
    try:
        yield
        tx.run(f"RELEASE SAVEPOINT {name}")
    except Exception:
        tx.run(f"ROLLBACK TO SAVEPOINT {name}")
        raise
