"""Nodes: one machine each, found by MAC or SMBIOS UUID, moving through the stages."""

from __future__ import annotations

import json
import re

import pg8000.exceptions

from bootfleet import metrics
from bootfleet.db import events, profiles, rows
from bootfleet.db.connection import Transaction
from bootfleet.errors import BadRequestError, ConflictError, NotFoundError, ValidationError
from bootfleet.validation import check_labels, is_uuid, normalize_mac

SELECT = "SELECT n.*, ARRAY(SELECT m.mac FROM node_mac m WHERE m.node_id = n.id ORDER BY m.mac) AS macs FROM node n"


def get(tx: Transaction, node_id: str, lock: bool = False) -> dict:
    if not is_uuid(node_id):
        raise NotFoundError(f"node {node_id!r} not found (node ids are UUIDs)")
    # Locked and read in one statement: under READ COMMITTED a row locked after a concurrent
    # change is read as that change left it.
    node = tx.one(f"{SELECT} WHERE n.id = :id{' FOR UPDATE OF n' if lock else ''}", id=node_id)
    if node is None:
        raise NotFoundError(f"node {node_id!r} not found")
    return node


def listing(
    tx: Transaction,
    limit: int,
    offset: int,
    deployment_id: str | None = None,
    stage: str | None = None,
    mac: str | None = None,
    hostname: str | None = None,
    labels: dict | None = None,
    outside: bool = False,
    include_deleted: bool = False,
    stuck: dict[str, int] | None = None,
) -> tuple[list[dict], int]:
    """A page of nodes; `outside`: only those in no deployment; deleted ones only if asked
    (or when `stage` is deleted); `stuck` (the stage timeouts, {stage: seconds}): only the nodes
    in their stage past its timeout (what node_view flags `stuck`)."""
    where, params = [], {}
    if stuck is not None:
        limits = [f"(n.stage = :stuck_stage_{i} AND n.stage_changed_at < now() - make_interval(secs => :stuck_s_{i}))"
                  for i in range(len(stuck))]
        where.append("(" + (" OR ".join(limits) or "false") + ")")
        for i, (name, seconds) in enumerate(sorted(stuck.items())):
            params[f"stuck_stage_{i}"], params[f"stuck_s_{i}"] = name, seconds
    if deployment_id:
        where.append("n.deployment_id = :deployment_id")
        params["deployment_id"] = deployment_id
    if outside:
        where.append("n.deployment_id IS NULL")
    if stage:
        where.append("n.stage = :stage")
        params["stage"] = stage
    elif not include_deleted:
        where.append("n.stage <> 'deleted'")
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
    return rows.page(tx, SELECT, "node n", clause, "n.created_at, n.id", limit, offset, **params)


_PREFIX = re.compile(r"^[0-9a-f-]{4,35}$")


def resolve(tx: Transaction, key: str) -> dict:
    """The node an operator means by `key`: its id, a unique prefix of its id (what `watch`
    prints), one of its MACs, or its hostname (unique among nodes not deleted)."""
    key = key.strip().lower()
    if is_uuid(key):
        return get(tx, key)
    try:
        mac = normalize_mac(key)
    except ValidationError:
        mac = None
    if mac:
        row = tx.one("SELECT node_id FROM node_mac WHERE mac = :mac", mac=mac)
        if row:
            return get(tx, row["node_id"])
    found = tx.all("SELECT id FROM node WHERE hostname = :key AND stage <> 'deleted' LIMIT 2", key=key)
    if not found and _PREFIX.fullmatch(key):
        found = tx.all("SELECT id FROM node WHERE CAST(id AS text) LIKE :prefix LIMIT 2", prefix=key + "%")
    if len(found) > 1:
        raise BadRequestError(f"{key!r} matches more than one node; give more of the id (or the whole id)")
    if not found:
        raise NotFoundError(f"node {key!r} not found (give its id, a unique id prefix, a MAC or its hostname)")
    return get(tx, found[0]["id"])


def _set_macs(tx: Transaction, node_id: str, macs: list[str]) -> None:
    tx.run("DELETE FROM node_mac WHERE node_id = :id", id=node_id)
    for mac in macs:
        owner = tx.one("SELECT node_id FROM node_mac WHERE mac = :mac", mac=mac)
        if owner:
            raise ConflictError(f"MAC {mac} already belongs to node {owner['node_id']}")
        try:
            tx.run("INSERT INTO node_mac (mac, node_id) VALUES (:mac, :id)", mac=mac, id=node_id)
        except pg8000.exceptions.DatabaseError as e:  # another transaction took it after the check above
            raise rows.conflict(e, f"MAC {mac}") from None


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
    """Change a node's fields; `add_labels` (adds or changes) and `remove_labels` (keys) merge
    into its labels under the node's lock, where `labels` replaces them all."""
    node = get(tx, node_id, lock=True)
    fields = dict(fields)
    add, remove = fields.pop("add_labels", None), fields.pop("remove_labels", None)
    if add is not None or remove is not None:
        merged = {**(node["labels"] or {}), **(add or {})}
        for key in remove or ():
            merged.pop(key, None)
        fields["labels"] = check_labels(merged)
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


# --- stage changes: one statement, written once ----------------------------------------


def _move(tx: Transaction, stage: str, source: str, chosen: str, message_sql: str, *, seen: bool = False,
          deployment_id: str | None = None, **params) -> list[dict]:
    """THE stage change. Moves the nodes that the query `chosen` selects (an `id` column, and
    any columns `message` uses) to `stage`: sets stage, stage_changed_at, stage_times,
    updated_at (and last_seen when `seen`), frees their MACs and SMBIOS UUID when the stage is
    `deleted` (a later server may get the same MAC, a machine the same UUID), and writes one `stage` event each whose message is
    the SQL expression `message_sql`. Returns [{node_id, message, from_stage, in_stage_s}] of
    the nodes moved (the stage each left and its seconds there, for bootfleet.metrics)."""
    freed = ", freed AS (DELETE FROM node_mac WHERE node_id IN (SELECT node_id FROM moved))" if stage == "deleted" \
        else ""
    moved = tx.all(
        f"WITH chosen AS ({chosen}),"
        " moved AS (UPDATE node n SET stage = :stage, stage_changed_at = now(), updated_at = now(),"
        "  stage_times = n.stage_times || jsonb_build_object(CAST(:stage AS text), now()),"
        "  last_seen = CASE WHEN :seen THEN now() ELSE n.last_seen END"
        f"{', smbios_uuid = NULL' if stage == 'deleted' else ''}"
        "  FROM chosen JOIN node prev ON prev.id = chosen.id WHERE n.id = chosen.id"  # prev: the row before
        "  RETURNING n.id AS node_id, n.deployment_id AS node_deployment_id, prev.stage AS from_stage,"
        "  extract(epoch FROM now() - prev.stage_changed_at)::float8 AS in_stage_s, chosen.*)"
        f"{freed},"
        " logged AS (INSERT INTO event (node_id, deployment_id, stage, kind, message, source)"
        " SELECT node_id, COALESCE(CAST(:deployment_id AS uuid), node_deployment_id), :stage, 'stage',"
        f"  left({message_sql}, 2000), :source FROM moved"
        " RETURNING node_id, message)"
        " SELECT logged.node_id, logged.message, moved.from_stage, moved.in_stage_s FROM logged JOIN moved USING (node_id)",
        stage=stage, source=source, seen=seen, deployment_id=deployment_id, **params,
    )
    metrics.stages_moved(stage, moved)
    return moved


def set_stage(
    tx: Transaction, node_id: str, stage: str, source: str, message: str = "", deployment_id: str | None = None,
    seen: bool = False,
) -> None:
    """Move one node to `stage` and record the event; `seen` also sets last_seen."""
    _move(tx, stage, source, "SELECT id FROM node WHERE id = :node_id", ":message", seen=seen,
          deployment_id=deployment_id, node_id=node_id, message=message or f"stage {stage}")


# _duration() of cleanup, in SQL, for the `took` column (seconds in the stage).
_SQL_DURATION = ("CASE WHEN took >= 3600 THEN (took / 3600) || 'h ' || (took % 3600 / 60) || 'm ' || (took % 60) || 's'"
                 " ELSE (took / 60) || 'm ' || (took % 60) || 's' END")


def time_out(tx: Transaction, stage: str, seconds: int, limit_text: str, source: str,
             dry_run: bool = False) -> list[dict]:
    """Nodes in `stage` for longer than `seconds` become `failed` (one statement moves them
    all, skipping nodes another transaction holds); dry_run only lists them.
    Returns [{node_id, message}]."""
    stuck = ("SELECT id, extract(epoch FROM now() - stage_changed_at)::int AS took"
             " FROM node WHERE stage = :old_stage AND stage_changed_at < now() - make_interval(secs => :s)")
    message_sql = f"'timed out in ' || :old_stage || ' after ' || {_SQL_DURATION} || ' (limit ' || :limit || ')'"
    params = {"old_stage": stage, "s": seconds, "limit": limit_text}
    if dry_run:
        return tx.all(f"SELECT id AS node_id, (SELECT hostname FROM node h WHERE h.id = s.id) AS hostname,"
                      f" {message_sql} AS message FROM ({stuck}) s", **params)
    return _move(tx, "failed", source, f"{stuck} FOR UPDATE SKIP LOCKED", message_sql, **params)


def delete_unmanaged(tx: Transaction, source: str, dry_run: bool = False) -> list[dict]:
    """Deprovisioning nodes that no provider manages (no deployment, or one without a
    provider) become `deleted`; a server of theirs is not bootfleet's and is left alone."""
    gone = ("SELECT n.id, n.instance_id FROM node n LEFT JOIN deployment d ON d.id = n.deployment_id"
            " WHERE n.stage = 'deprovisioning' AND (d.id IS NULL OR d.provider = 'none')")
    if dry_run:
        return tx.all(f"SELECT id AS node_id, (SELECT hostname FROM node h WHERE h.id = g.id) AS hostname"
                      f" FROM ({gone}) g")
    message_sql = ("'deleted' || CASE WHEN instance_id IS NULL THEN '' ELSE '; server ' || instance_id"
                   " || ' was not created by bootfleet and is left alone' END")
    return _move(tx, "deleted", source, f"{gone} FOR UPDATE OF n SKIP LOCKED", message_sql)


def touch(tx: Transaction, node_id: str) -> None:
    tx.run("UPDATE node SET last_seen = now() WHERE id = :id", id=node_id)


def set_secret(tx: Transaction, node_id: str, secret_hash: str | None) -> None:
    """Store the hash of the enrolment secret a new server's user data carries."""
    tx.run("UPDATE node SET secret_hash = :h, updated_at = now() WHERE id = :id", h=secret_hash, id=node_id)


def pending_discovered(tx: Transaction) -> int:
    """Discovered nodes that are not installed (or given up on) yet. Takes a transaction
    lock first, so that concurrent discoveries count one after another (the cap holds)."""
    tx.run("SELECT pg_advisory_xact_lock(hashtext('bootfleet-discovery'))")
    return tx.scalar("SELECT count(*) FROM node WHERE discovered"
                     " AND stage NOT IN ('ready', 'failed', 'deprovisioning', 'deleted')")


def reinstall(tx: Transaction, node_id: str, source: str) -> dict:
    """Back to `registered` with a new token version: old tokens stop working and
    the next boot installs again."""
    get(tx, node_id, lock=True)
    tx.run("UPDATE node SET token_version = token_version + 1, stage_times = '{}'::jsonb WHERE id = :id", id=node_id)
    set_stage(tx, node_id, "registered", source, "reinstall requested; tokens rotated")
    return get(tx, node_id)


def boot_plan(tx: Transaction, node: dict) -> tuple[dict | None, dict | None]:
    """(profile, deployment) for a node, in one query where the profile is assigned: its own
    profile, else its deployment's, else the one its labels select."""
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


# --- a deployment's nodes and servers -------------------------------------------------------


def of_deployment(tx: Transaction, deployment_id: str) -> list[dict]:
    """Every node of a deployment, in index order (web-0, web-1, ..., web-10)."""
    return tx.all(f"{SELECT} WHERE n.deployment_id = :id"
                  " ORDER BY n.created_at, length(n.hostname), n.hostname, n.id", id=deployment_id)


def count_not_deleted(tx: Transaction, deployment_id: str) -> int:
    return tx.scalar("SELECT count(*) FROM node WHERE deployment_id = :id AND stage <> 'deleted'", id=deployment_id)


def holding_server(tx: Transaction, server_id: str, other_than: str) -> str | None:
    """The id of another node (not deleted) that records this server, if any."""
    row = tx.one("SELECT id FROM node WHERE instance_id = :s AND id <> :n AND stage <> 'deleted'",
                 s=server_id, n=other_than)
    return row["id"] if row else None


def server_ids(tx: Transaction, deployment_id: str | None = None, live_only: bool = False) -> set[str]:
    """The server ids nodes record: of one deployment, or of all nodes; `live_only` leaves
    out deleted nodes."""
    where, params = ["instance_id IS NOT NULL"], {}
    if deployment_id:
        where.append("deployment_id = :id")
        params["id"] = deployment_id
    if live_only:
        where.append("stage <> 'deleted'")
    rows_ = tx.all(f"SELECT instance_id FROM node WHERE {' AND '.join(where)}", **params)
    return {r["instance_id"] for r in rows_}


def servers_to_delete(tx: Transaction, deployment_id: str) -> list[dict]:
    """Deprovisioning nodes of a deployment that still have a server: [{id, instance_id}]."""
    return tx.all("SELECT id, instance_id FROM node WHERE deployment_id = :id"
                  " AND stage = 'deprovisioning' AND instance_id IS NOT NULL", id=deployment_id)


# --- a deployment's progress -----------------------------------------------------------------


def _in(deployment_id: str | None) -> str:
    """A deployment's nodes, or (None) the nodes outside every deployment."""
    return "deployment_id = :id" if deployment_id else "deployment_id IS NULL AND CAST(:id AS uuid) IS NULL"


def stage_counts(tx: Transaction, deployment_id: str | None) -> dict[str, int]:
    rows_ = tx.all(f"SELECT stage, count(*) AS n FROM node WHERE {_in(deployment_id)} GROUP BY stage", id=deployment_id)
    return {r["stage"]: r["n"] for r in rows_}


def failed(tx: Transaction, deployment_id: str | None, limit: int = 100) -> list[dict]:
    """A deployment's failed nodes (None: those outside deployments), oldest failure first,
    each with its last event's message."""
    return tx.all(
        "SELECT id, hostname, stage_changed_at,"
        " (SELECT message FROM event e WHERE e.node_id = n.id ORDER BY e.id DESC LIMIT 1) AS last_message"
        f" FROM node n WHERE {_in(deployment_id)} AND stage = 'failed' ORDER BY stage_changed_at LIMIT :limit",
        id=deployment_id, limit=limit,
    )


def stuck(tx: Transaction, deployment_id: str | None, stage: str, seconds: int, limit: int = 100) -> list[dict]:
    """A deployment's nodes (None: those outside deployments) in `stage` for longer than `seconds`."""
    return tx.all(
        "SELECT id, hostname, stage, stage_changed_at,"
        " extract(epoch FROM now() - stage_changed_at)::int AS seconds_in_stage"
        f" FROM node WHERE {_in(deployment_id)} AND stage = :stage"
        " AND stage_changed_at < now() - make_interval(secs => :seconds)"
        " ORDER BY stage_changed_at LIMIT :limit",
        id=deployment_id, stage=stage, seconds=seconds, limit=limit,
    )


# --- retention ---------------------------------------------------------------------------------


def count_deleted_before(tx: Transaction, days: int) -> int:
    return tx.scalar("SELECT count(*) FROM node WHERE stage = 'deleted'"
                     " AND stage_changed_at < now() - make_interval(days => :d)", d=days)


def remove_deleted_before(tx: Transaction, days: int) -> None:
    """Remove the rows of nodes deleted more than `days` ago (their events go with them)."""
    tx.run("DELETE FROM node WHERE stage = 'deleted' AND stage_changed_at < now() - make_interval(days => :d)", d=days)


def one_booting(tx: Transaction, profile: dict) -> dict | None:
    """One live node that boots `profile` (its own, its deployment's, or by its labels when it has
    neither), the most recently changed; None when no node does. What doctor renders a profile for."""
    return tx.one(
        f"{SELECT} LEFT JOIN deployment d ON d.id = n.deployment_id"
        " WHERE n.stage <> 'deleted' AND (n.profile_id = :id"
        "   OR (n.profile_id IS NULL AND d.profile_id = :id)"
        "   OR (n.profile_id IS NULL AND d.id IS NULL AND CAST(:selectors AS jsonb) <> '{}'::jsonb"
        "       AND CAST(:selectors AS jsonb) <@ n.labels))"
        " ORDER BY n.updated_at DESC LIMIT 1",
        id=profile["id"], selectors=json.dumps(profile.get("selectors") or {}),
    )


def hostname_holder(tx: Transaction, hostname: str, except_id: str | None = None) -> dict | None:
    """The live node (not deleted) that has `hostname` (case-insensitive), other than `except_id`:
    hostnames are unique among live nodes, since nodes are looked up by hostname (resolve)."""
    return tx.one("SELECT id, hostname FROM node WHERE lower(hostname) = lower(:hostname) AND stage <> 'deleted'"
                  " AND id <> COALESCE(CAST(:except_id AS uuid), '00000000-0000-0000-0000-000000000000') LIMIT 1",
                  hostname=hostname, except_id=except_id)


def check_hostname_free(tx: Transaction, hostname: str | None, except_id: str | None = None) -> None:
    """ConflictError when another live node has `hostname`."""
    if not hostname:
        return
    holder = hostname_holder(tx, hostname, except_id)
    if holder:
        raise ConflictError(f"hostname {hostname!r} belongs to node {holder['id']} already; hostnames are unique"
                            " among nodes not deleted (nodes are looked up by hostname)")
