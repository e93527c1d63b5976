"""A node-script request's one round trip (issues 15 and 24): `bootfleet_boot_step`
(migrations/0016_boot_step.sql) finds the node by MAC or SMBIOS UUID, decides whether the
request proves it is this node's machine (docs/security.md), and then
- with proof: opens an install (a new token version; stage `booting` with its event)
  when the node is not booting yet, else notes that it was seen; remembers the SMBIOS UUID
  and serial it reported; or, past its profile's `installed_after` stage, moves it to
  `rebooting` (it boots its disk);
- without: writes a `boot-refused` event (at most one a minute per node);
- without proof, known or unknown: records the attempt by MAC (db/unknown.py), so a
  known MAC and a made-up one cost the same work (docs/security.md).
One round trip on a prepared statement (Database.statement). An unknown machine returns no
row; boot/answer.py then handles discovery (a machine on a boot network, with a discovery
profile set) with ordinary transactions.

The node's profile and deployment come back as an id and a row version (PostgreSQL's xmin,
new with every change to the row), and their rows from this process's cache (`_plans`), read
once more only when the version changed: a storm of nodes on one profile decodes it once. A
process's first step, with nothing cached, has the step bring the rows along (a cold start's
first answer in one round trip).

This is the one stage change outside `nodes._move`: it folds the move into the request's
single round trip and sets the same columns the same way.
"""

from __future__ import annotations

import threading
from typing import Any

from bootfleet.db import unknown
from bootfleet.db.connection import Database

STATEMENT = ("SELECT bootfleet_boot_step(CAST(:macs AS text), CAST(:uuid AS text), CAST(:serial AS text),"
             " CAST(:secret_hash AS text), CAST(:trusted AS boolean), CAST(:address AS text),"
             " CAST(:record AS boolean), CAST(:limits AS text), CAST(:rows AS boolean)) AS step")
_ROW = {"profile": "SELECT xmin::text AS version, to_jsonb(p) AS row FROM profile p WHERE id = CAST(:id AS uuid)",
        "deployment": "SELECT xmin::text AS version, to_jsonb(d) AS row FROM deployment d WHERE id = CAST(:id AS uuid)"}
_NODE = ("id", "stage", "deployment_id", "hostname", "smbios_uuid", "serial", "instance_id", "ip", "labels", "macs")
# (table, id) -> (row version, row as to_jsonb gives it); bounded: profiles and deployments are few.
_plans: dict[tuple[str, str], tuple[str, dict]] = {}
_plans_lock = threading.Lock()
PLANS_KEPT = 512


def _row(database: Database, table: str, row_id: str | None, version: str | None) -> dict | None:
    """The row `table`/`row_id` at `version` (or newer), from the cache or read now."""
    if row_id is None:
        return None
    cached = _plans.get((table, row_id))
    if cached is not None and cached[0] == version:
        return cached[1]
    rows = database.statement(_ROW[table], id=row_id)
    if not rows:  # deleted since the step read it
        return None
    _keep(table, row_id, rows[0]["version"], rows[0]["row"])
    return rows[0]["row"]


def _keep(table: str, row_id: str, version: str, row: dict) -> None:
    with _plans_lock:
        if len(_plans) >= PLANS_KEPT:
            _plans.clear()
        _plans[(table, row_id)] = (version, row)


def step(database: Database, macs: list[str], uuid: str | None, serial: str | None, secret_hash: str | None,
         trusted: bool, address: str | None, quiet_seconds: int, record: bool = False) -> dict[str, Any] | None:
    """The node's boot step, done (see the module docstring); None for an unknown machine.
    {node (as it was: its stage before this step), profile, deployment, why (refused: the reason),
    opens, installed (it moved to `rebooting`: its profile's installed_after), token_version,
    in_stage_s (seconds it had been in that stage)}.
    address: the client's, or None; quiet_seconds: at most one boot-refused event per node in that
    time; record: an attempt without proof is recorded by its first MAC as db/unknown.py records
    one (settings.unknown_*), in the same statement."""
    limits = ",".join(str(n) for n in (quiet_seconds, *unknown.limits()))
    rows = database.statement(STATEMENT, macs=",".join(macs), uuid=uuid, serial=serial, secret_hash=secret_hash,
                              trusted=trusted, address=address, record=record, limits=limits,
                              rows=not _plans)  # nothing cached yet: the rows come along
    row = rows[0]["step"] if rows else None
    if row is None:
        return None
    node = {name: row[name] for name in _NODE}
    node["macs"] = row["macs"].split(",") if row["macs"] else []
    node["profile_id"] = row["profile_id"]
    refused = bool(row["why"])
    for table in ("profile", "deployment"):
        if row.get(f"{table}_row") is not None:
            _keep(table, row[f"{table}_id"], row[f"{table}_version"], row[f"{table}_row"])
    return {"node": node, "why": row["why"], "opens": row["opens"], "installed": row["installed"],
            "token_version": row["token_version"], "in_stage_s": row["in_stage_s"],
            "profile": None if refused else _row(database, "profile", row["profile_id"], row["profile_version"]),
            "deployment": None if refused else _row(database, "deployment", row["deployment_id"],
                                                    row["deployment_version"])}
