"""Unknown machines: MACs that asked boot for a script but belong to no node.

One row per MAC (`unknown_machine`), upserted on every attempt; at most one `unknown-boot`
event per MAC every BOOTFLEET_UNKNOWN_EVENT_SECONDS and at most BOOTFLEET_UNKNOWN_EVENT_MAX
for all MACs in that time, and at most BOOTFLEET_UNKNOWN_MAX rows (the least recently seen go
first), so a scan of made-up MACs can neither flood the event history nor grow the table
without bound. A machine refused without proof is recorded by the boot statement itself
(db/boot.py), known or not: the same work either way. An operator adopts one into a node.
"""

from __future__ import annotations

from bootfleet.db import rows
from bootfleet.db.connection import Transaction
from bootfleet.errors import NotFoundError
from bootfleet.settings import get_settings

COLUMNS = "u.mac, u.first_seen, u.last_seen, u.attempts, u.last_address, u.last_reason"
# A MAC that became a node's since (registered by hand, or adopted) is no longer unknown.
_STILL_UNKNOWN = "NOT EXISTS (SELECT 1 FROM node_mac m WHERE m.mac = u.mac)"


# One attempt's record, as parts of a WITH statement: the row upserted (`recorded`), the least
# recently seen beyond the cap evicted, and the event. Shared by record() and the boot
# statement (db/boot.py), which folds them into its one round trip. Parameters: record_mac,
# address, unknown_quiet, unknown_cap, unknown_event_max; `{reason}` and `{condition}` are SQL.
UPSERT = """INSERT INTO unknown_machine AS u (mac, last_address, last_reason)
  SELECT CAST(:record_mac AS text), CAST(:address AS text), left({reason}, 500) WHERE {condition}
  ON CONFLICT (mac) DO UPDATE SET last_seen = now(), attempts = u.attempts + 1,
    last_address = EXCLUDED.last_address, last_reason = EXCLUDED.last_reason,
    last_event_at = CASE WHEN u.last_event_at < now() - make_interval(secs => CAST(:unknown_quiet AS integer))
                         THEN now() ELSE u.last_event_at END
  RETURNING u.mac, (xmax = 0) AS inserted, (u.last_event_at = now()) AS announce, u.attempts"""
# The statement's snapshot does not hold the new row: cap - 1 others stay.
EVICT = """DELETE FROM unknown_machine WHERE EXISTS (SELECT 1 FROM recorded WHERE inserted)
  AND mac IN (SELECT mac FROM unknown_machine ORDER BY last_seen DESC, mac
              OFFSET GREATEST(CAST(:unknown_cap AS integer) - 1, 0))
  RETURNING mac"""
# At most one event per MAC every BOOTFLEET_UNKNOWN_EVENT_SECONDS, and at most
# BOOTFLEET_UNKNOWN_EVENT_MAX of them in that time for all MACs together: an evicted MAC
# that comes back is new again, so only a bound on them all bounds a scan.
ANNOUNCE = """INSERT INTO event (kind, message, source)
  SELECT 'unknown-boot', left('unknown machine ' || r.mac || ' tried to boot'
      || COALESCE(' from ' || CAST(:address AS text), '') || ': ' || {reason}
      || CASE WHEN r.inserted THEN '' ELSE ' (' || r.attempts || ' attempts so far)' END, 2000), 'boot'
  FROM recorded r WHERE r.announce AND {condition}
    AND (SELECT count(*) FROM event e WHERE e.kind = 'unknown-boot'
         AND e.created_at > now() - make_interval(secs => CAST(:unknown_quiet AS integer)))
        < CAST(:unknown_event_max AS integer)
  RETURNING id"""


def parameters(mac: str | None, address: str | None, reason: str) -> dict:
    settings = get_settings()
    return {"record_mac": mac, "address": address, "unknown_reason": reason[:500],
            "unknown_quiet": settings.unknown_event_seconds, "unknown_cap": max(settings.unknown_max, 1),
            "unknown_event_max": settings.unknown_event_max}


_RECORD = (f"WITH recorded AS ({UPSERT.format(reason='CAST(:unknown_reason AS text)', condition='true')}),"
           f" evicted AS ({EVICT})"
           f" {ANNOUNCE.format(reason='CAST(:unknown_reason AS text)', condition='true')}")


def record(tx: Transaction, mac: str, address: str | None, reason: str) -> None:
    """Remember a boot attempt from `mac` (normalised) that no node answers to."""
    tx.run(_RECORD, **parameters(mac, address, reason))


def listing(tx: Transaction, limit: int, offset: int) -> tuple[list[dict], int]:
    """Unknown machines, most recently seen first."""
    return rows.page(tx, f"SELECT {COLUMNS} FROM unknown_machine u", "unknown_machine u",
                     f"WHERE {_STILL_UNKNOWN}", "u.last_seen DESC, u.mac", limit, offset)


def get(tx: Transaction, mac: str) -> dict:
    row = tx.one(f"SELECT {COLUMNS} FROM unknown_machine u WHERE u.mac = :mac AND {_STILL_UNKNOWN} FOR UPDATE",
                 mac=mac)
    if row is None:
        raise NotFoundError(f"no unknown machine with MAC {mac} (bootfleet node unknown lists them)")
    return row


def forget(tx: Transaction, mac: str) -> None:
    tx.run("DELETE FROM unknown_machine WHERE mac = :mac", mac=mac)
