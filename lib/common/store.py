"""The data model's queries: profiles, deployments, nodes, events.

Functions are named noun_verb and take an open `Transaction`, so a handler
composes several into one transaction. Lookups that find nothing raise
`NotFoundError` naming what was missing.
"""

from __future__ import annotations

import json
from typing import Any

import pg8000.exceptions

from .db import Transaction, error_code
from .http import ConflictError, NotFoundError
from .validation import is_uuid

# --- profiles ----------------------------------------------------------------

PROFILE_FIELDS = ("name", "kernel", "initrds", "args", "config_format", "config_template", "selectors", "metadata")
JSON_FIELDS = {"selectors", "metadata", "labels", "placement", "spec", "stage_times"}


def _assignments(fields: dict[str, Any]) -> tuple[str, dict[str, Any]]:
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


def _insert(tx: Transaction, table: str, fields: dict[str, Any], what: str) -> dict:
    names = ", ".join(fields)
    values = ", ".join(f"CAST(:{k} AS jsonb)" if k in JSON_FIELDS else f":{k}" for k in fields)
    params = {k: json.dumps(v) if k in JSON_FIELDS else v for k, v in fields.items()}
    try:
        return tx.one(f"INSERT INTO {table} ({names}) VALUES ({values}) RETURNING *", **params)
    except pg8000.exceptions.DatabaseError as e:
        raise _conflict(e, what) from None


def _update(tx: Transaction, table: str, row_id: str, fields: dict[str, Any], what: str) -> dict:
    sets, params = _assignments(fields)
    try:
        return tx.one(
            f"UPDATE {table} SET {sets}, updated_at = now() WHERE id = :row_id RETURNING *", row_id=row_id, **params
        )
    except pg8000.exceptions.DatabaseError as e:
        raise _conflict(e, what) from None


def _conflict(e: pg8000.exceptions.DatabaseError, what: str) -> Exception:
    if error_code(e) == "23505":
        detail = e.args[0].get("D", "") if isinstance(e.args[0], dict) else ""
        return ConflictError(f"{what} already exists: {detail}".rstrip(": "))
    if error_code(e) == "23503":
        return ConflictError(f"{what} refers to something that does not exist, or is still referred to")
    return e


def _by_id_or_name(tx: Transaction, table: str, key: str, what: str, lock: bool = False) -> dict:
    column = "id" if is_uuid(key) else "name"
    row = tx.one(f"SELECT * FROM {table} WHERE {column} = :key{' FOR UPDATE' if lock else ''}", key=key)
    if row is None:
        raise NotFoundError(f"{what} {key!r} not found")
    return row


def profile_get(tx: Transaction, key: str) -> dict:
    return _by_id_or_name(tx, "profile", key, "profile")


def profile_list(tx: Transaction, limit: int, offset: int) -> tuple[list[dict], int]:
    total = tx.scalar("SELECT count(*) FROM profile")
    items = tx.all("SELECT * FROM profile ORDER BY name LIMIT :limit OFFSET :offset", limit=limit, offset=offset)
    return items, total


def profile_create(tx: Transaction, fields: dict) -> dict:
    return _insert(tx, "profile", fields, f"profile {fields.get('name')!r}")


def profile_update(tx: Transaction, key: str, fields: dict) -> dict:
    profile = profile_get(tx, key)
    if not fields:
        return profile
    return _update(tx, "profile", profile["id"], fields, "profile")


def profile_delete(tx: Transaction, key: str) -> dict:
    profile = profile_get(tx, key)
    users = tx.scalar(
        "SELECT (SELECT count(*) FROM deployment WHERE profile_id = :id AND state <> 'deleted')"
        " + (SELECT count(*) FROM node WHERE profile_id = :id)",
        id=profile["id"],
    )
    if users:
        raise ConflictError(f"profile {profile['name']!r} is used by {users} deployment(s) or node(s); move them first")
    try:
        tx.run("DELETE FROM profile WHERE id = :id", id=profile["id"])
    except pg8000.exceptions.DatabaseError as e:
        raise ConflictError(f"profile {profile['name']!r} is still referred to by deleted deployments") from e
    return profile


def profile_for_labels(tx: Transaction, labels: dict) -> dict | None:
    """The profile whose selectors all match these labels; the most specific wins."""
    return tx.one(
        "SELECT * FROM profile WHERE selectors <> '{}'::jsonb AND selectors <@ CAST(:labels AS jsonb)"
        " ORDER BY (SELECT count(*) FROM jsonb_object_keys(selectors)) DESC, name LIMIT 1",
        labels=json.dumps(labels),
    )


# --- deployments ---------------------------------------------------------------


def deployment_get(tx: Transaction, key: str, lock: bool = False) -> dict:
    return _by_id_or_name(tx, "deployment", key, "deployment", lock)


def deployment_list(tx: Transaction, limit: int, offset: int, state: str | None = None) -> tuple[list[dict], int]:
    where, params = ("WHERE state = :state", {"state": state}) if state else ("", {})
    total = tx.scalar(f"SELECT count(*) FROM deployment {where}", **params)
    items = tx.all(
        f"SELECT * FROM deployment {where} ORDER BY name LIMIT :limit OFFSET :offset",
        limit=limit,
        offset=offset,
        **params,
    )
    return items, total


def deployment_create(tx: Transaction, fields: dict) -> dict:
    return _insert(tx, "deployment", fields, f"deployment {fields.get('name')!r}")


def deployment_update(tx: Transaction, key: str, fields: dict) -> dict:
    deployment = deployment_get(tx, key, lock=True)
    if deployment["state"] != "active":
        raise ConflictError(f"deployment {deployment['name']!r} is {deployment['state']}; it cannot be changed")
    if not fields:
        return deployment
    return _update(tx, "deployment", deployment["id"], fields, "deployment")


def deployment_mark_deleted(tx: Transaction, key: str, source: str) -> dict:
    """Mark a deployment for teardown; cleanup removes its servers and records."""
    deployment = deployment_get(tx, key, lock=True)
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
        node_set_stage(tx, node["id"], "deprovisioning", source, "deployment deleted", deployment["id"])
    event_add(tx, "deployment", "deployment marked for deletion", source, deployment_id=deployment["id"])
    return deployment


# --- nodes -----------------------------------------------------------------------

NODE_SELECT = "SELECT n.*, ARRAY(SELECT m.mac FROM node_mac m WHERE m.node_id = n.id ORDER BY m.mac) AS macs FROM node n"


def node_get(tx: Transaction, node_id: str, lock: bool = False) -> dict:
    if not is_uuid(node_id):
        raise NotFoundError(f"node {node_id!r} not found (node ids are UUIDs)")
    if lock:
        tx.run("SELECT 1 FROM node WHERE id = :id FOR UPDATE", id=node_id)
    node = tx.one(f"{NODE_SELECT} WHERE n.id = :id", id=node_id)
    if node is None:
        raise NotFoundError(f"node {node_id!r} not found")
    return node


def node_find(tx: Transaction, macs: list[str], smbios_uuid: str | None) -> dict | None:
    """The node with one of these MACs, else the one with this SMBIOS UUID; locked."""
    return tx.one(
        f"{NODE_SELECT} WHERE n.id = COALESCE("
        " (SELECT node_id FROM node_mac WHERE mac = ANY(:macs) LIMIT 1),"
        " (SELECT id FROM node WHERE smbios_uuid = :smbios_uuid)) FOR UPDATE OF n",
        macs=macs or [""],
        smbios_uuid=smbios_uuid,
    )


def node_list(
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
        f"{NODE_SELECT} {clause} ORDER BY n.created_at, n.id LIMIT :limit OFFSET :offset",
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


def node_create(tx: Transaction, fields: dict, source: str, message: str = "node registered") -> dict:
    fields = dict(fields)
    macs = fields.pop("macs", [])
    node = _insert(tx, "node", fields, "a node with that SMBIOS UUID")
    _set_macs(tx, node["id"], macs)
    tx.run(
        "UPDATE node SET stage_times = jsonb_build_object(stage, now()) WHERE id = :id",
        id=node["id"],
    )
    event_add(tx, "stage", message, source, node_id=node["id"], deployment_id=node["deployment_id"], stage=node["stage"])
    return node_get(tx, node["id"])


def node_update(tx: Transaction, node_id: str, fields: dict) -> dict:
    node = node_get(tx, node_id, lock=True)
    fields = dict(fields)
    if "macs" in fields:
        _set_macs(tx, node_id, fields.pop("macs"))
    if fields:
        _update(tx, "node", node["id"], fields, "a node with that SMBIOS UUID")
    return node_get(tx, node_id)


def node_delete(tx: Transaction, node_id: str, source: str) -> tuple[dict, bool]:
    """Delete a node. One with a server is marked deprovisioning instead (cleanup removes
    the server, then the row). Returns the node and whether it is gone now."""
    node = node_get(tx, node_id, lock=True)
    if node["instance_id"] and node["stage"] not in ("deleted",):
        if node["stage"] != "deprovisioning":
            node_set_stage(tx, node_id, "deprovisioning", source, "node deleted by an operator")
        return node_get(tx, node_id), False
    tx.run("DELETE FROM node WHERE id = :id", id=node_id)
    event_add(tx, "node", "node deleted", source, node_id=node_id, deployment_id=node["deployment_id"])
    return node, True


def node_set_stage(
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


def node_touch(tx: Transaction, node_id: str) -> None:
    tx.run("UPDATE node SET last_seen = now() WHERE id = :id", id=node_id)


def node_reinstall(tx: Transaction, node_id: str, source: str) -> dict:
    """Back to `registered` with a new token version: old tokens stop working and
    the next boot installs again."""
    node_get(tx, node_id, lock=True)
    tx.run("UPDATE node SET token_version = token_version + 1, stage_times = '{}'::jsonb WHERE id = :id", id=node_id)
    node_set_stage(tx, node_id, "registered", source, "reinstall requested; tokens rotated")
    return node_get(tx, node_id)


def node_profile(tx: Transaction, node: dict) -> dict | None:
    """The profile a node boots: its own, else its deployment's, else by its labels."""
    return node_boot_plan(tx, node)[0]


def node_boot_plan(tx: Transaction, node: dict) -> tuple[dict | None, dict | None]:
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
        profile = profile_for_labels(tx, node.get("labels") or {})
    return profile, deployment


# --- events ----------------------------------------------------------------------


def event_add(
    tx: Transaction,
    kind: str,
    message: str,
    source: str,
    node_id: str | None = None,
    deployment_id: str | None = None,
    stage: str | None = None,
) -> None:
    tx.run(
        "INSERT INTO event (node_id, deployment_id, stage, kind, message, source)"
        " VALUES (:node_id, :deployment_id, :stage, :kind, :message, :source)",
        node_id=node_id,
        deployment_id=deployment_id,
        stage=stage,
        kind=kind,
        message=message[:2000],
        source=source,
    )


def event_list(
    tx: Transaction,
    after_id: int = 0,
    since: Any = None,
    node_id: str | None = None,
    deployment_id: str | None = None,
    limit: int = 500,
) -> list[dict]:
    where, params = ["id > :after_id"], {"after_id": after_id, "limit": limit}
    if since is not None:
        where.append("created_at > :since")
        params["since"] = since
    if node_id:
        where.append("node_id = :node_id")
        params["node_id"] = node_id
    if deployment_id:
        where.append("deployment_id = :deployment_id")
        params["deployment_id"] = deployment_id
    return tx.all(f"SELECT * FROM event WHERE {' AND '.join(where)} ORDER BY id LIMIT :limit", **params)
