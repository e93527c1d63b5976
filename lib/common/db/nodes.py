"""Nodes: one machine each, found by MAC or SMBIOS UUID, moving through the stages."""

from __future__ import annotations

import json

from bootfleet.db import events, profiles, rows
from bootfleet.db.connection import Transaction
from bootfleet.errors import ConflictError, NotFoundError
from bootfleet.validation import is_uuid

SELECT = "SELECT n.*, ARRAY(SELECT m.mac FROM node_mac m WHERE m.node_id = n.id ORDER BY m.mac) AS macs FROM node n"


def get(tx: Transaction, node_id: str, lock: bool = False) -> dict:
    if not is_uuid(node_id):
        raise NotFoundError(f"node {node_id!r} not found (node ids are UUIDs)")
    if lock:
        tx.run("SELECT 1 FROM node WHERE id = :id FOR UPDATE", id=node_id)
    node = tx.one(f"{SELECT} WHERE n.id = :id", id=node_id)
    if node is None:
        raise NotFoundError(f"node {node_id!r} not found")
    return node


def find(tx: Transaction, macs: list[str], smbios_uuid: str | None) -> dict | None:
    """The node with one of these MACs, else the one with this SMBIOS UUID; locked."""
    return tx.one(
        f"{SELECT} WHERE n.id = COALESCE("
        " (SELECT node_id FROM node_mac WHERE mac = ANY(:macs) LIMIT 1),"
        " (SELECT id FROM node WHERE smbios_uuid = :smbios_uuid)) FOR UPDATE OF n",
        macs=macs or [""],
        smbios_uuid=smbios_uuid,
    )


def listing(
    tx: Transaction,
    limit: int,
    offset: int,
    deployment_id: str | None = None,
    stage: str | None = None,
    mac: str | None = None,
    hostname: str | None = None,
    labels: dict | None = None,
) -> tuple[list[dict], int]:
    where, params = [], {}
    if deployment_id:
        where.append("n.deployment_id = :deployment_id")
        params["deployment_id"] = deployment_id
    if stage:
        where.append("n.stage = :stage")
        params["stage"] = stage
    if mac:
        where.append("n.id IN (SELECT node_id FROM node_mac WHERE mac = :mac)")
        params["mac"] = mac
    if hostname:
        where.append("n.hostname = :hostname")
        params["hostname"] = hostname
    if labels:
        where.append("n.labels @> CAST(:labels AS jsonb)")
        params["labels"] = json.dumps(labels)
    clause = ("WHERE " + " AND ".join(where)) if where else ""
    total = tx.scalar(f"SELECT count(*) FROM node n {clause}", **params)
    items = tx.all(
        f"{SELECT} {clause} ORDER BY n.created_at, n.id LIMIT :limit OFFSET :offset",
        limit=limit,
        offset=offset,
        **params,
    )
    return items, total


def _set_macs(tx: Transaction, node_id: str, macs: list[str]) -> None:
    tx.run("DELETE FROM node_mac WHERE node_id = :id", id=node_id)
    for mac in macs:
        owner = tx.one("SELECT node_id FROM node_mac WHERE mac = :mac", mac=mac)
        if owner:
            raise ConflictError(f"MAC {mac} already belongs to node {owner['node_id']}")
        tx.run("INSERT INTO node_mac (mac, node_id) VALUES (:mac, :id)", mac=mac, id=node_id)


def create(tx: Transaction, fields: dict, source: str, message: str = "node registered") -> dict:
    fields = dict(fields)
    macs = fields.pop("macs", [])
    node = rows.insert(tx, "node", fields, "a node with that SMBIOS UUID")
    _set_macs(tx, node["id"], macs)
    tx.run(
        "UPDATE node SET stage_times = jsonb_build_object(stage, now()) WHERE id = :id",
        id=node["id"],
    )
    events.add(tx, "stage", message, source, node_id=node["id"], deployment_id=node["deployment_id"], stage=node["stage"])
    return get(tx, node["id"])


def update(tx: Transaction, node_id: str, fields: dict) -> dict:
    node = get(tx, node_id, lock=True)
    fields = dict(fields)
    if "macs" in fields:
        _set_macs(tx, node_id, fields.pop("macs"))
    if fields:
        rows.update(tx, "node", node["id"], fields, "a node with that SMBIOS UUID")
    return get(tx, node_id)


def delete(tx: Transaction, node_id: str, source: str) -> tuple[dict, bool]:
    """Delete a node. One with a server is marked deprovisioning instead (cleanup removes
    the server, then the row). Returns the node and whether it is gone now."""
    node = get(tx, node_id, lock=True)
    if node["instance_id"] and node["stage"] not in ("deleted",):
        if node["stage"] != "deprovisioning":
            set_stage(tx, node_id, "deprovisioning", source, "node deleted by an operator")
        return get(tx, node_id), False
    tx.run("DELETE FROM node WHERE id = :id", id=node_id)
    events.add(tx, "node", "node deleted", source, node_id=node_id, deployment_id=node["deployment_id"])
    return node, True


def set_stage(
    tx: Transaction, node_id: str, stage: str, source: str, message: str = "", deployment_id: str | None = None,
    seen: bool = False,
) -> None:
    """Move a node to `stage` and record the event, in one statement; `seen` also sets last_seen."""
    tx.run(
        "WITH moved AS (UPDATE node SET stage = :stage, stage_changed_at = now(),"
        " stage_times = stage_times || jsonb_build_object(CAST(:stage AS text), now()), updated_at = now(),"
        " last_seen = CASE WHEN :seen THEN now() ELSE last_seen END"
        " WHERE id = :id RETURNING id, deployment_id)"
        " INSERT INTO event (node_id, deployment_id, stage, kind, message, source)"
        " SELECT id, COALESCE(CAST(:deployment_id AS uuid), deployment_id), :stage, 'stage', :message, :source"
        " FROM moved",
        stage=stage,
        id=node_id,
        seen=seen,
        deployment_id=deployment_id,
        message=(message or f"stage {stage}")[:2000],
        source=source,
    )


def touch(tx: Transaction, node_id: str) -> None:
    tx.run("UPDATE node SET last_seen = now() WHERE id = :id", id=node_id)


def reinstall(tx: Transaction, node_id: str, source: str) -> dict:
    """Back to `registered` with a new token version: old tokens stop working and
    the next boot installs again."""
    get(tx, node_id, lock=True)
    tx.run("UPDATE node SET token_version = token_version + 1, stage_times = '{}'::jsonb WHERE id = :id", id=node_id)
    set_stage(tx, node_id, "registered", source, "reinstall requested; tokens rotated")
    return get(tx, node_id)


def profile(tx: Transaction, node: dict) -> dict | None:
    """The profile a node boots: its own, else its deployment's, else by its labels."""
    return boot_plan(tx, node)[0]


def boot_plan(tx: Transaction, node: dict) -> tuple[dict | None, dict | None]:
    """(profile, deployment) for a node, in one query where the profile is assigned."""
    row = tx.one(
        "SELECT to_jsonb(p) AS profile, to_jsonb(d) AS deployment FROM (SELECT 1) one"
        " LEFT JOIN deployment d ON d.id = CAST(:deployment_id AS uuid)"
        " LEFT JOIN profile p ON p.id = COALESCE(CAST(:profile_id AS uuid), d.profile_id)",
        deployment_id=node.get("deployment_id"),
        profile_id=node.get("profile_id"),
    )
    profile, deployment = row["profile"], row["deployment"]
    if profile is None:
        profile = profiles.for_labels(tx, node.get("labels") or {})
    return profile, deployment
