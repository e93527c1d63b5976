"""A node-script request's one statement (issue 15): find the node by MAC or SMBIOS
UUID, read its profile and deployment, decide whether the request proves it is this
node's machine (docs/security.md), and then, in the same statement,
- with proof: open an install (a new token version; stage `booting` with its event)
  when the node is not booting yet, else note that it was seen; remember the SMBIOS UUID
  and serial it reported;
  or, past its profile's `installed_after` stage, move it to `rebooting` (it boots its disk);
- without: write a `boot-refused` event (at most one a minute per node).
- without proof, known or unknown: record the attempt by MAC (db/unknown.py), so a
  known MAC and a made-up one cost the same work (docs/security.md).
One round trip on a prepared statement (Database.statement). An unknown machine
returns no row; boot/answer.py then handles discovery (a machine on a boot network, with a
discovery profile set) with ordinary transactions.

This is the one stage change outside `nodes._move`: it folds the move into the
request's single round trip and sets the same columns the same way.
"""

from __future__ import annotations

from typing import Any

from bootfleet.db import unknown
from bootfleet.db.connection import Database
from bootfleet.stages import FORWARD, LOCAL_BOOT, OPENS_INSTALL, TERMINAL


def _in(values: tuple[str, ...]) -> str:
    return "(" + ", ".join(f"'{v}'" for v in values) + ")"


# Without proof, known or not, the attempt is recorded by MAC (db/unknown.py; a known MAC's row
# is not listed): the same writes whether a node has the MAC or not, so the timing tells nothing.
_RECORDS = "CAST(:record_mac AS text) IS NOT NULL AND NOT EXISTS (SELECT 1 FROM acted WHERE why IS NULL)"

STATEMENT = f"""
WITH found AS (
  SELECT n.* FROM node n
  WHERE n.id = COALESCE(
    (SELECT node_id FROM node_mac WHERE mac = ANY(CAST(:macs AS text[])) LIMIT 1),
    (SELECT id FROM node WHERE smbios_uuid = CAST(:uuid AS text)))
  FOR UPDATE
),
planned AS (
  SELECT f.*, to_jsonb(d) AS deployment_row, to_jsonb(p) AS profile_row,
    to_jsonb(f) || jsonb_build_object('macs', ARRAY(SELECT m.mac FROM node_mac m WHERE m.node_id = f.id
                                                    ORDER BY m.mac)) AS node_row
  FROM found f
  LEFT JOIN deployment d ON d.id = f.deployment_id
  LEFT JOIN LATERAL (
    (SELECT * FROM profile WHERE id = COALESCE(f.profile_id, d.profile_id))
    UNION ALL
    (SELECT * FROM profile WHERE f.profile_id IS NULL AND d.profile_id IS NULL
       AND selectors <> '{{}}'::jsonb AND selectors <@ f.labels
     ORDER BY (SELECT count(*) FROM jsonb_object_keys(selectors)) DESC, name LIMIT 1)
    LIMIT 1
  ) p ON true
),
decided AS (
  SELECT pl.*,
    CASE
      WHEN pl.secret_hash IS NOT NULL THEN
        CASE WHEN pl.secret_hash = CAST(:secret_hash AS text) THEN NULL
             WHEN CAST(:secret_hash AS text) IS NULL THEN 'no enrolment secret (its server was created with one)'
             ELSE 'wrong enrolment secret' END
      WHEN COALESCE((pl.profile_row->>'require_secret')::boolean, false)
        OR COALESCE((pl.deployment_row->>'require_secret')::boolean, false)
        THEN 'its profile or deployment requires an enrolment secret, and the node has none'
      WHEN CAST(:secret_hash AS text) IS NOT NULL THEN 'an enrolment secret was given, but this node has none'
      WHEN NOT CAST(:trusted AS boolean) THEN 'not on a boot network (BOOTFLEET_BOOT_NETWORKS)'
    END AS why
  FROM planned pl
),
installed AS (
  -- A repeated boot once the node reached its profile's installed_after stage: the installer
  -- rebooted into the installed system without a word (docs/installers.md). It moves to
  -- `rebooting` and boots its disk; nothing opens a new install.
  SELECT dc.*, dc.why IS NULL AND dc.stage IN ('configuring', 'installing')
    AND array_position(ARRAY{list(FORWARD)}::text[], dc.stage)
        >= array_position(ARRAY{list(FORWARD)}::text[], dc.profile_row->>'installed_after') AS installed
  FROM decided dc
),
acted AS (
  SELECT dc.*,
    dc.why IS NULL AND dc.profile_row IS NOT NULL AND dc.stage IN {_in(OPENS_INSTALL)}
      AND NOT COALESCE(dc.installed, false) AS opens,
    dc.why IS NULL AND dc.profile_row IS NOT NULL AND dc.stage NOT IN {_in(LOCAL_BOOT + TERMINAL)} AS installs
  FROM installed dc
),
changed AS (
  UPDATE node x SET
    last_seen = now(),
    serial = CASE WHEN a.installs THEN COALESCE(x.serial, CAST(:serial AS text)) ELSE x.serial END,
    smbios_uuid = CASE WHEN a.installs AND x.smbios_uuid IS NULL AND CAST(:uuid AS text) IS NOT NULL
                        AND NOT EXISTS (SELECT 1 FROM node o WHERE o.smbios_uuid = CAST(:uuid AS text))
                       THEN CAST(:uuid AS text) ELSE x.smbios_uuid END,
    token_version = x.token_version + CASE WHEN a.opens THEN 1 ELSE 0 END,
    stage = CASE WHEN a.opens THEN 'booting' WHEN a.installed THEN 'rebooting' ELSE x.stage END,
    stage_changed_at = CASE WHEN a.opens OR a.installed THEN now() ELSE x.stage_changed_at END,
    stage_times = CASE WHEN a.opens THEN x.stage_times || jsonb_build_object('booting', now())
                       WHEN a.installed THEN x.stage_times || jsonb_build_object('rebooting', now())
                       ELSE x.stage_times END,
    updated_at = CASE WHEN a.opens OR a.installed THEN now() ELSE x.updated_at END
  FROM acted a WHERE x.id = a.id AND a.why IS NULL
  RETURNING x.id
),
stage_event AS (
  INSERT INTO event (node_id, deployment_id, stage, kind, message, source)
  SELECT a.id, a.deployment_id, 'booting', 'stage',
    left('boot script served, profile ' || (a.profile_row->>'name')
         || CASE WHEN a.stage IN ('registered', 'provisioning') THEN ''
                 ELSE ' (install restarted; was ' || a.stage || ')' END, 2000), 'boot'
  FROM acted a WHERE a.opens
  UNION ALL
  SELECT a.id, a.deployment_id, 'rebooting', 'stage',
    left('booted again after ' || a.stage || ' (profile ' || (a.profile_row->>'name') || ': installed_after '
         || (a.profile_row->>'installed_after') || '): installed; boots its local disk', 2000), 'boot'
  FROM acted a WHERE a.installed
  RETURNING id
),
refused_event AS (
  INSERT INTO event (node_id, deployment_id, stage, kind, message, source)
  SELECT a.id, a.deployment_id, a.stage, 'boot-refused',
    left('boot refused from ' || CAST(:client AS text) || ': ' || a.why, 2000), 'boot'
  FROM acted a
  WHERE a.why IS NOT NULL AND NOT EXISTS (
    SELECT 1 FROM event e WHERE e.node_id = a.id AND e.kind = 'boot-refused'
      AND e.created_at > now() - make_interval(secs => CAST(:quiet AS integer)))
  RETURNING id
),
recorded AS (
  {unknown.UPSERT.format(reason="COALESCE((SELECT why FROM acted LIMIT 1), CAST(:unknown_reason AS text))",
                         condition=_RECORDS)}
),
evicted AS (
  {unknown.EVICT}
),
unknown_event AS (
  {unknown.ANNOUNCE.format(reason="CAST(:unknown_reason AS text)", condition="NOT EXISTS (SELECT 1 FROM acted)")}
)
SELECT a.node_row AS node, a.profile_row AS profile, a.deployment_row AS deployment, a.why, a.opens,
  COALESCE(a.installed, false) AS installed,
  a.token_version + CASE WHEN a.opens THEN 1 ELSE 0 END AS token_version,
  extract(epoch FROM now() - a.stage_changed_at)::float8 AS in_stage_s
FROM acted a
"""


def step(database: Database, macs: list[str], uuid: str | None, serial: str | None, secret_hash: str | None,
         trusted: bool, client: str, quiet_seconds: int, record: tuple[str | None, str | None, str] | None = None,
         ) -> dict[str, Any] | None:
    """The node's boot step, done (see the module docstring); None for an unknown machine.
    {node (as it was: its stage before this step), profile, deployment, why (refused: the reason),
    opens, installed (it moved to `rebooting`: its profile's installed_after), token_version, in_stage_s (seconds it had been in that stage)}
    record: (MAC, address, reason if no node has it): the attempt, if it has no proof, is
    recorded as db/unknown.py records one, in the same statement; None: not recorded."""
    rows = database.statement(STATEMENT, macs=macs or [""], uuid=uuid, serial=serial, secret_hash=secret_hash,
                              trusted=trusted, client=client, quiet=quiet_seconds,
                              **unknown.parameters(*(record or (None, None, ""))))
    return rows[0] if rows else None
