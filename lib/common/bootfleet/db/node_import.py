"""Many nodes at once (the bulk import): every row checked against the database first,
then all inserted with a few set-based statements, in the caller's transaction."""

from __future__ import annotations

import json
import uuid

import pg8000.exceptions

from bootfleet.db import rows
from bootfleet.db.connection import Transaction

_COLUMNS = ("id", "hostname", "ip", "labels", "profile_id", "deployment_id", "smbios_uuid", "serial")


def conflicts(tx: Transaction, items: list[dict], most: int = 20) -> list[str]:
    """What in `items` clashes with nodes already there: MACs and SMBIOS UUIDs (row numbers from 1)."""
    macs = {mac: i for i, item in enumerate(items, 1) for mac in item.get("macs") or []}
    uuids = {item["smbios_uuid"]: i for i, item in enumerate(items, 1) if item.get("smbios_uuid")}
    problems = []
    for row in tx.all("SELECT mac, node_id FROM node_mac WHERE mac = ANY(:macs) ORDER BY mac LIMIT :most",
                      macs=list(macs) or [""], most=most):
        problems.append(f"row {macs[row['mac']]}: MAC {row['mac']} already belongs to node {row['node_id']}")
    for row in tx.all("SELECT smbios_uuid, id FROM node WHERE smbios_uuid = ANY(:uuids) LIMIT :most",
                      uuids=list(uuids) or [""], most=most):
        problems.append(f"row {uuids[row['smbios_uuid']]}: SMBIOS UUID {row['smbios_uuid']} already belongs to"
                        f" node {row['id']}")
    return problems[:most]


def mac_holders(tx: Transaction, macs: list[str]) -> dict[str, str]:
    """MAC -> the id of the node that has it, for those of `macs` a node has."""
    return {row["mac"]: str(row["node_id"]) for row in
            tx.all("SELECT mac, node_id FROM node_mac WHERE mac = ANY(:macs)", macs=macs or [""])}


def hostname_conflicts(tx: Transaction, created: list[tuple[int, dict]], updated: list[tuple[int, str, dict]],
                       most: int = 20) -> list[str]:
    """Hostnames of the rows ((row number, fields)) that live nodes have already (hostnames are unique among nodes not
    deleted): a row that updates a node may keep that node's own."""
    wanted = {item["hostname"].lower(): (number, None) for number, item in created if item.get("hostname")}
    wanted.update({changes["hostname"].lower(): (number, node_id) for number, node_id, changes in updated
                   if changes.get("hostname")})
    if not wanted:
        return []
    problems = []
    for row in tx.all("SELECT id, lower(hostname) AS hostname FROM node WHERE stage <> 'deleted'"
                      " AND lower(hostname) = ANY(:names) ORDER BY 2 LIMIT :most", names=list(wanted), most=most):
        number, own = wanted[row["hostname"]]
        if own != str(row["id"]):
            problems.append(f"row {number}: hostname {row['hostname']} belongs to node {row['id']} already")
    return problems


def create_many(tx: Transaction, items: list[dict], source: str) -> list[str]:
    """Insert checked rows (the fields of `nodes.create`); returns the new ids, in order.
    A clash found only now (a concurrent create) raises ConflictError: nothing is kept."""
    for item in items:
        item["id"] = str(uuid.uuid4())
    data = json.dumps([{k: item.get(k) for k in _COLUMNS} for item in items])
    macs = json.dumps([{"mac": mac, "node_id": item["id"]} for item in items for mac in item.get("macs") or []])
    try:
        tx.run(
            "INSERT INTO node (id, hostname, ip, labels, profile_id, deployment_id, smbios_uuid, serial, stage_times)"
            " SELECT r.id, r.hostname, r.ip, COALESCE(r.labels, '{}'::jsonb), r.profile_id, r.deployment_id,"
            "  r.smbios_uuid, r.serial, jsonb_build_object('registered', now())"
            " FROM jsonb_to_recordset(CAST(:data AS jsonb)) AS r(id uuid, hostname text, ip text, labels jsonb,"
            "  profile_id uuid, deployment_id uuid, smbios_uuid text, serial text)",
            data=data,
        )
        tx.run("INSERT INTO node_mac (mac, node_id) SELECT r.mac, r.node_id"
               " FROM jsonb_to_recordset(CAST(:macs AS jsonb)) AS r(mac text, node_id uuid)", macs=macs)
    except pg8000.exceptions.DatabaseError as e:  # a unique violation becomes a ConflictError
        raise rows.conflict(e, "a node with that MAC or SMBIOS UUID") from None
    tx.run(
        "INSERT INTO event (node_id, deployment_id, stage, kind, message, source)"
        " SELECT r.id, r.deployment_id, 'registered', 'stage', 'node registered (bulk import)', :source"
        " FROM jsonb_to_recordset(CAST(:data AS jsonb)) AS r(id uuid, deployment_id uuid)",
        data=data, source=source,
    )
    return [item["id"] for item in items]
